import type { BackoffOptions } from "./backoff.js";
import { type SocketFactory, type Status, type TokenProvider } from "./connection.js";
import { InboxApi } from "./inbox.js";
import { type Notification, type ServerFrame } from "./protocol.js";
import { type KeyValue } from "./storage.js";
export interface ClientOptions {
    /** The gateway's base URL, e.g. `https://herald.example.com` (`/v1/ws` and `/v1/inbox` below it). */
    url: string;
    /** The app's token provider: the current token, or a new one when `fresh` is true. */
    token: TokenProvider;
    /** The signed-in user: names the stored cursor and the tab group (default `"default"`). */
    user?: string;
    /** Share one socket among the tabs of this browser (default: where supported). */
    share?: boolean;
    backoff?: BackoffOptions;
    /** A socket not welcomed within this is abandoned and retried (default 10 000 ms). */
    openTimeoutMs?: number;
    /** Defaults to `localStorage` where there is one, else memory. */
    storage?: KeyValue | null;
    /** Defaults to the global `WebSocket`. */
    socket?: SocketFactory;
    fetch?: typeof fetch;
}
export interface StatusDetail {
    code?: number;
    reason?: string;
    retryInMs?: number;
}
export interface Events {
    notification: (n: Notification, meta: {
        cursor: string;
        replay: boolean;
    }) => void;
    /** Read state changed for `ids` (`["*"]`: all), here or on another device. */
    read: (ids: string[], read: boolean) => void;
    unread: (count: number) => void;
    /** The saved cursor was too old: reload the inbox over HTTP (`InboxView` does). */
    reset: (reason: string) => void;
    status: (status: Status, detail: StatusDetail) => void;
    /** Every frame, as received (after deduplication). */
    frame: (frame: ServerFrame) => void;
}
export declare class HeraldClient {
    private readonly opts;
    readonly inbox: InboxApi;
    /** Whether this tab holds the socket (always true without sharing). */
    leader: boolean;
    status: Status;
    statusDetail: StatusDetail;
    private conn;
    private tab;
    private lastUnread;
    /** The newest notification cursor this tab handled: copies relayed again are dropped. */
    private seen;
    private readonly listeners;
    constructor(opts: ClientOptions);
    on<K extends keyof Events>(event: K, cb: Events[K]): () => void;
    start(): void;
    stop(): void;
    /** Sockets opened by this tab (0 in a follower tab): for tests and diagnostics. */
    get socketsOpened(): number;
    /** In-band token refreshes sent by this tab. */
    get refreshes(): number;
    private lead;
    private fromLeader;
    private dispatch;
    private setStatus;
    private emit;
}
