/** A stored notification as the server sends it. */
export interface Notification {
    id: string;
    kind: string;
    title: string;
    body?: string | null;
    data?: unknown;
    created_at: string;
    read: boolean;
}
/** One inbox entry: the notification and its cursor (the same cursor as on the WebSocket). */
export interface InboxItem {
    cursor: string;
    notification: Notification;
}
export interface InboxPage {
    items: InboxItem[];
    /** The `before` of the following page; `null` on the last page. */
    next: string | null;
}
export interface Preferences {
    muted_kinds: string[];
}
export interface ReadState {
    id: string;
    read: boolean;
    unread: number;
}
export type ServerFrame = {
    type: "welcome";
    user: string;
    session: string;
    expires_at: number;
    cursor?: string;
} | {
    type: "notification";
    cursor: string;
    replay: boolean;
    notification: Notification;
} | {
    type: "replayed";
    cursor: string | null;
    count: number;
} | {
    type: "reset";
    reason: string;
} | {
    type: "token_expiring";
    expires_at: number;
} | {
    type: "read";
    ids: string[];
    read?: boolean;
} | {
    type: "unread";
    count: number;
} | {
    type: "reconnect";
    after_ms: number;
    reason: string;
} | {
    type: "error";
    code: string;
    message: string;
};
/** Close codes the client acts on. */
export declare const Close: {
    readonly NORMAL: 1000;
    readonly GOING_AWAY: 1001;
    readonly UNAUTHENTICATED: 4001;
    readonly FORBIDDEN: 4003;
    readonly PROTOCOL: 4008;
    readonly TOO_SLOW: 4029;
};
/** Whether cursor `a` comes after `b`. Cursors are opaque to applications; Herald's are
 * decimal numbers that only grow, so a longer one is larger and equal lengths compare as text. */
export declare function cursorAfter(a: string, b: string | null | undefined): boolean;
