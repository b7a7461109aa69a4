// The client against a real gateway (started by stack.mjs): live delivery, resume from the cursor
// across a gateway kill, in-band refresh, 4001 and 4003, and the inbox API.
import assert from "node:assert/strict";
import { after, afterEach, before, test } from "node:test";

import { HeraldClient, InboxView } from "../dist/index.js";
import { startStack, until } from "../testing/stack.mjs";

let stack;
before(async () => {
  stack = await startStack();
});
after(async () => {
  await stack?.stop();
});
/** Clients and views of the running test, stopped after it whatever happens. */
const running = [];
afterEach(() => {
  for (const x of running.splice(0)) (x.stop ?? x.close).call(x);
});

/** A client with in-memory storage that records what it emits. */
function client(user, opts = {}) {
  const store = new Map();
  const storage = { getItem: (k) => store.get(k) ?? null, setItem: (k, v) => store.set(k, v) };
  const calls = [];
  const token = opts.token ?? (({ fresh }) => (calls.push(fresh), stack.token(user)));
  const c = new HeraldClient({ url: stack.http, user, token, storage, share: false, backoff: { baseMs: 50, maxMs: 500 }, openTimeoutMs: 2000 });
  running.push(c);
  const seen = [];
  const statuses = [];
  c.on("notification", (n, meta) => seen.push({ id: n.id, cursor: meta.cursor, replay: meta.replay }));
  c.on("status", (s, d) => statuses.push({ s, ...d }));
  return { c, seen, statuses, calls, storage };
}

test("a published notification arrives, and its cursor is kept", async () => {
  const { c, seen, storage } = client("js-live");
  c.start();
  await until(() => c.status === "open", 10_000, "open");
  await stack.publish("live-1", ["js-live"]);
  await until(() => seen.length === 1, 10_000, "the notification");
  assert.equal(seen[0].id, "live-1");
  assert.equal(storage.getItem("herald:js-live:cursor"), seen[0].cursor);
  c.stop();
});

test("a gateway killed and restarted: everything published meanwhile arrives once, in order", async () => {
  const { c, seen, statuses } = client("js-restart");
  c.start();
  await until(() => c.status === "open", 10_000, "open");
  await stack.publish("r-0", ["js-restart"]);
  await until(() => seen.length === 1, 10_000, "r-0");
  await stack.kill();
  for (let i = 1; i <= 5; i++) await stack.publish(`r-${i}`, ["js-restart"]);
  await stack.start();
  for (let i = 6; i <= 8; i++) await stack.publish(`r-${i}`, ["js-restart"]);
  await until(() => seen.length >= 9, 20_000, "all nine");
  await new Promise((r) => setTimeout(r, 500));
  assert.deepEqual(
    seen.map((s) => s.id),
    Array.from({ length: 9 }, (_, i) => `r-${i}`),
  );
  assert.ok(statuses.some((s) => s.s === "reconnecting"), "it reconnected");
  assert.ok(c.socketsOpened >= 2);
  c.stop();
});

test("token_expiring is answered with a refresh on the same socket", async () => {
  let first = true;
  const asked = [];
  const { c } = client("js-refresh", {
    token: ({ fresh }) => {
      asked.push(fresh);
      // 70 s: inside the gateway's 90 s warning window, so token_expiring comes at once.
      const t = stack.token("js-refresh", first ? 70 : 3600);
      first = false;
      return t;
    },
  });
  const before = await stack.metric("herald_gateway_refreshes_total");
  c.start();
  await until(() => c.refreshes === 1, 10_000, "a refresh");
  await until(async () => (await stack.metric("herald_gateway_refreshes_total")) === before + 1, 5_000, "the gateway's count");
  assert.deepEqual(asked, [false, true]);
  assert.equal(c.socketsOpened, 1, "no reconnect");
  assert.equal(c.status, "open");
  c.stop();
});

test("4001 gets a fresh token before reconnecting", async () => {
  const asked = [];
  const { c, statuses } = client("js-4001", {
    token: ({ fresh }) => {
      asked.push(fresh);
      return fresh ? stack.token("js-4001") : "not-a-token";
    },
  });
  c.start();
  await until(() => c.status === "open", 10_000, "open");
  assert.deepEqual(asked, [false, true]);
  assert.ok(statuses.some((s) => s.code === 4001));
  c.stop();
});

