// The demo inbox page in a real Chromium (Debian's, driven by playwright-core; nothing
// downloaded), against a real Herald started by ../testing/stack.mjs. Saves docs/demo.png.
import assert from "node:assert/strict";
import { existsSync, mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { after, afterEach, before, test } from "node:test";
import { fileURLToPath } from "node:url";

import { chromium } from "playwright-core";

import { startStack, until } from "../testing/stack.mjs";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..");
const CHROMIUM = process.env.HERALD_CHROMIUM ?? "/usr/bin/chromium";
// Offline, quiet, reproducible: no GPU, no QUIC, no first-run, update or sync traffic.
const ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

let stack;
let browser;
/** Contexts of the running test, closed after it whatever happens. */
const contexts = [];
async function newContext(opts) {
  const c = await browser.newContext(opts);
  contexts.push(c);
  return c;
}
afterEach(async () => {
  for (const c of contexts.splice(0)) await c.close().catch(() => {});
});
before(async () => {
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: scripts/install-tools installs Debian's chromium`);
  stack = await startStack({ HERALD_DEMO: "1", HERALD_DEV_TOKENS: "1" });
  // playwright gives every launch a fresh temporary --user-data-dir.
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS, headless: true });
});
after(async () => {
  await browser?.close();
  await stack?.stop();
});

async function open(context, user, extra = "") {
  const page = await context.newPage();
  await page.goto(`${stack.http}/#user=${encodeURIComponent(user)}${extra}`);
  await page.waitForSelector("#conn[data-status=open]", { timeout: 15_000 });
  return page;
}

const shown = (page, id) => page.locator(`li.item[data-id="${id}"]`).count();
const badge = (page) => page.evaluate(() => (document.getElementById("badge").hidden ? 0 : Number(document.getElementById("badge").textContent)));

async function connections() {
  return stack.metric("herald_gateway_connections");
}

test("a publish appears in the page within a second", async (t) => {
  const context = await newContext();
  const page = await open(context, "b-live");
  const started = Date.now();
  await stack.publish("first", ["b-live"], { title: "Your build passed", body: "main · 2 min 14 s" });
  await page.waitForSelector('li.item[data-id="first"]', { timeout: 5_000 });
  const ms = Date.now() - started;
  t.diagnostic(`publish → shown in the page: ${ms} ms`);
  assert.ok(ms < 1000, `appeared after ${ms} ms`);
});

test("ten tabs share one socket and each shows a notification once", async () => {
  await until(async () => (await connections()) === 0, 5_000, "no sockets left from earlier tests");
  const context = await newContext();
  const pages = [];
  for (let i = 0; i < 10; i++) pages.push(await open(context, "b-tabs"));
  await until(async () => (await connections()) === 1, 5_000, "one socket");
  const leaders = await Promise.all(pages.map((p) => p.evaluate(() => window.heraldDemo.client.leader)));
  assert.equal(leaders.filter(Boolean).length, 1, "one leader tab");
  await stack.publish("tabs-1", ["b-tabs"]);
  await stack.publish("tabs-2", ["b-tabs"]);
  for (const p of pages) await p.waitForSelector('li.item[data-id="tabs-2"]', { timeout: 5_000 });
  for (const p of pages) {
    assert.equal(await shown(p, "tabs-1"), 1);
    assert.equal(await shown(p, "tabs-2"), 1);
  }
  // The leader tab closes: another takes over, still one socket, nothing twice.
  const leader = pages[leaders.indexOf(true)];
  await leader.close();
  const rest = pages.filter((p) => p !== leader);
  await until(async () => (await connections()) === 1, 10_000, "one socket after the leader left");
  await stack.publish("tabs-3", ["b-tabs"]);
  for (const p of rest) await p.waitForSelector('li.item[data-id="tabs-3"]', { timeout: 10_000 });
  for (const p of rest) for (const id of ["tabs-1", "tabs-2", "tabs-3"]) assert.equal(await shown(p, id), 1, id);
  assert.equal(await connections(), 1);
});

