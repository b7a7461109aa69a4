//! The orchestrator's side of the workers: spawns copies of this binary (`worker`), splits the
//! users among them, prints their progress, and merges their answers.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hdrhistogram::Histogram;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command as Process};
use tokio::sync::mpsc;

use crate::hostile::{HostileReport, HostileSpec};
use crate::tally::{decode, new_histogram};
use crate::wire::{Command, Event, Expected, PhaseReport, StatusReport, System, WorkerSpec};

/// Sockets per worker process at most (20,000 files per process here, with room to spare).
pub const PER_WORKER: u64 = 15_000;

/// How a fleet's users are laid out.
pub struct Layout {
    pub system: System,
    pub users: u64,
    pub targets: Vec<String>,
    pub reconnect_targets: Vec<String>,
    pub reconnect: bool,
    pub secret: String,
    pub audience: String,
    /// Sockets per source address.
    pub per_source: u64,
    /// Set: the fleet is `users` hostile sockets (`hostile.rs`), from `127.<100+worker>.x.y`.
    pub hostile: Option<HostileSpec>,
}

struct Worker {
    child: Child,
    stdin: ChildStdin,
    replies: mpsc::UnboundedReceiver<Event>,
}

/// Merged first-connection results.
#[derive(Debug, Clone)]
pub struct Connected {
    pub ok: u64,
    pub failed: u64,
    /// From launching the workers to the last one's first connections settling.
    pub secs: f64,
    pub first_error: Option<String>,
}

/// A phase's merged account.
pub struct PhaseTotals {
    pub report: PhaseReport,
    pub hist: Histogram<u64>,
}

pub struct Fleet {
    label: String,
    workers: Vec<Worker>,
    printer: tokio::task::JoinHandle<()>,
    started: Instant,
}

