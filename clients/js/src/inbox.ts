//! The inbox over HTTP (`/v1/inbox`, `/v1/preferences`) with the user's token.

import type { TokenProvider } from "./connection.js";
import type { InboxPage, Preferences, ReadState } from "./protocol.js";

export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = "HttpError";
  }
}

/** How a change of one notification's read state treats `404`. */
export interface ChangeOptions {
  /**
   * Keep trying a `404` for this long, in ms (default 0: answer at once). A notification is
   * pushed first and stored just after (a big team's copies once the whole team is pushed, which
   * can take seconds), so an id that just arrived on the socket may not be in the inbox yet.
   * Pass a few seconds for such ids; after the wait the `404` is thrown as usual. At most
   * one minute.
   */
  waitForStoreMs?: number;
  /** Stops the waiting: the last error is thrown at the next try. */
  signal?: AbortSignal;
}

const MAX_WAIT_FOR_STORE_MS = 60_000;

/** The waits between tries of a `404` (then the last one repeats). */
const STORE_RETRY_MS = [100, 200, 400, 800, 1000];

export interface ListOptions {
  limit?: number;
  before?: string | null;
  unread?: boolean;
  kind?: string;
  archived?: boolean;
}

export class InboxApi {
  constructor(
    private readonly base: string,
    private readonly token: TokenProvider,
    private readonly fetchImpl: typeof fetch = (...a) => fetch(...a),
  ) {}

  /** One page, newest first; pass `next` as `before` for the following page. */
  list(opts: ListOptions = {}): Promise<InboxPage> {
    const q = new URLSearchParams();
    if (opts.limit != null) q.set("limit", String(opts.limit));
    if (opts.before) q.set("before", opts.before);
    if (opts.unread) q.set("unread", "true");
    if (opts.kind) q.set("kind", opts.kind);
    if (opts.archived) q.set("archived", "true");
    const qs = q.toString();
    return this.call<InboxPage>("GET", `/v1/inbox${qs ? `?${qs}` : ""}`);
  }

  async unreadCount(): Promise<number> {
    return (await this.call<{ unread: number }>("GET", "/v1/inbox/unread-count")).unread;
  }

  read(id: string, opts: ChangeOptions = {}): Promise<ReadState> {
    return this.change(id, "read", opts);
  }

  unread(id: string, opts: ChangeOptions = {}): Promise<ReadState> {
    return this.change(id, "unread", opts);
  }

  /** Archives (and so marks read) one notification. */
  archive(id: string, opts: ChangeOptions = {}): Promise<ReadState> {
    return this.change(id, "archive", opts);
  }

  readAll(): Promise<{ unread: number }> {
    return this.call("POST", "/v1/inbox/read-all");
  }

  preferences(): Promise<Preferences> {
    return this.call("GET", "/v1/preferences");
  }

  setPreferences(p: Preferences): Promise<Preferences> {
    return this.call("PUT", "/v1/preferences", p);
  }

  /** A read-state change, tried again on `404` until `waitForStoreMs` has passed. */
  private async change(id: string, what: string, opts: ChangeOptions): Promise<ReadState> {
    const wait = Math.min(Math.max(Number(opts.waitForStoreMs) || 0, 0), MAX_WAIT_FOR_STORE_MS);
    const deadline = Date.now() + wait;
    for (let tries = 0; ; tries++) {
      try {
        return await this.call<ReadState>("POST", `/v1/inbox/${encodeURIComponent(id)}/${what}`);
      } catch (e) {
        const left = deadline - Date.now();
        if (!(e instanceof HttpError && e.status === 404) || left <= 0 || opts.signal?.aborted) throw e;
        const wait = Math.min(left, STORE_RETRY_MS[Math.min(tries, STORE_RETRY_MS.length - 1)]);
        await new Promise((r) => setTimeout(r, wait));
      }
    }
  }

  /** One request; a 401 gets a fresh token and one more try. */
  private async call<T>(method: string, path: string, body?: unknown): Promise<T> {
    let fresh = false;
    for (;;) {
      const token = await this.token({ fresh });
      const res = await this.fetchImpl(this.base + path, {
        method,
        headers: {
          authorization: `Bearer ${token}`,
          ...(body === undefined ? {} : { "content-type": "application/json" }),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      if (res.status === 401 && !fresh) {
        fresh = true;
        continue;
      }
      const text = await res.text();
      const json = text ? JSON.parse(text) : null;
      if (!res.ok) {
        const err = json?.error ?? {};
        throw new HttpError(res.status, err.code ?? "http", err.message ?? `HTTP ${res.status}`);
      }
      return json as T;
    }
  }
}