test("4003 stops the client and reports it", async () => {
  // A refresh with another user's token is forbidden.
  const { c, statuses } = client("js-4003", {
    token: ({ fresh }) => (fresh ? stack.token("someone-else") : stack.token("js-4003", 70)),
  });
  c.start();
  await until(() => statuses.some((s) => s.s === "stopped" && s.code === 4003), 10_000, "stopped with 4003");
  const opened = c.socketsOpened;
  await new Promise((r) => setTimeout(r, 800));
  assert.equal(c.socketsOpened, opened, "no retry after 4003");
});

test("a read sent before the notification is stored waits for it; an unknown id is 404", async (t) => {
  if (!(await stack.hasInbox())) return t.skip("this gateway has no inbox API (GET /v1/inbox is 404)");
  const a = client("js-early");
  const view = new InboxView(a.c);
  const impatient = new InboxView(a.c, 20, 300);
  running.push(view, impatient);
  a.c.start();
  await until(() => a.c.status === "open", 10_000, "open");
  // The tap lands before the copy is stored (here: before it is even published), as it can for
  // a big team's copy shown from the socket while the rest of the team is still being stored.
  const marking = view.markRead("early-1");
  await new Promise((r) => setTimeout(r, 300));
  await stack.publish("early-1", ["js-early"]);
  await marking;
  const page = await a.c.inbox.list();
  assert.deepEqual(page.items.map((i) => [i.notification.id, i.notification.read]), [["early-1", true]]);
  assert.equal(await a.c.inbox.unreadCount(), 0);
  // The view shows the pushed copy read, and the count the gateway sends after the change.
  const shown = () => view.items.find((i) => i.notification.id === "early-1");
  await until(() => shown()?.notification.read === true && view.unread === 0, 5_000, "the view in step");

  const started = Date.now();
  await assert.rejects(impatient.markRead("never-published"), (e) => e.status === 404);
  assert.ok(Date.now() - started >= 300, "the 404 came after the wait");
  await assert.rejects(a.c.inbox.read("never-published"), (e) => e.status === 404);
  a.c.stop();
});

test("the inbox API and the view stay in sync with read and unread frames", async (t) => {
  if (!(await stack.hasInbox())) return t.skip("this gateway has no inbox API (GET /v1/inbox is 404)");
  const a = client("js-inbox");
  const b = client("js-inbox");
  const va = new InboxView(a.c);
  const vb = new InboxView(b.c);
  running.push(va, vb);
  a.c.start();
  b.c.start();
  await until(() => a.c.status === "open" && b.c.status === "open", 10_000, "open");
  for (let i = 0; i < 3; i++) await stack.publish(`in-${i}`, ["js-inbox"]);
  await until(() => a.seen.length === 3 && b.seen.length === 3, 10_000, "three on both");
  await va.load();
  await vb.load();
  assert.deepEqual(va.items.map((i) => i.notification.id), ["in-2", "in-1", "in-0"]);
  assert.equal(va.unread, 3);
  const page = await a.c.inbox.list({ limit: 2 });
  assert.equal(page.items.length, 2);
  assert.ok(page.next);
  const rest = await a.c.inbox.list({ limit: 2, before: page.next });
  assert.deepEqual(rest.items.map((i) => i.notification.id), ["in-0"]);
  assert.equal(rest.next, null);

  await va.markRead("in-1");
  await until(() => vb.unread === 2, 5_000, "the other device's count");
  assert.equal(vb.items.find((i) => i.notification.id === "in-1").notification.read, true);
  await va.archive("in-0");
  assert.equal(await a.c.inbox.unreadCount(), 1);
  assert.deepEqual((await a.c.inbox.list({ archived: true })).items.map((i) => i.notification.id), ["in-0"]);
  await va.readAll();
  await until(() => vb.unread === 0, 5_000, "read-all on the other device");
  assert.ok(vb.items.every((i) => i.notification.read));
  const prefs = await a.c.inbox.setPreferences({ muted_kinds: ["noise"] });
  assert.deepEqual(prefs.muted_kinds, ["noise"]);
  await stack.publish("muted-1", ["js-inbox"], { kind: "noise" });
  await stack.publish("loud-1", ["js-inbox"]);
  await until(() => a.seen.some((s) => s.id === "loud-1"), 10_000, "loud-1");
  assert.ok(!a.seen.some((s) => s.id === "muted-1"), "a muted kind is not pushed");
  va.close();
  vb.close();
  a.c.stop();
  b.c.stop();
});
