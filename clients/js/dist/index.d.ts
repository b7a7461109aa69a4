export { Backoff, type BackoffOptions } from "./backoff.js";
export { HeraldClient, type ClientOptions, type Events, type StatusDetail } from "./client.js";
export { Connection, type SocketFactory, type SocketLike, type Status, type TokenProvider } from "./connection.js";
export { type ChangeOptions, HttpError, InboxApi, type ListOptions } from "./inbox.js";
export * from "./protocol.js";
export { cursorStore, type CursorStore, type KeyValue } from "./storage.js";
export { InboxView } from "./view.js";