impl Fleet {
    pub async fn launch(label: &str, layout: Layout) -> anyhow::Result<Self> {
        let exe = std::env::current_exe()?;
        let n = layout.users.div_ceil(PER_WORKER).max(1);
        let progress: Arc<Mutex<Vec<(u64, u64, u64)>>> = Arc::new(Mutex::new(vec![(0, 0, 0); n as usize]));
        let mut workers = Vec::new();
        let started = Instant::now();
        for w in 0..n {
            let first_user = layout.users * w / n;
            let spec = WorkerSpec {
                worker: w as usize,
                system: layout.system,
                targets: layout.targets.clone(),
                reconnect_targets: layout.reconnect_targets.clone(),
                first_user,
                users: layout.users * (w + 1) / n - first_user,
                secret: layout.secret.clone(),
                audience: layout.audience.clone(),
                source_net: if layout.hostile.is_some() { 100 } else { 10 } + w as u8,
                connect_concurrency: 256,
                reconnect: layout.reconnect,
                per_source: layout.per_source,
                hostile: layout.hostile.clone(),
            };
            let mut child = Process::new(&exe)
                .arg("worker")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .kill_on_drop(true)
                .spawn()
                .context("spawning a worker")?;
            let mut stdin = child.stdin.take().context("worker stdin")?;
            stdin.write_all(format!("{}\n", serde_json::to_string(&spec)?).as_bytes()).await?;
            let stdout = child.stdout.take().context("worker stdout")?;
            let (tx, replies) = mpsc::unbounded_channel();
            let progress = progress.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(stdout).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    match serde_json::from_str::<Event>(&line) {
                        Ok(Event::Progress { connected, received, reconnects }) => {
                            progress.lock().expect("progress lock")[w as usize] = (connected, received, reconnects);
                        }
                        Ok(event) => {
                            let _ = tx.send(event);
                        }
                        Err(e) => eprintln!("worker {w}: unreadable line ({e}): {line}"),
                    }
                }
            });
            workers.push(Worker { child, stdin, replies });
        }
        let label = label.to_owned();
        let printer = {
            let label = label.clone();
            let total = layout.users;
            let (held, got) = if layout.hostile.is_some() { ("open", "opened") } else { ("connected", "received") };
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(2));
                tick.tick().await;
                loop {
                    tick.tick().await;
                    let (c, r, b) = progress
                        .lock()
                        .expect("progress lock")
                        .iter()
                        .fold((0, 0, 0), |a, p| (a.0 + p.0, a.1 + p.1, a.2 + p.2));
                    eprintln!(
                        "  [{label} {:>5.1}s] {held} {c}/{total}  {got} {r}  reconnected {b}",
                        started.elapsed().as_secs_f64()
                    );
                }
            })
        };
        Ok(Fleet { label, workers, printer, started })
    }

    async fn next_reply(&mut self, i: usize, within: Duration) -> anyhow::Result<Event> {
        let label = &self.label;
        tokio::time::timeout(within, self.workers[i].replies.recv())
            .await
            .with_context(|| format!("{label}: worker {i} did not answer within {within:?}"))?
            .with_context(|| format!("{label}: worker {i} exited"))
    }

    async fn send(&mut self, cmd: &Command) -> anyhow::Result<()> {
        let line = format!("{}\n", serde_json::to_string(cmd)?);
        for w in &mut self.workers {
            w.stdin.write_all(line.as_bytes()).await?;
        }
        Ok(())
    }

    /// Waits for every worker's first connections to settle.
    pub async fn connected(&mut self, within: Duration) -> anyhow::Result<Connected> {
        let mut c = Connected { ok: 0, failed: 0, secs: 0.0, first_error: None };
        for i in 0..self.workers.len() {
            match self.next_reply(i, within).await? {
                Event::Connected { ok, failed, first_error, .. } => {
                    c.ok += ok;
                    c.failed += failed;
                    c.first_error = c.first_error.or(first_error);
                }
                other => bail!("expected connected, got {other:?}"),
            }
        }
        c.secs = self.started.elapsed().as_secs_f64();
        Ok(c)
    }

    /// Phase `phase` counted by every worker against what was acknowledged (`unacked`: the
    /// plan's indexes that JetStream never acknowledged).
    pub async fn account(&mut self, phase: u32, expected: Expected, unacked: &[u64]) -> anyhow::Result<PhaseTotals> {
        self.send(&Command::Account { phase, expected, unacked: unacked.to_vec() }).await?;
        let mut t = PhaseTotals { report: PhaseReport::default(), hist: new_histogram() };
        for i in 0..self.workers.len() {
            let Event::Account(r) = self.next_reply(i, Duration::from_secs(60)).await? else {
                bail!("expected an account");
            };
            let m = &mut t.report;
            m.expected += r.expected;
            m.received += r.received;
            m.lost += r.lost;
            m.duplicated += r.duplicated;
            m.out_of_order += r.out_of_order;
            if r.first_us > 0 {
                m.first_us = if m.first_us == 0 { r.first_us } else { m.first_us.min(r.first_us) };
            }
            m.last_us = m.last_us.max(r.last_us);
            if let Some(h) = decode(&r.histogram) {
                t.hist.add(h).context("merging histograms")?;
            }
        }
        Ok(t)
    }

    /// Polls the phase's account until everything expected arrived or `within` passes.
    pub async fn settle(
        &mut self,
        phase: u32,
        expected: Expected,
        unacked: &[u64],
        within: Duration,
    ) -> anyhow::Result<PhaseTotals> {
        let deadline = Instant::now() + within;
        loop {
            let t = self.account(phase, expected, unacked).await?;
            if t.report.received >= t.report.expected || Instant::now() >= deadline {
                // Late copies show up as duplicates only if we look a little later.
                tokio::time::sleep(Duration::from_millis(300)).await;
                return self.account(phase, expected, unacked).await;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    pub async fn status(&mut self) -> anyhow::Result<StatusReport> {
        self.send(&Command::Status).await?;
        let mut s = StatusReport::default();
        for i in 0..self.workers.len() {
            let Event::Status(r) = self.next_reply(i, Duration::from_secs(30)).await? else {
                bail!("expected a status");
            };
            s.connected += r.connected;
            s.started += r.started;
            s.drops += r.drops;
            s.back += r.back;
            s.replayed += r.replayed;
            s.without_cursor += r.without_cursor;
            s.resets += r.resets;
            s.last_back_us = s.last_back_us.max(r.last_back_us);
            s.last_replayed_us = s.last_replayed_us.max(r.last_replayed_us);
        }
        Ok(s)
    }

    /// Waits until every open socket's session start is over (see [`StatusReport::started`]):
    /// a phase measured while thousands of sessions still read their counts from the store
    /// measures the starts, not the phase. False after `within`.
    pub async fn at_rest(&mut self, within: Duration) -> anyhow::Result<bool> {
        let deadline = Instant::now() + within;
        loop {
            let s = self.status().await?;
            if s.started >= s.connected {
                return Ok(true);
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The worker processes' ids.
    pub fn pids(&self) -> Vec<u32> {
        self.workers.iter().filter_map(|w| w.child.id()).collect()
    }

    /// A hostile fleet's merged tally.
    pub async fn hostile(&mut self) -> anyhow::Result<HostileReport> {
        self.send(&Command::Hostile).await?;
        let mut all = HostileReport::default();
        for i in 0..self.workers.len() {
            let Event::Hostile(r) = self.next_reply(i, Duration::from_secs(30)).await? else {
                bail!("expected a hostile report");
            };
            all.merge(&r);
        }
        Ok(all)
    }

    /// Stops every worker (their sockets close with them).
    pub async fn stop(mut self) {
        let _ = self.send(&Command::Stop).await;
        for w in &mut self.workers {
            if tokio::time::timeout(Duration::from_secs(10), w.child.wait()).await.is_err() {
                let _ = w.child.kill().await;
            }
        }
        self.printer.abort();
    }
}