test("mark read in one tab updates the other tab and another device", async (t) => {
  if (!(await stack.hasInbox())) return t.skip("this gateway has no inbox API (GET /v1/inbox is 404)");
  const laptop = await newContext();
  const phone = await newContext();
  const a1 = await open(laptop, "b-read");
  const a2 = await open(laptop, "b-read");
  const b = await open(phone, "b-read");
  await stack.publish("read-1", ["b-read"], { title: "Ana commented on your pull request" });
  await stack.publish("read-2", ["b-read"], { title: "Deploy to production finished" });
  for (const p of [a1, a2, b]) await p.waitForSelector('li.item[data-id="read-2"]', { timeout: 5_000 });
  for (const p of [a1, a2, b]) await until(async () => (await badge(p)) === 2, 5_000, "badge 2");
  await a1.locator('li.item[data-id="read-1"] button.mark-read').click({ force: true });
  for (const p of [a2, b]) await until(async () => (await badge(p)) === 1, 5_000, "badge 1 elsewhere");
  assert.equal(await b.locator('li.item[data-id="read-1"].unread').count(), 0);
  await b.locator("#read-all").click();
  for (const p of [a1, a2]) await until(async () => (await badge(p)) === 0, 5_000, "read-all elsewhere");
});

test("the gateway is killed and restarted: nothing lost, nothing twice", async () => {
  const context = await newContext();
  const page = await open(context, "b-kill");
  await stack.publish("k-0", ["b-kill"]);
  await page.waitForSelector('li.item[data-id="k-0"]');
  await stack.kill();
  for (let i = 1; i <= 5; i++) await stack.publish(`k-${i}`, ["b-kill"]);
  await stack.start();
  for (let i = 6; i <= 8; i++) await stack.publish(`k-${i}`, ["b-kill"]);
  await page.waitForSelector('li.item[data-id="k-8"]', { timeout: 20_000 });
  await page.waitForTimeout(300);
  const ids = await page.locator("li.item").evaluateAll((els) => els.map((e) => e.dataset.id));
  assert.deepEqual(ids, Array.from({ length: 9 }, (_, i) => `k-${8 - i}`));
  assert.ok((await page.evaluate(() => window.heraldDemo.client.socketsOpened)) >= 2, "it reconnected");
});

test("a token that expires mid-session is refreshed without a reconnect", async () => {
  const context = await newContext();
  const before = await stack.metric("herald_gateway_refreshes_total");
  // 70 s: inside the gateway's 90 s warning window, so token_expiring comes at once.
  const page = await open(context, "b-exp", "&ttl=70");
  await until(() => page.evaluate(() => window.heraldDemo.client.refreshes === 1), 10_000, "a refresh");
  await until(async () => (await stack.metric("herald_gateway_refreshes_total")) === before + 1, 5_000, "counted");
  await stack.publish("after-refresh", ["b-exp"]);
  await page.waitForSelector('li.item[data-id="after-refresh"]');
  assert.equal(await page.evaluate(() => window.heraldDemo.client.socketsOpened), 1, "the same socket");
});

test("screenshot for the README", async () => {
  const context = await newContext({ viewport: { width: 1200, height: 760 }, deviceScaleFactor: 1 });
  const page = await open(context, "demo-user");
  const samples = [
    ["s-1", "billing", "Invoice #2291 paid", "€1,240.00 received from Acme GmbH."],
    ["s-2", "deploy", "Deploy to production finished", "api · v2.14.0 · 3 min 12 s"],
    ["s-3", "mention", "Ana mentioned you in #launch", "“@you can you check the rollout plan before 5pm?”"],
    ["s-4", "comment", "Ben replied to your comment", "Looks good to me, shipping it."],
  ];
  for (const [id, kind, title, body] of samples) await stack.publish(id, ["demo-user"], { kind, title, body });
  await page.waitForSelector('li.item[data-id="s-4"]');
  await page.locator('li.item[data-id="s-1"] button.mark-read').click({ force: true }).catch(() => {});
  await page.waitForTimeout(1500);
  mkdirSync(join(root, "docs"), { recursive: true });
  await page.screenshot({ path: join(root, "docs", "demo.png") });
});
