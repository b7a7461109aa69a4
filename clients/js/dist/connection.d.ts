import { type BackoffOptions } from "./backoff.js";
import { type ServerFrame } from "./protocol.js";
import type { CursorStore } from "./storage.js";
/** Gives the app's current token; `fresh` asks for a new one (after 4001 or `token_expiring`). */
export type TokenProvider = (opts: {
    fresh: boolean;
}) => string | Promise<string>;
export type Status = "connecting" | "open" | "reconnecting" | "stopped";
/** The minimal WebSocket the connection needs (the browser's, Node's, or `ws`'s). */
export interface SocketLike {
    readyState: number;
    send(data: string): void;
    close(code?: number, reason?: string): void;
    onopen: ((ev: unknown) => void) | null;
    onmessage: ((ev: {
        data: unknown;
    }) => void) | null;
    onclose: ((ev: {
        code: number;
        reason: string;
    }) => void) | null;
    onerror: ((ev: unknown) => void) | null;
}
export type SocketFactory = (url: string) => SocketLike;
export interface ConnectionOptions {
    url: string;
    token: TokenProvider;
    cursor: CursorStore;
    backoff?: BackoffOptions;
    /** A socket not welcomed within this is abandoned and retried (default 10 000 ms): a
     * half-open connection or a server that accepts and never answers must not hang the client. */
    openTimeoutMs?: number;
    socket?: SocketFactory;
    /** Every frame the application should see (notifications already deduplicated). */
    onFrame(frame: ServerFrame): void;
    onStatus(status: Status, detail?: {
        code?: number;
        reason?: string;
        retryInMs?: number;
    }): void;
}
export declare class Connection {
    private readonly opts;
    private ws;
    private stopped;
    private timer;
    private readonly backoff;
    private needFreshToken;
    /** Set by a `reconnect` frame: the gateway's own delay replaces the backoff once. */
    private plannedDelay;
    /** The newest cursor handled on any socket of this connection. */
    private last;
    private welcomed;
    /** Counts sockets opened, for tests and the connection indicator. */
    opened: number;
    refreshed: number;
    constructor(opts: ConnectionOptions);
    start(): void;
    /** Closes with 1000 and stays closed. */
    stop(): void;
    /** The newest cursor seen (also kept in the cursor store). */
    get cursor(): string | null;
    private open;
    private handle;
    private remember;
    private refresh;
    private closed;
    private retry;
}
