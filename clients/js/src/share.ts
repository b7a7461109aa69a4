//! One socket per browser: the tabs of an origin elect a leader with the Web Locks API, the
//! leader alone holds the WebSocket, and it relays every frame to the other tabs over a
//! BroadcastChannel. When the leader's tab closes its lock is released, the next tab takes it
//! and resumes from the cursor the last leader kept in `localStorage`. Where either API is
//! missing (old browsers, Node), every tab keeps its own socket.

import type { Status } from "./connection.js";
import type { ServerFrame } from "./protocol.js";

export type Relay = { t: "frame"; frame: ServerFrame } | { t: "status"; status: Status } | { t: "ask" };

interface LockManager {
  request(name: string, cb: () => Promise<void>): Promise<void>;
}

export function canShare(): boolean {
  const nav = (globalThis as { navigator?: { locks?: LockManager } }).navigator;
  return typeof BroadcastChannel !== "undefined" && !!nav?.locks;
}

export interface Tab {
  /** Sends to every other tab of the group. */
  post(msg: Relay): void;
  /** Gives up leadership (or the wait for it) and leaves the group. */
  close(): void;
}

/**
 * Joins the group `name`. `lead` runs when this tab becomes the leader and returns how to stop
 * leading; `receive` gets what other tabs post.
 */
export function joinTabs(name: string, lead: () => () => void, receive: (msg: Relay) => void): Tab {
  const channel = new BroadcastChannel(name);
  channel.onmessage = (ev: MessageEvent<Relay>) => receive(ev.data);
  let release: (() => void) | null = null;
  let closed = false;
  const locks = (globalThis as unknown as { navigator: { locks: LockManager } }).navigator.locks;
  void locks.request(`${name}:leader`, async () => {
    if (closed) return;
    const stop = lead();
    // Held for as long as this tab lives or until close(): the browser frees it with the tab.
    await new Promise<void>((resolve) => (release = resolve));
    stop();
  });
  return {
    post: (msg) => channel.postMessage(msg),
    close: () => {
      closed = true;
      release?.();
      channel.close();
    },
  };
}
