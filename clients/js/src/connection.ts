//! One WebSocket to a Herald gateway that stays up: `hello` with the token and the last cursor,
//! reconnects with backoff and full jitter (or after the gateway's `reconnect.after_ms`),
//! refreshes the token in-band on `token_expiring`, and drops notifications already seen.

import { Backoff, type BackoffOptions } from "./backoff.js";
import { Close, cursorAfter, type ServerFrame } from "./protocol.js";
import type { CursorStore } from "./storage.js";

/** Gives the app's current token; `fresh` asks for a new one (after 4001 or `token_expiring`). */
export type TokenProvider = (opts: { fresh: boolean }) => string | Promise<string>;

export type Status = "connecting" | "open" | "reconnecting" | "stopped";

/** The minimal WebSocket the connection needs (the browser's, Node's, or `ws`'s). */
export interface SocketLike {
  readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
}
export type SocketFactory = (url: string) => SocketLike;

export interface ConnectionOptions {
  url: string;
  token: TokenProvider;
  cursor: CursorStore;
  backoff?: BackoffOptions;
  /** A socket not welcomed within this is abandoned and retried (default 10 000 ms): a
   * half-open connection or a server that accepts and never answers must not hang the client. */
  openTimeoutMs?: number;
  socket?: SocketFactory;
  /** Every frame the application should see (notifications already deduplicated). */
  onFrame(frame: ServerFrame): void;
  onStatus(status: Status, detail?: { code?: number; reason?: string; retryInMs?: number }): void;
}

export class Connection {
  private ws: SocketLike | null = null;
  private stopped = true;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private readonly backoff: Backoff;
  private needFreshToken = false;
  /** Set by a `reconnect` frame: the gateway's own delay replaces the backoff once. */
  private plannedDelay: number | null = null;
  /** The newest cursor handled on any socket of this connection. */
  private last: string | null;
  private welcomed: () => void = () => {};
  /** Counts sockets opened, for tests and the connection indicator. */
  opened = 0;
  refreshed = 0;

  constructor(private readonly opts: ConnectionOptions) {
    this.backoff = new Backoff(opts.backoff);
    this.last = opts.cursor.get();
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    void this.open();
  }

  /** Closes with 1000 and stays closed. */
  stop(): void {
    this.stopped = true;
    this.welcomed();
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const ws = this.ws;
    this.ws = null;
    if (ws) {
      ws.onclose = null;
      ws.onmessage = null;
      try {
        ws.close(Close.NORMAL, "bye");
      } catch {
        // Already closed.
      }
    }
    this.opts.onStatus("stopped");
  }

  /** The newest cursor seen (also kept in the cursor store). */
  get cursor(): string | null {
    return this.last;
  }

  private async open(): Promise<void> {
    if (this.stopped) return;
    this.opts.onStatus(this.opened === 0 ? "connecting" : "reconnecting");
    let token: string;
    try {
      token = await this.opts.token({ fresh: this.needFreshToken });
    } catch (e) {
      this.retry({ reason: `token provider failed: ${String(e)}` });
      return;
    }
    if (this.stopped) return;
    const make: SocketFactory = this.opts.socket ?? ((url) => new WebSocket(url) as unknown as SocketLike);
    let ws: SocketLike;
    try {
      ws = make(this.opts.url);
    } catch (e) {
      this.retry({ reason: String(e) });
      return;
    }
    this.ws = ws;
    this.opened += 1;
    const abandon = setTimeout(() => {
      if (this.ws !== ws) return;
      this.ws = null;
      ws.onclose = null;
      ws.onmessage = null;
      try {
        ws.close();
      } catch {
        // Not open yet.
      }
      this.closed(0, "no welcome in time");
    }, this.opts.openTimeoutMs ?? 10_000);
    this.welcomed = () => clearTimeout(abandon);
    ws.onopen = () => {
      const cursor = this.last ?? this.opts.cursor.get();
      ws.send(JSON.stringify({ type: "hello", token, cursor: cursor ?? null }));
    };
    ws.onmessage = (ev) => {
      if (typeof ev.data !== "string") return;
      let frame: ServerFrame;
      try {
        frame = JSON.parse(ev.data) as ServerFrame;
      } catch {
        return;
      }
      this.handle(frame);
    };
    ws.onerror = () => {
      // onclose follows with the code.
    };
    ws.onclose = (ev) => {
      clearTimeout(abandon);
      if (this.ws !== ws) return;
      this.ws = null;
      this.closed(ev.code, ev.reason);
    };
  }

  private handle(frame: ServerFrame): void {
    switch (frame.type) {
      case "welcome":
        this.welcomed();
        this.needFreshToken = false;
        this.backoff.reset();
        // A first connection starts here: resuming from it after a drop misses nothing.
        if (this.last == null && frame.cursor != null) this.remember(frame.cursor);
        this.opts.onStatus("open");
        break;
      case "notification":
        if (!cursorAfter(frame.cursor, this.last)) return;
        this.remember(frame.cursor);
        break;
      case "replayed":
        if (frame.cursor != null && cursorAfter(frame.cursor, this.last)) this.remember(frame.cursor);
        break;
      case "token_expiring":
        void this.refresh();
        break;
      case "reconnect":
        this.plannedDelay = Math.max(0, frame.after_ms);
        break;
      default:
        break;
    }
    this.opts.onFrame(frame);
  }

  private remember(cursor: string): void {
    this.last = cursor;
    this.opts.cursor.set(cursor);
  }

  private async refresh(): Promise<void> {
    const ws = this.ws;
    try {
      const token = await this.opts.token({ fresh: true });
      if (ws && this.ws === ws && ws.readyState === 1) {
        ws.send(JSON.stringify({ type: "refresh", token }));
        this.refreshed += 1;
      }
    } catch {
      // Without a new token the gateway closes with 4001 at expiry; the reconnect asks again.
    }
  }

  private closed(code: number, reason: string): void {
    if (this.stopped) return;
    if (code === Close.FORBIDDEN) {
      // Another user's token or an origin not allowed: retrying cannot help.
      this.stopped = true;
      this.opts.onStatus("stopped", { code, reason });
      return;
    }
    if (code === Close.UNAUTHENTICATED) this.needFreshToken = true;
    this.retry({ code, reason });
  }

  private retry(detail: { code?: number; reason?: string }): void {
    if (this.stopped) return;
    const delay = this.plannedDelay ?? this.backoff.next();
    this.plannedDelay = null;
    this.opts.onStatus("reconnecting", { ...detail, retryInMs: delay });
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.open();
    }, delay);
  }
}
