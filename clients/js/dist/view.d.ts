import type { HeraldClient } from "./client.js";
import type { InboxItem } from "./protocol.js";
export declare class InboxView {
    private readonly client;
    private readonly pageSize;
    /** Newest first; archived items are left out. */
    items: InboxItem[];
    unread: number;
    next: string | null;
    muted: string[];
    loaded: boolean;
    private readonly listeners;
    private readonly offs;
    constructor(client: HeraldClient, pageSize?: number);
    /** Calls `cb` after every change; returns how to stop. */
    onChange(cb: () => void): () => void;
    /** (Re)loads the first page, the unread count and the preferences. */
    load(): Promise<void>;
    more(): Promise<void>;
    markRead(id: string): Promise<void>;
    markUnread(id: string): Promise<void>;
    archive(id: string): Promise<void>;
    readAll(): Promise<void>;
    setMuted(kinds: string[]): Promise<void>;
    close(): void;
    /** A pushed notification. The gateway sends `unread` after a replay and after every read-state
     * change, but not when a new notification is stored: a new unread one counts here, and the
     * next `unread` frame (exact) replaces the count anyway. */
    private add;
    /** Inserts in cursor order unless the id is already shown; whether it was inserted. */
    private insert;
    private markLocal;
    private set;
}
