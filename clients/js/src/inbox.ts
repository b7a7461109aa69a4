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

  read(id: string): Promise<ReadState> {
    return this.call("POST", `/v1/inbox/${encodeURIComponent(id)}/read`);
  }

  unread(id: string): Promise<ReadState> {
    return this.call("POST", `/v1/inbox/${encodeURIComponent(id)}/unread`);
  }

  /** Archives (and so marks read) one notification. */
  archive(id: string): Promise<ReadState> {
    return this.call("POST", `/v1/inbox/${encodeURIComponent(id)}/archive`);
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
