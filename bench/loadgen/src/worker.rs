//! A worker process (`herald-loadgen worker`): plays the users of its spec (first stdin line),
//! reports progress once a second, and answers the orchestrator's commands, one JSON line each.
//! A spec with `hostile` set plays hostile sockets instead (`hostile.rs`).
//! A process holds fewer than ~15,000 sockets: this machine allows 20,000 files per process.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::oneshot;

use crate::conn::{Shared, run_user};
use crate::hostile::{Hostile, HostileReport, HostileSpec};
use crate::wire::{Command, Event, WorkerSpec};

/// Writes one event line; stdout's lock keeps lines whole.
fn emit(event: &Event) {
    let line = serde_json::to_string(event).expect("events serialize");
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

pub async fn run() -> anyhow::Result<()> {
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let first = lines.next_line().await?.context("no spec on stdin")?;
    let spec: WorkerSpec = serde_json::from_str(&first).context("parsing the worker spec")?;
    if let Some(h) = spec.hostile.clone() {
        return hostile(spec, h, lines).await;
    }
    let shared = Arc::new(Shared::new(spec));

    let started = Instant::now();
    let mut firsts = FuturesUnordered::new();
    for local in 0..shared.spec.users {
        let (tx, rx) = oneshot::channel();
        tokio::spawn(run_user(shared.clone(), local, tx));
        firsts.push(rx);
    }
    tokio::spawn(async move {
        let (mut ok, mut failed, mut first_error) = (0, 0, None);
        while let Some(r) = firsts.next().await {
            match r {
                Ok(Ok(())) => ok += 1,
                Ok(Err(e)) => {
                    failed += 1;
                    first_error.get_or_insert(e);
                }
                Err(_) => failed += 1,
            }
        }
        emit(&Event::Connected { ok, failed, secs: started.elapsed().as_secs_f64(), first_error });
    });
    let progress = shared.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            emit(&Event::Progress {
                connected: progress.connected.load(Ordering::Relaxed),
                received: progress.tally.received.load(Ordering::Relaxed),
                reconnects: progress.back.load(Ordering::Relaxed),
            });
        }
    });

    // Until Stop or the orchestrator goes away (stdin closes): exiting closes every socket.
    while let Some(line) = lines.next_line().await? {
        match serde_json::from_str::<Command>(&line).context("parsing a command")? {
            Command::Account { phase, expected, unacked } => {
                emit(&Event::Account(shared.tally.account(phase, expected, &unacked)))
            }
            Command::Status => emit(&Event::Status(shared.status())),
            Command::Hostile => emit(&Event::Hostile(HostileReport::default())),
            Command::Stop => break,
        }
    }
    Ok(())
}

/// A hostile worker: its sockets misbehave until Stop; progress counts sockets open and opened.
async fn hostile(
    spec: WorkerSpec,
    h: HostileSpec,
    mut lines: tokio::io::Lines<BufReader<tokio::io::Stdin>>,
) -> anyhow::Result<()> {
    let hostile = Arc::new(Hostile::new(spec, h));
    hostile.start();
    let progress = hostile.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            emit(&Event::Progress {
                connected: progress.in_play.load(Ordering::Relaxed),
                received: progress.opened.load(Ordering::Relaxed),
                reconnects: 0,
            });
        }
    });
    while let Some(line) = lines.next_line().await? {
        match serde_json::from_str::<Command>(&line).context("parsing a command")? {
            Command::Hostile => emit(&Event::Hostile(hostile.report())),
            Command::Stop => break,
            // A hostile worker has no users to account for: empty answers keep the protocol whole.
            Command::Account { .. } => emit(&Event::Account(Default::default())),
            Command::Status => emit(&Event::Status(Default::default())),
        }
    }
    Ok(())
}
