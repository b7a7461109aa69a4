// Pure logic of the client, without a server: cursor order, backoff bounds, and the
// connection's handling of frames and close codes on a scripted socket.
import assert from "node:assert/strict";
import { test } from "node:test";

import { Backoff, Connection, cursorAfter, cursorStore } from "../dist/index.js";

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
