import type { TokenProvider } from "./connection.js";
import type { InboxPage, Preferences, ReadState } from "./protocol.js";
export declare class HttpError extends Error {
    readonly status: number;
    readonly code: string;
    constructor(status: number, code: string, message: string);
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
    read(id: string): Promise<ReadState>;
    unread(id: string): Promise<ReadState>;
    /** Archives (and so marks read) one notification. */
    archive(id: string): Promise<ReadState>;
    readAll(): Promise<{
        unread: number;
    }>;
    preferences(): Promise<Preferences>;
    setPreferences(p: Preferences): Promise<Preferences>;
    /** One request; a 401 gets a fresh token and one more try. */
    private call;
}
