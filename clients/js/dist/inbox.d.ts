import type { TokenProvider } from "./connection.js";
import type { InboxPage, Preferences, ReadState } from "./protocol.js";
export declare class HttpError extends Error {
    readonly status: number;
    readonly code: string;
    constructor(status: number, code: string, message: string);
}
/** How a change of one notification's read state treats `404`. */
export interface ChangeOptions {
    /**
     * Keep trying a `404` for this long, in ms (default 0: answer at once). A notification is
     * pushed first and stored just after (a big team's copies once the whole team is pushed, which
     * can take seconds), so an id that just arrived on the socket may not be in the inbox yet.
     * Pass a few seconds for such ids; after the wait the `404` is thrown as usual. At most
     * one minute.
     */
    waitForStoreMs?: number;
    /** Stops the waiting: the last error is thrown at the next try. */
    signal?: AbortSignal;
}
export interface ListOptions {
    limit?: number;
    before?: string | null;
    unread?: boolean;
    kind?: string;
    archived?: boolean;
}
export declare class InboxApi {
    private readonly base;
    private readonly token;
    private readonly fetchImpl;
    constructor(base: string, token: TokenProvider, fetchImpl?: typeof fetch);
    /** One page, newest first; pass `next` as `before` for the following page. */
    list(opts?: ListOptions): Promise<InboxPage>;
    unreadCount(): Promise<number>;
    read(id: string, opts?: ChangeOptions): Promise<ReadState>;
    unread(id: string, opts?: ChangeOptions): Promise<ReadState>;
    /** Archives (and so marks read) one notification. */
    archive(id: string, opts?: ChangeOptions): Promise<ReadState>;
    readAll(): Promise<{
        unread: number;
    }>;
    preferences(): Promise<Preferences>;
    setPreferences(p: Preferences): Promise<Preferences>;
    /** A read-state change, tried again on `404` until `waitForStoreMs` has passed. */
    private change;
    /** One request; a 401 gets a fresh token and one more try. */
    private call;
}
