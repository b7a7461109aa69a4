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
export { Backoff } from "./backoff.js";
export { HeraldClient } from "./client.js";
export { Connection } from "./connection.js";
export { HttpError, InboxApi } from "./inbox.js";
export * from "./protocol.js";
export { cursorStore } from "./storage.js";
export { InboxView } from "./view.js";
