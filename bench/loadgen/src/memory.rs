//! `herald-loadgen memory`: holds N idle authenticated connections (each with its live
//! subscription) on one gateway process and prints the gateway's RSS per connection, with a
//! breakdown by stage (the `idle` scenario measures whole fleets, without the breakdown).
//!
//! ```text
//! cargo build --release -p herald-gateway -p herald-loadgen
//! target/release/herald-loadgen memory [--connections 15000]
//! ```
//!
//! The gateway runs as its own process (the release binary next to this one) so its RSS is its
//! own. Stages: baseline; N sockets upgraded but not yet authenticated (TCP, WebSocket, task);
//! all authenticated with `hello` (session state, live subscription, welcome) and every session
//! started (its `unread` count read from the store and sent). The gateway has its store (a
//! local dynoxide) as in production: a session's start reads it. Client sockets are bound to
//! source addresses across 127.0.0.0/8 and keep reading, so pings are answered.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::{SinkExt, StreamExt, stream};
use herald_client::token;
use herald_core::config::{StreamsConfig, Vars};
use herald_servers::{LocalDynamo, NatsServer, free_port, http_get};
use tokio::net::TcpSocket;

use crate::procstat::{cpu_secs, rss_bytes};
use tokio_tungstenite::tungstenite::Message;

const SECRET: &str = "bench-idle-secret-not-for-production";

fn rss_kib(pid: u32) -> u64 {
    rss_bytes(pid) / 1024
}

struct Gateway(Child);

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits until `count` reaches `n`; an error naming `what` past `deadline`.
async fn reach(count: &AtomicUsize, n: usize, deadline: Instant, what: &str) -> anyhow::Result<()> {
    while count.load(Ordering::Relaxed) < n {
        anyhow::ensure!(Instant::now() < deadline, "only {} of {n} {what} arrived", count.load(Ordering::Relaxed));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

pub async fn run(args: &[String]) -> anyhow::Result<()> {
    let mut n: usize = 15_000;
    let mut args = args.iter();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--connections" => n = args.next().context("--connections N")?.parse()?,
            _ => bail!("usage: herald-loadgen memory [--connections N]"),
        }
    }
    let nats = NatsServer::start()?;
    let dynamo = LocalDynamo::start()?;
    let client = async_nats::connect(nats.url()).await?;
    let js = async_nats::jetstream::new(client);
    herald_functions::streams::ensure(&js, &StreamsConfig::from_vars(&Vars::default())?).await?;

    let bin = std::env::current_exe()?.with_file_name("herald-gateway");
    anyhow::ensure!(bin.exists(), "{} missing: cargo build --release -p herald-gateway", bin.display());
    let port = free_port();
    let gw = Gateway(
        Command::new(&bin)
            .env("HERALD_LISTEN", format!("127.0.0.1:{port}"))
            .env("HERALD_ADMIN_LISTEN", format!("127.0.0.1:{}", free_port()))
            .env("HERALD_NATS_URL", nats.url())
            .env("HERALD_DYNAMODB_ENDPOINT", dynamo.endpoint())
            .env("HERALD_JWT_SECRET", SECRET)
            .env("HERALD_HELLO_TIMEOUT_SECONDS", "600")
            .env("HERALD_CONNECT_BURST", "1000000")
            .env("HERALD_CONNECTS_PER_IP_PER_SEC", "1000000")
            .env("HERALD_MAX_CONNECTIONS", "19000")
            .env("HERALD_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()?,
    );
    let pid = gw.0.id();
    let url = format!("ws://127.0.0.1:{port}/v1/ws");
    for _ in 0..100 {
        if http_get(&format!("http://127.0.0.1:{port}/readyz")).await.is_ok_and(|r| r.0 == 200) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss0 = rss_kib(pid);

    // Stage 1: upgrade N sockets, spread over source addresses.
    let started = Instant::now();
    let welcomed = Arc::new(AtomicUsize::new(0));
    let counted = Arc::new(AtomicUsize::new(0));
    let sinks: Vec<_> = stream::iter(0..n)
        .map(|i| {
            let url = url.clone();
            let (welcomed, counted) = (welcomed.clone(), counted.clone());
            async move {
                let src = std::net::Ipv4Addr::new(127, 1 + (i / 200 % 250) as u8, (i % 200) as u8 + 1, 1);
                let sock = TcpSocket::new_v4()?;
                sock.bind((src, 0).into())?;
                let tcp = sock.connect(([127, 0, 0, 1], port).into()).await?;
                let (ws, _) = tokio_tungstenite::client_async(url, tcp).await?;
                let (sink, mut rx) = ws.split();
                tokio::spawn(async move {
                    while let Some(Ok(m)) = rx.next().await {
                        if let Message::Text(t) = m {
                            if t.as_str().contains("\"welcome\"") {
                                welcomed.fetch_add(1, Ordering::Relaxed);
                            } else if t.as_str().contains("\"unread\"") {
                                counted.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                });
                anyhow::Ok(sink)
            }
        })
        .buffer_unordered(128)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    let upgrade_secs = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss1 = rss_kib(pid);

    // Stage 2: authenticate every socket.
    let started = Instant::now();
    let mut sinks = sinks;
    for (i, sink) in sinks.iter_mut().enumerate() {
        let t = token::user_token(SECRET, "herald", &format!("idle-user-{i}"), 3600);
        sink.send(Message::Text(format!(r#"{{"type":"hello","token":"{t}"}}"#).into())).await?;
    }
    reach(&welcomed, n, started + Duration::from_secs(120), "welcomes").await?;
    let auth_secs = started.elapsed().as_secs_f64();
    // A session has started when its unread count has arrived (read from the store after
    // `welcome`): memory is measured at rest, not while the counts are still being read.
    reach(&counted, n, started + Duration::from_secs(300), "unread counts").await?;
    let started_secs = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rss2 = rss_kib(pid);
    let cpu0 = cpu_secs(pid);
    tokio::time::sleep(Duration::from_secs(10)).await;
    let cpu_rest = (cpu_secs(pid) - cpu0) / 10.0 * 100.0;
    let rss3 = rss_kib(pid);

    let per = |a: u64, b: u64| (b.saturating_sub(a)) as f64 * 1024.0 / n as f64;
    println!("memory: {n} idle authenticated connections on one gateway process (pid {pid})");
    println!(
        "  gateway RSS: baseline {rss0} KiB, upgraded {rss1} KiB, authenticated {rss2} KiB, after 10 s idle {rss3} KiB"
    );
    println!("  RSS per connection: {:.0} bytes ({:.2} KiB)", per(rss0, rss3), per(rss0, rss3) / 1024.0);
    println!("    socket + WebSocket + session task (upgraded, before hello): {:.0} bytes", per(rss0, rss1));
    println!("    auth + live subscription + session state + welcome + unread: {:.0} bytes", per(rss1, rss3));
    println!(
        "  rates: {:.0} upgrades/s, {:.0} hello→welcome/s, {:.0} hello→unread/s (client, gateway and store share the box's 2 cores)",
        n as f64 / upgrade_secs,
        n as f64 / auth_secs,
        n as f64 / started_secs
    );
    println!("  gateway CPU at rest: {cpu_rest:.1}% of one core");
    drop(sinks);
    Ok(())
}
