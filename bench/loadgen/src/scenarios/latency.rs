//! Latency under load: users connected over two gateways, notifications to them at each rate in
//! turn (open loop), publish→socket latency percentiles and every loss, copy and reordering,
//! counted against what JetStream acknowledged. For Herald, also what the store holds at the end
//! of each rate (one Query per user), DynamoDB writes per recipient and the per-stage split.

use std::time::Duration;

use crate::config::BenchConfig;
use crate::fleet::Fleet;
use crate::opsmetrics::{self, Scrape, show};
use crate::publish::{Audience, Plan};
use crate::results::{Latency, Loss, Pipeline, Rate};
use crate::systems::Sut;
use crate::wire::Expected;

pub async fn run(cfg: &BenchConfig, sut: &Sut) -> anyhow::Result<Vec<Rate>> {
    let users = cfg.users;
    eprintln!("latency: {users} users over 2 gateways; rates {:?}/s, {} s each", cfg.rates, cfg.phase_secs);
    let mut fleet =
        Fleet::launch(&format!("{} latency", sut.system.label()), super::layout(cfg, sut, users, 2)).await?;
    let connected = fleet.connected(Duration::from_secs(600)).await?;
    super::all_connected(&connected, "latency")?;
    super::at_rest(&mut fleet, "latency").await?;
    let mut out = Vec::new();
    for (i, &rate) in cfg.rates.iter().enumerate() {
        let count = (rate * cfg.phase_secs).round() as u64;
        let r =
            phase(cfg, sut, &mut fleet, Step { phase: 10 + i as u32, users, rate, count, check_store: true }).await?;
        out.push(r);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    fleet.stop().await;
    Ok(out)
}

/// One open-loop phase of `count` notifications at `rate` to the fleet's `users`; `check_store`:
/// count the phase's items in Herald's store at the end.
pub struct Step {
    pub phase: u32,
    pub users: u64,
    pub rate: f64,
    pub count: u64,
    pub check_store: bool,
}

/// Runs a [`Step`], settled and accounted.
pub async fn phase(cfg: &BenchConfig, sut: &Sut, fleet: &mut Fleet, step: Step) -> anyhow::Result<Rate> {
    let Step { phase, users, rate, count, check_store } = step;
    let ops = sut.herald.as_ref().map(|h| h.ops(&sut.gateways));
    let before = match &ops {
        Some(ops) => Some(Scrape::read(ops).await),
        None => None,
    };
    let drops_before = fleet.status().await?.drops;
    let sent = sut.publisher.run(&Plan { phase, audience: Audience::Users(users), count, rate }).await?;
    let expected = Expected::Direct { count, users };
    let t = fleet.settle(phase, expected, &sent.unacked, Duration::from_secs_f64(cfg.drain_secs)).await?;
    let pipeline = match (&sut.herald, &ops, &before) {
        (Some(h), Some(ops), Some(before)) => {
            let after = Scrape::read(ops).await;
            let stored = if check_store {
                Some(h.stored.count(0..users.min(count), &format!("bench-p{phase}-")).await?)
            } else {
                None
            };
            Some(Pipeline {
                stored,
                acked: count - sent.unacked.len() as u64,
                writes_per_recipient: opsmetrics::writes_per_recipient(before, &after),
                stages: opsmetrics::stages(before, &after),
            })
        }
        _ => None,
    };
    let r = Rate {
        rate,
        users,
        loss: Loss::from(&t.report),
        latency: Latency::from_hist(&t.hist),
        drops: fleet.status().await?.drops - drops_before,
        sent,
        pipeline,
    };
    eprintln!(
        "latency @{rate}/s: p50 {:.2} p90 {:.2} p99 {:.2} p99.9 {:.2} max {:.2} ms; lost {} dup {} ooo {}; publish failures {}, loop lag {:.1} ms",
        r.latency.p50_ms,
        r.latency.p90_ms,
        r.latency.p99_ms,
        r.latency.p999_ms,
        r.latency.max_ms,
        r.loss.lost,
        r.loss.duplicated,
        r.loss.out_of_order,
        r.sent.failed,
        r.sent.max_lag_ms
    );
    if let Some(p) = &r.pipeline {
        print_pipeline(p);
    }
    Ok(r)
}

/// Herald's own account of a phase, on stderr as it happens.
pub fn print_pipeline(p: &Pipeline) {
    if let Some(stored) = p.stored {
        eprintln!("  stored in the inbox: {stored} of {} acknowledged", p.acked);
    }
    eprintln!("  DynamoDB write requests per recipient: {}", show(p.writes_per_recipient, 2));
    for s in &p.stages {
        eprintln!(
            "  {:<40} p50 {:>8} ms  p99 {:>8} ms  mean {:>8} ms  (n {})",
            s.what,
            show(s.p50_ms, 2),
            show(s.p99_ms, 2),
            show(s.mean_ms, 2),
            s.count.map_or("n/a".into(), |c| c.to_string())
        );
    }
}
