//! A live inbox for a page: the first pages over HTTP, kept current by the socket's
//! `notification`, `read`, `unread` and `reset` frames. Each notification is shown once, by id,
//! however many times it reaches the tab (HTTP page, replay, a relay from the leader tab).

import type { HeraldClient } from "./client.js";
import type { InboxItem, Notification, ReadState } from "./protocol.js";
import { cursorAfter } from "./protocol.js";

export class InboxView {
  /** Newest first; archived items are left out. */
  items: InboxItem[] = [];
  unread = 0;
  next: string | null = null;
  muted: string[] = [];
  loaded = false;
  private readonly listeners = new Set<() => void>();
  private readonly offs: Array<() => void> = [];
  /** Per id, the number of the latest change sent: only the latest may undo itself. */
  private readonly changes = new Map<string, number>();
  private changed = 0;
  /** Stops the changes still waiting for the store when the view closes. */
  private readonly closing = new AbortController();

  /**
   * `waitForStoreMs`: how long a change of one notification (read, unread, archive) keeps trying
   * while the inbox answers `404`: a notification shown from the socket is stored just after it
   * is pushed (a big team's copies seconds later), and a tap on it must not be lost meanwhile.
   */
  constructor(
    private readonly client: HeraldClient,
    private readonly pageSize = 20,
    private readonly waitForStoreMs = 10_000,
  ) {
    this.offs.push(
      client.on("notification", (n, meta) => this.add({ cursor: meta.cursor, notification: n })),
      client.on("unread", (count) => this.set(() => (this.unread = count))),
      client.on("read", (ids, read) => this.set(() => this.markLocal(ids, read))),
      client.on("reset", () => void this.load()),
    );
  }

  /** Calls `cb` after every change; returns how to stop. */
  onChange(cb: () => void): () => void {
    this.listeners.add(cb);
    return () => this.listeners.delete(cb);
  }

  /** (Re)loads the first page, the unread count and the preferences. */
  async load(): Promise<void> {
    const api = this.client.inbox;
    const [page, unread, prefs] = await Promise.all([
      api.list({ limit: this.pageSize }),
      api.unreadCount(),
      api.preferences().catch(() => ({ muted_kinds: [] as string[] })),
    ]);
    this.set(() => {
      // Live notifications that arrived meanwhile and are newer than the page stay.
      const newest = page.items[0]?.cursor;
      const fresher = this.items.filter((i) => newest == null || cursorAfter(i.cursor, newest));
      this.items = [];
      for (const i of [...fresher, ...page.items]) this.insert(i);
      this.next = page.next;
      this.unread = unread;
      this.muted = prefs.muted_kinds;
      this.loaded = true;
    });
  }

  async more(): Promise<void> {
    if (!this.next) return;
    const page = await this.client.inbox.list({ limit: this.pageSize, before: this.next });
    this.set(() => {
      for (const i of page.items) this.insert(i);
      this.next = page.next;
    });
  }

  /** Shows the item read at once; if the server refuses, it is shown as it was and this throws. */
  async markRead(id: string): Promise<void> {
    await this.change(id, () => this.markLocal([id], true), () => this.client.inbox.read(id, this.wait()));
  }

  async markUnread(id: string): Promise<void> {
    await this.change(id, () => this.markLocal([id], false), () => this.client.inbox.unread(id, this.wait()));
  }

  async archive(id: string): Promise<void> {
    await this.change(
      id,
      () => (this.items = this.items.filter((i) => i.notification.id !== id)),
      () => this.client.inbox.archive(id, this.wait()),
    );
  }

  async readAll(): Promise<void> {
    this.set(() => this.markLocal(["*"], true));
    const r = await this.client.inbox.readAll();
    this.set(() => (this.unread = r.unread));
  }

  async setMuted(kinds: string[]): Promise<void> {
    const p = await this.client.inbox.setPreferences({ muted_kinds: kinds });
    this.set(() => (this.muted = p.muted_kinds));
  }

  close(): void {
    this.closing.abort();
    for (const off of this.offs) off();
    this.listeners.clear();
  }

  /** A pushed notification. The gateway sends `unread` after a replay and after every read-state
   * change, but not when a new notification is stored: a new unread one counts here, and the
   * next `unread` frame (exact) replaces the count anyway. */
  private add(item: InboxItem): void {
    this.set(() => {
      if (this.insert(item) && !item.notification.read) this.unread += 1;
    });
  }

  /** Inserts in cursor order unless the id is already shown; whether it was inserted. */
  private insert(item: InboxItem): boolean {
    if (this.items.some((i) => i.notification.id === item.notification.id)) return false;
    const at = this.items.findIndex((i) => cursorAfter(item.cursor, i.cursor));
    if (at < 0) this.items.push(item);
    else this.items.splice(at, 0, item);
    return true;
  }

  private wait() {
    return { waitForStoreMs: this.waitForStoreMs, signal: this.closing.signal };
  }

  /**
   * Applies `local` now and sends `remote`. On success applies `local` again (the item may have
   * arrived meanwhile) with the server's count; on failure puts the item back as it was, unless
   * something changed it meanwhile (a frame, a reload, a later change of the same id).
   */
  private async change(id: string, local: () => void, remote: () => Promise<ReadState>): Promise<void> {
    const shown = () => this.items.find((i) => i.notification.id === id);
    const before = shown();
    const n = ++this.changed;
    this.changes.set(id, n);
    this.set(local);
    const after = shown();
    const latest = () => {
      const is = this.changes.get(id) === n;
      if (is) this.changes.delete(id);
      return is;
    };
    let r: ReadState;
    try {
      r = await remote();
    } catch (e) {
      if (latest() && shown() === after) {
        this.set(() => {
          this.items = this.items.filter((i) => i.notification.id !== id);
          if (before) this.insert(before);
        });
      }
      throw e;
    }
    const again = latest();
    this.set(() => {
      if (again) local();
      this.unread = r.unread;
    });
  }

  private markLocal(ids: string[], read: boolean): void {
    const all = ids.includes("*");
    this.items = this.items.map((i) =>
      all || ids.includes(i.notification.id)
        ? { ...i, notification: { ...i.notification, read } as Notification }
        : i,
    );
  }

  private set(change: () => void): void {
    change();
    for (const cb of this.listeners) cb();
  }
}
