// Herald's demo inbox page: signs in (a token in the URL fragment, or a typed user name where the
// gateway mints development tokens), then renders an InboxView from the JavaScript client.
import { HeraldClient, InboxView } from "/demo/herald/index.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.hash.slice(1));
const origin = location.origin;

function userOf(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(decodeURIComponent(escape(atob(part)))).sub;
  } catch {
    return null;
  }
}

async function mint(user, ttlSeconds) {
  const res = await fetch(`${origin}/demo/token`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ user, ttl_seconds: ttlSeconds }),
  });
  if (!res.ok) throw new Error((await res.json().catch(() => ({})))?.error?.message ?? `HTTP ${res.status}`);
  return (await res.json()).token;
}

async function main() {
  const config = await fetch(`${origin}/demo/config`).then((r) => r.json()).catch(() => ({ mint: false }));
  let token = params.get("token");
  const user = params.get("user") ?? (token ? userOf(token) : null);
  if (!user) return showSignin(config);
  if (!token) {
    if (!config.mint) return showSignin(config, "This gateway does not mint tokens: open the URL printed by scripts/run.");
    const ttl = Number(params.get("ttl")) || undefined;
    token = await mint(user, ttl);
  }
  // The first token may be short-lived (a test asks for that); fresh ones last an hour.
  const provider = async ({ fresh }) => {
    if (fresh && config.mint) token = await mint(user);
    return token;
  };
  start(user, provider);
}

function showSignin(config, message) {
  $("signin").hidden = false;
  if (message || !config.mint) {
    $("signin-error").hidden = false;
    $("signin-error").textContent = message ?? "Open the URL printed by scripts/run (it carries a token).";
  }
  $("signin-form").onsubmit = (ev) => {
    ev.preventDefault();
    const name = $("signin-user").value.trim();
    if (!name) return;
    location.hash = `user=${encodeURIComponent(name)}`;
    location.reload();
  };
}

function start(user, token) {
  $("app").hidden = false;
  $("who").hidden = false;
  $("who").textContent = user;
  $("try-user").textContent = user;
  $("try-cmd").textContent =
    `target/release/herald publish --source demo --user ${JSON.stringify(user)} --kind comment --title 'Hello from Herald'`;

  const client = new HeraldClient({ url: origin, token, user });
  const view = new InboxView(client, 25);
  const ui = { filter: "all", fresh: new Set() };
  window.heraldDemo = { client, view, user };

  client.on("status", (status, detail) => renderStatus(status, detail));
  client.on("notification", (n, meta) => {
    if (!meta.replay) {
      ui.fresh.add(n.id);
      $("bell").classList.remove("ring");
      void $("bell").offsetWidth;
      $("bell").classList.add("ring");
    }
  });
  view.onChange(() => render(view, ui));
  client.start();
  view.load().catch((e) => {
    // Live delivery goes on without the history (a gateway without the inbox API, a blip).
    ui.loadError = e.status === 404 ? "Live notifications (this gateway keeps no inbox history)" : `Inbox history unavailable: ${e.message}`;
    render(view, ui);
  });

  $("read-all").onclick = () => view.readAll().catch((e) => toast(e.message));
  $("more").onclick = () => view.more().catch((e) => toast(e.message));
  $("filter-all").onclick = () => setFilter(view, ui, "all");
  $("filter-unread").onclick = () => setFilter(view, ui, "unread");
  $("bell").onclick = () => {
    const panel = $("panel");
    panel.hidden = !panel.hidden;
    $("bell").setAttribute("aria-expanded", String(!panel.hidden));
  };
  $("mute-form").onsubmit = (ev) => {
    ev.preventDefault();
    const kind = $("mute-kind").value.trim();
    if (!kind || view.muted.includes(kind)) return;
    $("mute-kind").value = "";
    view.setMuted([...view.muted, kind]).catch((e) => toast(e.message));
  };
  setInterval(() => render(view, ui), 30_000);
}

function setFilter(view, ui, filter) {
  ui.filter = filter;
  $("filter-all").classList.toggle("on", filter === "all");
  $("filter-unread").classList.toggle("on", filter === "unread");
  render(view, ui);
}

