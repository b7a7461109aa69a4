// Starts a real Herald (nats-server, the local DynamoDB-API server, the functions runner, a gateway) through the Rust
// harness binary `herald-stack`, and talks to it: publish, restart the gateway, mint tokens.
import { spawn } from "node:child_process";
import { createHmac } from "node:crypto";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..");

function binary() {
  if (process.env.HERALD_STACK_BIN) return process.env.HERALD_STACK_BIN;
  const target = process.env.CARGO_TARGET_DIR ?? join(root, "target");
  const bin = join(target, "debug", "herald-stack");
  if (!existsSync(bin)) throw new Error(`${bin} is missing: cargo build -p herald-tests --bin herald-stack`);
  return bin;
}

export async function startStack(env = {}) {
  const args = Object.entries(env).flatMap(([k, v]) => ["--env", `${k}=${v}`]);
  const child = spawn(binary(), args, {
    stdio: ["pipe", "pipe", "inherit"],
    env: {
      HERALD_NATS_SERVER: join(root, ".tools/py/bin/nats-server"),
      HERALD_DYNOXIDE: join(root, ".tools/dynoxide/bin/dynoxide"),
      ...process.env,
    },
  });
  const lines = createInterface({ input: child.stdout });
  const waiting = [];
  lines.on("line", (line) => waiting.shift()?.(JSON.parse(line)));
  const next = () => new Promise((resolve) => waiting.push(resolve));
  const exited = new Promise((_, reject) => child.on("exit", (code) => reject(new Error(`herald-stack exited with ${code}`))));
  exited.catch(() => {});
  const info = await Promise.race([next(), exited]);
  let queue = Promise.resolve();
  const command = (line) => {
    const run = queue.then(async () => {
      const answer = next();
      child.stdin.write(`${line}\n`);
      const a = await Promise.race([answer, exited]);
      if (!a.ok) throw new Error(a.error);
      return a;
    });
    queue = run.catch(() => {});
    return run;
  };
  return {
    ...info,
    /** Publishes a request through JetStream (source `demo`). */
    publish: (id, users, extra = {}) =>
      command(`publish ${JSON.stringify({ id, recipients: { users }, kind: "test", title: `title of ${id}`, ...extra })}`),
    /** Kills the gateway, as kill -9 would. */
    kill: () => command("kill"),
    /** Starts the gateway again on the same port. */
    start: () => command("start"),
    token: (user, ttlSeconds = 3600) => sign(info.secret, info.audience, user, ttlSeconds),
    /** Whether this gateway serves the inbox API (CONTRACT §4). */
    async hasInbox() {
      const res = await fetch(`${info.http}/v1/inbox`, { headers: { authorization: `Bearer ${sign(info.secret, info.audience, "probe", 60)}` } });
      return res.status !== 404;
    },
    async metric(name) {
      const text = await (await fetch(`${info.internal}/metrics`)).text();
      const line = text.split("\n").find((l) => l.startsWith(`${name} `));
      return line ? Number(line.split(" ")[1]) : NaN;
    },
    async stop() {
      child.stdin.end();
      await new Promise((resolve) => {
        const t = setTimeout(() => child.kill("SIGKILL"), 10_000);
        child.on("exit", () => (clearTimeout(t), resolve()));
        if (child.exitCode != null) resolve();
      });
    },
  };
}

const b64 = (v) => Buffer.from(typeof v === "string" ? v : JSON.stringify(v)).toString("base64url");

export function sign(secret, audience, sub, ttlSeconds) {
  const now = Math.floor(Date.now() / 1000);
  const body = `${b64({ alg: "HS256", typ: "JWT" })}.${b64({ sub, aud: audience, iat: now, exp: now + ttlSeconds })}`;
  return `${body}.${createHmac("sha256", secret).update(body).digest("base64url")}`;
}

/** Resolves when `check()` is truthy, or rejects after `ms`. */
export async function until(check, ms = 10_000, what = "condition") {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}
