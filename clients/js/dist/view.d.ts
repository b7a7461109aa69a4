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
    /** Per id, the number of the latest change sent: only the latest may undo itself. */
    private readonly changes;
    private changed;
    /** Stops the changes still waiting for the store when the view closes. */
    private readonly closing;
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
    /**
     * Applies `local` now and sends `remote`. On success applies `local` again (the item may have
     * arrived meanwhile) with the server's count; on failure puts the item back as it was, unless
     * something changed it meanwhile (a frame, a reload, a later change of the same id).
     */
    private change;
    private markLocal;
    private set;
}
