// Pure logic of the client, without a server: cursor order, backoff bounds, the
// connection's handling of frames and close codes on a scripted socket, and the inbox view's
// optimistic changes when the server refuses them.
import assert from "node:assert/strict";
import { test } from "node:test";

import { Backoff, Connection, HttpError, InboxView, cursorAfter, cursorStore } from "../dist/index.js";

test("cursors compare as growing decimals", () => {
  assert.ok(cursorAfter("10", "9"));
  assert.ok(cursorAfter("100000000000000000000001", "99999"));
  assert.ok(!cursorAfter("9", "9"));
  assert.ok(!cursorAfter("8", "10"));
  assert.ok(cursorAfter("0", null));
});

test("backoff is full jitter under a doubling ceiling", () => {
  const top = new Backoff({ baseMs: 100, maxMs: 1000 }, () => 0.999999);
  assert.deepEqual([1, 2, 3, 4, 5].map(() => top.next()), [99, 199, 399, 799, 999]);
  const bottom = new Backoff({ baseMs: 100, maxMs: 1000 }, () => 0);
  assert.equal(bottom.next(), 0);
});

/** A socket the test drives by hand. */
function scripted() {
  const sockets = [];
  const factory = () => {
    const s = {
      readyState: 0,
      sent: [],
      send: (d) => s.sent.push(JSON.parse(d)),
      close: () => {},
      onopen: null,
      onmessage: null,
      onclose: null,
      onerror: null,
      open() {
        s.readyState = 1;
        s.onopen?.({});
      },
      frame: (f) => s.onmessage?.({ data: JSON.stringify(f) }),
      drop: (code) => s.onclose?.({ code, reason: "" }),
    };
    sockets.push(s);
    return s;
  };
  return { sockets, factory };
}

const tick = () => new Promise((r) => setTimeout(r, 5));

test("already seen cursors are dropped and the reconnect resumes from the last one", async () => {
  const { sockets, factory } = scripted();
  const frames = [];
  const cursor = cursorStore("k", null);
  const conn = new Connection({
    url: "ws://x",
    token: () => "t",
    cursor,
    socket: factory,
    backoff: { baseMs: 1, maxMs: 1 },
    onFrame: (f) => frames.push(f),
    onStatus: () => {},
  });
  conn.start();
  await tick();
  sockets[0].open();
  assert.deepEqual(sockets[0].sent[0], { type: "hello", token: "t", cursor: null });
  sockets[0].frame({ type: "welcome", user: "u", session: "s", expires_at: 0, cursor: "5" });
  const n = (c) => ({ type: "notification", cursor: c, replay: false, notification: { id: `n${c}` } });
  sockets[0].frame(n("6"));
  sockets[0].frame(n("7"));
  sockets[0].frame(n("6"));
  sockets[0].drop(1006);
  await new Promise((r) => setTimeout(r, 20));
  sockets[1].open();
  assert.equal(sockets[1].sent[0].cursor, "7");
  sockets[1].frame(n("7"));
  sockets[1].frame(n("8"));
  assert.deepEqual(
    frames.filter((f) => f.type === "notification").map((f) => f.cursor),
    ["6", "7", "8"],
  );
  assert.equal(cursor.get(), "8");
  conn.stop();
});

test("reconnect.after_ms replaces the backoff once", async () => {
  const { sockets, factory } = scripted();
  const statuses = [];
  const conn = new Connection({
    url: "ws://x",
    token: () => "t",
    cursor: cursorStore("k", null),
    socket: factory,
    backoff: { baseMs: 60_000, maxMs: 60_000 },
    onFrame: () => {},
    onStatus: (s, d) => statuses.push({ s, ...d }),
  });
  conn.start();
  await tick();
  sockets[0].open();
  sockets[0].frame({ type: "reconnect", after_ms: 1234, reason: "shutdown" });
  sockets[0].drop(1001);
  assert.equal(statuses.at(-1).retryInMs, 1234);
  conn.stop();
});

/** A client whose frames the test sends and whose inbox calls it answers by hand. */
function fakeClient() {
  const handlers = {};
  const calls = [];
  const answer = () => {
    let settle;
    const p = new Promise((resolve, reject) => (settle = { resolve, reject }));
    return Object.assign(p, settle);
  };
  const inbox = {};
  for (const what of ["read", "unread", "archive"]) {
    inbox[what] = (id, opts) => {
      const call = answer();
      calls.push({ what, id, opts, call });
      return call;
    };
  }
  return {
    client: { on: (event, cb) => ((handlers[event] = cb), () => delete handlers[event]), inbox },
    frame: (event, ...args) => handlers[event](...args),
    calls,
  };
}

const item = (id, cursor, read = false) => ({ cursor, notification: { id, kind: "k", title: id, created_at: "2026-12-01T00:00:00Z", read } });
const refused = () => new HttpError(404, "not_found", "no such notification");
const shown = (view) => view.items.map((i) => [i.notification.id, i.notification.read ?? false]);

test("a change the server refuses is shown as it was, and waits for the store meanwhile", async () => {
  const { client, frame, calls } = fakeClient();
  const view = new InboxView(client, 20, 1234);
  frame("notification", item("a", "1").notification, { cursor: "1" });
  const marking = view.markRead("a");
  assert.deepEqual(shown(view), [["a", true]], "shown read at once");
  assert.equal(calls[0].opts.waitForStoreMs, 1234);
  calls[0].call.reject(refused());
  await assert.rejects(marking, (e) => e.status === 404);
  assert.deepEqual(shown(view), [["a", false]], "put back");

  const archiving = view.archive("a");
  assert.deepEqual(shown(view), []);
  calls[1].call.reject(refused());
  await assert.rejects(archiving);
  assert.deepEqual(shown(view), [["a", false]], "archive undone");
  view.close();
  assert.ok(calls[1].opts.signal.aborted, "closing the view stops what still waits");
});

test("a refused change does not undo what arrived meanwhile", async () => {
  const { client, frame, calls } = fakeClient();
  const view = new InboxView(client);
  // Tapped before the view had it; pushed while the request waits: it stays.
  const early = view.markRead("b");
  frame("notification", item("b", "2").notification, { cursor: "2" });
  calls[0].call.reject(refused());
  await assert.rejects(early);
  assert.deepEqual(shown(view), [["b", false]]);
  // Another device's read arrives meanwhile: not undone.
  const unmark = view.markUnread("b");
  frame("read", ["b"], true);
  calls[1].call.reject(refused());
  await assert.rejects(unmark);
  assert.deepEqual(shown(view), [["b", true]]);
  // A later change of the same id: the earlier one's failure undoes nothing.
  const first = view.markUnread("b");
  const second = view.archive("b");
  calls[2].call.reject(refused());
  await assert.rejects(first);
  assert.deepEqual(shown(view), [], "still archived");
  calls[3].call.resolve({ id: "b", read: true, unread: 0 });
  await second;
  assert.deepEqual(shown(view), []);
  assert.equal(view.unread, 0);
});

test("a change that succeeds applies to an item that arrived while it waited", async () => {
  const { client, frame, calls } = fakeClient();
  const view = new InboxView(client);
  const marking = view.markRead("c");
  frame("notification", item("c", "3").notification, { cursor: "3" });
  assert.equal(view.unread, 1);
  calls[0].call.resolve({ id: "c", read: true, unread: 0 });
  await marking;
  assert.deepEqual(shown(view), [["c", true]]);
  assert.equal(view.unread, 0);
});
