//! `HeraldClient`: what an application uses. It owns (or, in a follower tab, listens to) the one
//! socket of the browser, turns frames into events, and gives the inbox API.

import type { BackoffOptions } from "./backoff.js";
import { Connection, type SocketFactory, type Status, type TokenProvider } from "./connection.js";
import { InboxApi } from "./inbox.js";
import { cursorAfter, type Notification, type ServerFrame } from "./protocol.js";
import { canShare, joinTabs, type Relay, type Tab } from "./share.js";
import { cursorStore, type KeyValue } from "./storage.js";

export interface ClientOptions {
  /** The gateway's base URL, e.g. `https://herald.example.com` (`/v1/ws` and `/v1/inbox` below it). */
  url: string;
  /** The app's token provider: the current token, or a new one when `fresh` is true. */
  token: TokenProvider;
  /** The signed-in user: names the stored cursor and the tab group (default `"default"`). */
  user?: string;
  /** Share one socket among the tabs of this browser (default: where supported). */
  share?: boolean;
  backoff?: BackoffOptions;
  /** A socket not welcomed within this is abandoned and retried (default 10 000 ms). */
  openTimeoutMs?: number;
  /** Defaults to `localStorage` where there is one, else memory. */
  storage?: KeyValue | null;
  /** Defaults to the global `WebSocket`. */
  socket?: SocketFactory;
  fetch?: typeof fetch;
}

export interface StatusDetail {
  code?: number;
  reason?: string;
  retryInMs?: number;
}

export interface Events {
  notification: (n: Notification, meta: { cursor: string; replay: boolean }) => void;
  /** Read state changed for `ids` (`["*"]`: all), here or on another device. */
  read: (ids: string[], read: boolean) => void;
  unread: (count: number) => void;
  /** The saved cursor was too old: reload the inbox over HTTP (`InboxView` does). */
  reset: (reason: string) => void;
  status: (status: Status, detail: StatusDetail) => void;
  /** Every frame, as received (after deduplication). */
  frame: (frame: ServerFrame) => void;
}

type Listeners = { [K in keyof Events]: Set<Events[K]> };

export class HeraldClient {
  readonly inbox: InboxApi;
  /** Whether this tab holds the socket (always true without sharing). */
  leader = false;
  status: Status = "stopped";
  statusDetail: StatusDetail = {};
  private conn: Connection | null = null;
  private tab: Tab | null = null;
  private lastUnread: number | null = null;
  /** The newest notification cursor this tab handled: copies relayed again are dropped. */
  private seen: string | null = null;
  private readonly listeners: Listeners = {
    notification: new Set(),
    read: new Set(),
    unread: new Set(),
    reset: new Set(),
    status: new Set(),
    frame: new Set(),
  };

  constructor(private readonly opts: ClientOptions) {
    const base = opts.url.replace(/\/+$/, "");
    this.inbox = new InboxApi(base.replace(/^ws/, "http"), opts.token, opts.fetch);
  }

  on<K extends keyof Events>(event: K, cb: Events[K]): () => void {
    (this.listeners[event] as Set<Events[K]>).add(cb);
    return () => (this.listeners[event] as Set<Events[K]>).delete(cb);
  }

  start(): void {
    if (this.conn || this.tab) return;
    const group = `herald:${this.opts.user ?? "default"}`;
    if (this.opts.share ?? canShare()) {
      this.tab = joinTabs(group, () => this.lead(group), (msg) => this.fromLeader(msg));
      this.tab.post({ t: "ask" });
    } else {
      this.lead(group);
    }
  }

  stop(): void {
    this.tab?.close();
    this.tab = null;
    this.conn?.stop();
    this.conn = null;
    this.leader = false;
    this.setStatus("stopped", {});
  }

  /** Sockets opened by this tab (0 in a follower tab): for tests and diagnostics. */
  get socketsOpened(): number {
    return this.conn?.opened ?? 0;
  }

  /** In-band token refreshes sent by this tab. */
  get refreshes(): number {
    return this.conn?.refreshed ?? 0;
  }

  private lead(group: string): () => void {
    this.leader = true;
    const wsBase = this.opts.url.replace(/\/+$/, "").replace(/^http/, "ws");
    const conn = new Connection({
      url: `${wsBase}/v1/ws`,
      token: this.opts.token,
      cursor: cursorStore(`${group}:cursor`, this.opts.storage),
      backoff: this.opts.backoff,
      openTimeoutMs: this.opts.openTimeoutMs,
      socket: this.opts.socket,
      onFrame: (frame) => {
        this.tab?.post({ t: "frame", frame });
        this.dispatch(frame);
      },
      onStatus: (status, detail) => {
        this.tab?.post({ t: "status", status });
        this.setStatus(status, detail ?? {});
      },
    });
    this.conn = conn;
    conn.start();
    return () => {
      conn.stop();
      if (this.conn === conn) this.conn = null;
      this.leader = false;
    };
  }

  private fromLeader(msg: Relay): void {
    switch (msg.t) {
      case "frame":
        this.dispatch(msg.frame);
        break;
      case "status":
        this.setStatus(msg.status, {});
        break;
      case "ask":
        // A tab just joined: tell it what it missed of the state.
        if (this.leader) {
          this.tab?.post({ t: "status", status: this.status });
          if (this.lastUnread != null) this.tab?.post({ t: "frame", frame: { type: "unread", count: this.lastUnread } });
        }
        break;
    }
  }

  private dispatch(frame: ServerFrame): void {
    if (frame.type === "notification") {
      if (!cursorAfter(frame.cursor, this.seen)) return;
      this.seen = frame.cursor;
    }
    this.emit("frame", frame);
    switch (frame.type) {
      case "notification":
        this.emit("notification", frame.notification, { cursor: frame.cursor, replay: frame.replay });
        break;
      case "read":
        this.emit("read", frame.ids, frame.read ?? true);
        break;
      case "unread":
        this.lastUnread = frame.count;
        this.emit("unread", frame.count);
        break;
      case "reset":
        this.emit("reset", frame.reason);
        break;
      default:
        break;
    }
  }

  private setStatus(status: Status, detail: StatusDetail): void {
    this.status = status;
    this.statusDetail = detail;
    this.emit("status", status, detail);
  }

  private emit<K extends keyof Events>(event: K, ...args: Parameters<Events[K]>): void {
    for (const cb of this.listeners[event]) {
      try {
        (cb as (...a: Parameters<Events[K]>) => void)(...args);
      } catch (e) {
        console.error("herald: a listener failed", e);
      }
    }
  }
}
