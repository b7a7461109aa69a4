//! Throughput (Herald): recipient deliveries per second through the runners (one by default).
//! A burst of one-recipient notifications is published at once to the latency users, so the
//! runners always have work; the rate is recipients over the time from the first publish until
//! the runners acknowledged the last request (every copy stored and published), and until the
//! last copy reached its socket. Lost and duplicated are counted by the receivers.

use std::time::{Duration, Instant};

use anyhow::Context;

use crate::config::BenchConfig;
use crate::fleet::Fleet;
use crate::opsmetrics::{self, Scrape};
use crate::publish::{Audience, Plan};
use crate::results::{Loss, Pipeline, Throughput};
use crate::systems::Sut;
use crate::wire::{Expected, now_us};

/// The scenario's phase number (ids `bench-p70-<k>`).
const PHASE: u32 = 70;

pub async fn run(cfg: &BenchConfig, sut: &Sut) -> anyhow::Result<Throughput> {
    let h = sut.herald.as_ref().context("throughput measures Herald's runners")?;
    let (users, count) = (cfg.users, cfg.throughput_count);
    eprintln!("throughput: {count} one-recipient notifications at once to {users} users, {} runner(s)", cfg.runners);
    let mut fleet =
        Fleet::launch(&format!("{} throughput", sut.system.label()), super::layout(cfg, sut, users, 2)).await?;
    let connected = fleet.connected(Duration::from_secs(600)).await?;
    super::all_connected(&connected, "throughput")?;
    super::at_rest(&mut fleet, "throughput").await?;
    let ops = h.ops(&sut.gateways);
    let before = Scrape::read(&ops).await;

    let (t0, started) = (now_us(), Instant::now());
    let plan = Plan { phase: PHASE, audience: Audience::Users(users), count, rate: f64::INFINITY };
    let sent = sut.publisher.run(&plan).await?;
    let drain = Duration::from_secs_f64(cfg.drain_secs);
    let acked = h.acked_through(sent.last_sequence, drain).await?;
    let acked_secs = acked.then(|| started.elapsed().as_secs_f64());
    let t = fleet.settle(PHASE, Expected::Direct { count, users }, &sent.unacked, drain).await?;
    let after = Scrape::read(&ops).await;
    let stored = h.stored.count(0..users.min(count), &format!("bench-p{PHASE}-")).await?;
    fleet.stop().await;

    let recipients = count - sent.unacked.len() as u64;
    let pushed_secs = (t.report.last_us.saturating_sub(t0) as f64 / 1e6).max(1e-6);
    let r = Throughput {
        runners: cfg.runners,
        users,
        loss: Loss::from(&t.report),
        acked_secs,
        pushed_secs,
        stored_and_published_per_sec: acked_secs.map(|s| recipients as f64 / s.max(1e-6)),
        pushed_per_sec: t.report.received as f64 / pushed_secs,
        pipeline: Pipeline {
            stored: Some(stored),
            acked: recipients,
            writes_per_recipient: opsmetrics::writes_per_recipient(&before, &after),
            stages: opsmetrics::stages(&before, &after),
        },
        sent,
    };
    eprintln!(
        "throughput: {recipients} recipients stored+published in {} s = {} /s; pushed in {:.2} s = {:.0} /s; lost {} dup {}",
        opsmetrics::show(r.acked_secs, 2),
        opsmetrics::show(r.stored_and_published_per_sec, 0),
        r.pushed_secs,
        r.pushed_per_sec,
        r.loss.lost,
        r.loss.duplicated
    );
    super::latency::print_pipeline(&r.pipeline);
    Ok(r)
}
