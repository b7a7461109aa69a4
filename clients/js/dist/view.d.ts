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
    private add;
    /** Inserts in cursor order unless the id is already shown. */
    private insert;
    private markLocal;
    private set;
}
