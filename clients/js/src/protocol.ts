//! The frames of Herald's WebSocket protocol and the shapes of its inbox API, as TypeScript types.

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

export type ServerFrame =
  | { type: "welcome"; user: string; session: string; expires_at: number; cursor?: string }
  | { type: "notification"; cursor: string; replay: boolean; notification: Notification }
  | { type: "replayed"; cursor: string | null; count: number }
  | { type: "reset"; reason: string }
  | { type: "token_expiring"; expires_at: number }
  | { type: "read"; ids: string[]; read?: boolean }
  | { type: "unread"; count: number }
  | { type: "reconnect"; after_ms: number; reason: string }
  | { type: "error"; code: string; message: string };

/** Close codes the client acts on. */
export const Close = {
  NORMAL: 1000,
  GOING_AWAY: 1001,
  UNAUTHENTICATED: 4001,
  FORBIDDEN: 4003,
  PROTOCOL: 4008,
  TOO_SLOW: 4029,
} as const;

/** Whether cursor `a` comes after `b`. Cursors are opaque to applications; Herald's are
 * decimal numbers that only grow, so a longer one is larger and equal lengths compare as text. */
export function cursorAfter(a: string, b: string | null | undefined): boolean {
  if (b == null) return true;
  return a.length !== b.length ? a.length > b.length : a > b;
}
