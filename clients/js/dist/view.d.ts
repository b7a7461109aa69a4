import type { HeraldClient } from "./client.js";
import type { InboxItem } from "./protocol.js";
export declare class InboxView {
    private readonly client;
    private readonly pageSize;
    private readonly waitForStoreMs;
    /** Newest first; archived items are left out. */
    items: InboxItem[];
    unread: number;
    next: string | null;
    muted: string[];
    loaded: boolean;
    private readonly listeners;
    private readonly offs;
    /**
     * `waitForStoreMs`: how long a change of one notification (read, unread, archive) keeps trying
     * while the inbox answers `404`: a notification shown from the socket is stored just after it
     * is pushed (a big team's copies seconds later), and a tap on it must not be lost meanwhile.
     */
    constructor(client: HeraldClient, pageSize?: number, waitForStoreMs?: number);
    /** Calls `cb` after every change; returns how to stop. */
    onChange(cb: () => void): () => void;
    /** (Re)loads the first page, the unread count and the preferences. */
    load(): Promise<void>;
    more(): Promise<void>;
    /** Shows the item read at once; if the server refuses, it is shown as it was and this throws. */
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
    private wait;
    /** Applies `local` now and sends `remote`; on failure puts the item back as it was. */
    private change;
    private markLocal;
    private set;
}
