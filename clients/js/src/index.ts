//! Herald's JavaScript client: live notifications exactly once, one socket per browser, and
//! the inbox API.
//!
//! ```ts
//! import { HeraldClient, InboxView } from "@herald/client";
//! const client = new HeraldClient({ url: "https://herald.example.com", user, token: ({ fresh }) => getToken(fresh) });
//! const inbox = new InboxView(client);
//! inbox.onChange(() => render(inbox.items, inbox.unread));
//! client.start();
//! await inbox.load();
//! ```

export { Backoff, type BackoffOptions } from "./backoff.js";
export { HeraldClient, type ClientOptions, type Events, type StatusDetail } from "./client.js";
export { Connection, type SocketFactory, type SocketLike, type Status, type TokenProvider } from "./connection.js";
export { type ChangeOptions, HttpError, InboxApi, type ListOptions } from "./inbox.js";
export * from "./protocol.js";
export { cursorStore, type CursorStore, type KeyValue } from "./storage.js";
export { InboxView } from "./view.js";