const LABELS = { connecting: "Connecting…", open: "Live", reconnecting: "Reconnecting…", stopped: "Offline" };

function renderStatus(status, detail) {
  $("conn").dataset.status = status;
  let label = LABELS[status] ?? status;
  if (status === "reconnecting" && detail?.retryInMs != null) label = `Reconnecting in ${Math.ceil(detail.retryInMs / 1000)} s`;
  if (status === "stopped" && detail?.code === 4003) label = "Not allowed";
  $("conn-label").textContent = label;
}

function render(view, ui) {
  const badge = $("badge");
  badge.hidden = view.unread === 0;
  badge.textContent = view.unread > 99 ? "99+" : String(view.unread);
  document.title = view.unread ? `(${view.unread}) Herald · Inbox` : "Herald · Inbox";
  $("summary").textContent = view.loaded
    ? view.unread
      ? `${view.unread} unread`
      : "Everything read"
    : (ui.loadError ?? "Loading…");
  $("read-all").disabled = view.unread === 0;

  const items = view.items.filter((i) => ui.filter === "all" || !i.notification.read);
  const list = $("list");
  list.replaceChildren(...items.map((i) => row(view, ui, i)));
  $("empty").hidden = items.length > 0 || !(view.loaded || ui.loadError);
  $("more").hidden = !view.next;
  renderKinds(view);
}

function row(view, ui, item) {
  const n = item.notification;
  const li = document.createElement("li");
  li.className = `item${n.read ? "" : " unread"}${ui.fresh.has(n.id) ? " fresh" : ""}`;
  ui.fresh.delete(n.id);
  li.dataset.id = n.id;
  li.dataset.cursor = item.cursor;
  const pip = el("span", "pip");
  const main = el("div", "main");
  main.append(el("div", "title", n.title));
  if (n.body) main.append(el("div", "body", n.body));
  const meta = el("div", "meta");
  const time = el("time", "", relative(n.created_at));
  time.dateTime = n.created_at;
  time.title = new Date(n.created_at).toLocaleString();
  meta.append(el("span", "chip", n.kind), time);
  main.append(meta);
  const tools = el("div", "tools");
  const toggle = el("button", n.read ? "mark-unread" : "mark-read", n.read ? "Mark unread" : "Mark read");
  toggle.onclick = () => (n.read ? view.markUnread(n.id) : view.markRead(n.id)).catch((e) => toast(e.message));
  const archive = el("button", "archive", "Archive");
  archive.onclick = () => view.archive(n.id).catch((e) => toast(e.message));
  tools.append(toggle, archive);
  li.append(pip, main, tools);
  return li;
}

function renderKinds(view) {
  const kinds = [...new Set([...view.items.map((i) => i.notification.kind), ...view.muted])].sort();
  const box = $("kinds");
  box.replaceChildren(
    ...kinds.map((k) => {
      const muted = view.muted.includes(k);
      const chip = el("span", `kind${muted ? " muted-on" : ""}`);
      chip.append(el("span", "mark"), el("span", "", k));
      chip.title = muted ? "Muted: click to unmute" : "Click to mute";
      chip.dataset.kind = k;
      chip.onclick = () =>
        view.setMuted(muted ? view.muted.filter((m) => m !== k) : [...view.muted, k]).catch((e) => toast(e.message));
      return chip;
    }),
  );
}

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text != null) e.textContent = text;
  return e;
}

function relative(iso) {
  const s = Math.round((Date.now() - new Date(iso).getTime()) / 1000);
  if (!Number.isFinite(s)) return "";
  if (s < 45) return "just now";
  const m = Math.round(s / 60);
  if (m < 60) return `${m} min ago`;
  const h = Math.round(m / 60);
  if (h < 24) return `${h} h ago`;
  const d = Math.round(h / 24);
  if (d < 7) return `${d} d ago`;
  return new Date(iso).toLocaleDateString();
}

let toastTimer = null;
function toast(message) {
  const t = $("toast");
  t.textContent = message;
  t.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => (t.hidden = true), 4000);
}

main().catch((e) => toast(String(e.message ?? e)));
