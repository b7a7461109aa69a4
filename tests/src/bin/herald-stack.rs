//! `herald-stack`: a whole Herald on loopback (nats-server, dynalite, a runner, one gateway) for
//! tests written in other languages: the JavaScript client's and the browser's.
//!
//! Prints one JSON line, `{"http", "internal", "ws", "secret", "audience"}` (`internal`: the
//! gateway's internal plane, `/metrics`), then serves commands read from
//! stdin, one per line, each answered with one JSON line:
//!
//! ```text
//! publish {"id": …, "recipients": …, "kind": …, "title": …}   → {"ok": true, "sequence": n}
//! kill                                                          → {"ok": true}  (the gateway, as kill -9)
//! start                                                         → {"ok": true}  (again, same port)
//! ```
//!
//! Everything stops when stdin closes. `--env NAME=VALUE` (repeatable) adds gateway settings.

use anyhow::Context;
use herald_client::NotificationRequest;
use herald_tests::stack::{AUDIENCE, SECRET};
use herald_tests::{Stack, StackOptions};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut env = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--env" => {
                let kv = args.next().context("--env needs NAME=VALUE")?;
                let (k, v) = kv.split_once('=').context("--env needs NAME=VALUE")?;
                env.push((k.to_owned(), v.to_owned()));
            }
            other => anyhow::bail!("unknown argument {other:?} (see the file's header)"),
        }
    }
    let mut stack = Stack::start(StackOptions { env, ..Default::default() }).await?;
    let addr = stack.gateway_addr(0).to_owned();
    println!(
        "{}",
        json!({
            "http": format!("http://{addr}"),
            "internal": format!("http://{}", stack.admin_addr(0)),
            "ws": stack.ws_url(0),
            "secret": SECRET,
            "audience": AUDIENCE,
        })
    );
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await? {
        let (cmd, rest) = line.split_once(' ').unwrap_or((line.as_str(), ""));
        let answer = match cmd {
            "publish" => match serde_json::from_str::<NotificationRequest>(rest) {
                Ok(req) => match stack.publisher.publish("demo", &req).await {
                    Ok(p) => json!({"ok": true, "sequence": p.sequence, "duplicate": p.duplicate}),
                    Err(e) => json!({"ok": false, "error": e.to_string()}),
                },
                Err(e) => json!({"ok": false, "error": e.to_string()}),
            },
            "kill" => {
                stack.kill_gateway(0).await;
                json!({"ok": true})
            }
            "start" => match stack.revive_gateway(0).await {
                Ok(()) => json!({"ok": true}),
                Err(e) => json!({"ok": false, "error": e.to_string()}),
            },
            "" => continue,
            other => json!({"ok": false, "error": format!("unknown command {other:?}")}),
        };
        println!("{answer}");
    }
    Ok(())
}
