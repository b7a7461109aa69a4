//! Hostile load (Herald only): good clients receive notifications at a steady open-loop rate,
//! first alone (quiet) and then while thousands of hostile sockets (bad tokens, garbage frames,
//! stalled upgrades, sockets that never say `hello`: `hostile.rs`) keep hitting the same
//! gateways. Both phases' latency side by side, the goal being p99 under attack within 2× of
//! quiet, plus what the hostile sockets got and what the gateways counted.
//!
//! The gateways are extra ones, started like the others but with the gateway's production
//! limits (per-IP connect and frame rates, a 10 s hello deadline): those limits are part of what
//! is under test. They are stopped at the end.

use std::time::{Duration, Instant};

use anyhow::Context;

use super::latency::{Step, phase};
use crate::config::BenchConfig;
use crate::fleet::{Fleet, Layout};
use crate::hostile::{HostileReport, HostileSpec};
use crate::opsmetrics::Scrape;
use crate::procstat::{cpu_secs, open_files, rss_bytes};
use crate::results::Hostile;
use crate::systems::Sut;

/// The oversized frame the `garbage` sockets send: over the gateway's 64 KiB default limit.
const OVERSIZED_BYTES: usize = 100 * 1024;
/// The attack starts once every hostile socket has connected once, or after this.
const RAMP_LIMIT: Duration = Duration::from_secs(60);

pub async fn run(cfg: &BenchConfig, sut: &mut Sut) -> anyhow::Result<Hostile> {
    eprintln!(
        "hostile: {} good clients at {}/s for {} s, quiet then beside {} hostile sockets, over {} gateways",
        cfg.good_clients, cfg.hostile_rate, cfg.hostile_secs, cfg.hostile_connections, cfg.hostile_gateways
    );
    let hello = cfg.hostile_hello_secs.to_string();
    let extra = [("HERALD_HELLO_TIMEOUT_SECONDS", hello.as_str()), ("HERALD_DRAIN_SECONDS", "1")];
    let first = sut.add_gateways(cfg.hostile_gateways, &extra).await?;
    let outcome = attack(cfg, sut, first).await;
    sut.remove_gateways(first).await;
    outcome
}

async fn attack(cfg: &BenchConfig, sut: &mut Sut, first: usize) -> anyhow::Result<Hostile> {
    let herald = sut.herald.as_ref().context("the hostile scenario is Herald's")?;
    let ops = herald.gateway_ops[first..].to_vec();
    let targets: Vec<String> = sut.gateways[first..].iter().map(|g| g.addr.clone()).collect();
    let pids: Vec<u32> = sut.gateways[first..].iter().map(|g| g.pid()).collect();
    let layout = |users: u64, per_source: u64, hostile: Option<HostileSpec>| Layout {
        system: sut.system,
        users,
        targets: targets.clone(),
        reconnect_targets: targets.clone(),
        reconnect: hostile.is_none(),
        secret: cfg.secret.clone(),
        audience: cfg.audience.clone(),
        per_source,
        hostile,
    };
    let good = layout(cfg.good_clients, cfg.good_per_source, None);
    let spec = HostileSpec {
        reopen_ms: cfg.hostile_reopen_ms,
        hold_secs: cfg.hostile_hold_secs,
        oversized_bytes: OVERSIZED_BYTES,
    };
    let bad = layout(cfg.hostile_connections, cfg.hostile_per_source, Some(spec));

    let mut fleet = Fleet::launch("Herald hostile: good clients", good).await?;
    super::all_connected(&fleet.connected(Duration::from_secs(600)).await?, "hostile: good clients")?;
    super::at_rest(&mut fleet, "hostile: good clients").await?;
    let count = (cfg.hostile_rate * cfg.hostile_secs).round().max(1.0) as u64;
    let step = |phase| Step { phase, users: cfg.good_clients, rate: cfg.hostile_rate, count, check_store: true };
    eprintln!("hostile: quiet phase");
    let quiet = phase(cfg, sut, &mut fleet, step(90)).await?;

    let rss_before: Vec<u64> = pids.iter().map(|&p| rss_bytes(p)).collect();
    let before = Scrape::read(&ops).await;
    eprintln!("hostile: launching {} hostile sockets", cfg.hostile_connections);
    let launched = Instant::now();
    let mut attackers = Fleet::launch("Herald hostile: attackers", bad).await?;
    let mut r0 = attackers.hostile().await?;
    while r0.reached < cfg.hostile_connections && launched.elapsed() < RAMP_LIMIT {
        tokio::time::sleep(Duration::from_millis(500)).await;
        r0 = attackers.hostile().await?;
    }
    let ramp_secs = launched.elapsed().as_secs_f64();
    eprintln!(
        "hostile: {} of {} connected at least once, {} open after {ramp_secs:.1} s; hostile phase",
        r0.reached, cfg.hostile_connections, r0.in_play
    );

    let attacker_pids = attackers.pids();
    // Sampled from its own task: the phase's open-loop publisher must never wait on a sample.
    let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
    let sampler = {
        let pids = pids.clone();
        tokio::spawn(async move {
            let mut s = Samples { in_play: Vec::new(), rss_peak: vec![0; pids.len()], fds_peak: vec![0; pids.len()] };
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tokio::select! {
                    _ = &mut stop_rx => break,
                    _ = tick.tick() => {}
                }
                for (i, &p) in pids.iter().enumerate() {
                    s.rss_peak[i] = s.rss_peak[i].max(rss_bytes(p));
                    s.fds_peak[i] = s.fds_peak[i].max(open_files(p));
                }
                if let Ok(r) = attackers.hostile().await {
                    s.in_play.push(r.in_play);
                }
            }
            (attackers, s)
        })
    };
    let cpu_before: Vec<f64> = pids.iter().map(|&p| cpu_secs(p)).collect();
    let attackers_cpu_before: f64 = attacker_pids.iter().map(|&p| cpu_secs(p)).sum();
    let started = Instant::now();
    let under_attack = phase(cfg, sut, &mut fleet, step(91)).await;
    let secs = started.elapsed().as_secs_f64();
    let cpu_pct: Vec<f64> = pids.iter().zip(&cpu_before).map(|(&p, c)| (cpu_secs(p) - c) / secs * 100.0).collect();
    let attackers_cpu_pct =
        (attacker_pids.iter().map(|&p| cpu_secs(p)).sum::<f64>() - attackers_cpu_before) / secs * 100.0;
    let _ = stop_tx.send(());
    let (mut attackers, samples) = sampler.await.context("the sampler")?;
    let r1 = attackers.hostile().await?;
    let after = Scrape::read(&ops).await;
    attackers.stop().await;
    fleet.stop().await;
    let under_attack = under_attack?;

    // The attack's sockets are gone: what the gateways keep now is what they did not give back.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_after: Vec<u64> = pids.iter().map(|&p| rss_bytes(p)).collect();
    let gateway_exits: Vec<String> = sut.gateways[first..]
        .iter_mut()
        .enumerate()
        .filter_map(|(i, g)| g.exited().map(|how| format!("gateway {i} ({}) exited: {how}", g.addr)))
        .collect();

    let delta = |name: &str| {
        let b = before.by_label(name, "reason");
        let mut a = after.by_label(name, "reason");
        for (k, v) in &mut a {
            *v -= b.get(k).copied().unwrap_or(0.0);
        }
        a.retain(|_, v| *v > 0.0);
        a
    };
    let total = |s: &Scrape, name: &str| s.total(name).unwrap_or(0.0);
    let ratio = under_attack.latency.p99_ms / quiet.latency.p99_ms.max(1e-3);
    let n = samples.in_play.len().max(1) as f64;
    let h = Hostile {
        good_clients: cfg.good_clients,
        hostile_connections: cfg.hostile_connections,
        gateways: pids.len(),
        rate: cfg.hostile_rate,
        p99_ratio: ratio,
        goal_ratio: GOAL_RATIO,
        goal_met: ratio <= GOAL_RATIO,
        ramp_secs,
        in_play_min: samples.in_play.iter().copied().min().unwrap_or(0),
        in_play_mean: samples.in_play.iter().sum::<u64>() as f64 / n,
        opens_per_sec: (r1.opened - r0.opened) as f64 / secs.max(1e-3),
        outcomes: r1.outcomes.clone(),
        still_open: r1.open_by_kind.clone(),
        gateway_refused: delta("herald_gateway_refused_total"),
        gateway_auth_failures: delta("herald_gateway_auth_failures_total"),
        gateway_rate_limited: total(&after, "herald_gateway_rate_limited_total")
            - total(&before, "herald_gateway_rate_limited_total"),
        rss_before,
        rss_peak: samples.rss_peak,
        rss_after,
        open_files_peak: samples.fds_peak,
        cpu_pct,
        attackers_cpu_pct,
        load_1m: crate::results::loadavg().first().copied().unwrap_or(0.0),
        gateway_exits,
        quiet,
        hostile: under_attack,
    };
    eprint!("{}", crate::report::hostile(&h));
    if r1.opened == 0 {
        anyhow::bail!("no hostile socket ever connected: {}", describe(&r1));
    }
    Ok(h)
}

/// The goal: p99 under attack at most twice the quiet p99.
const GOAL_RATIO: f64 = 2.0;

struct Samples {
    in_play: Vec<u64>,
    rss_peak: Vec<u64>,
    fds_peak: Vec<u64>,
}

fn describe(r: &HostileReport) -> String {
    r.outcomes.iter().map(|(k, o)| format!("{k}: {}", o.count)).collect::<Vec<_>>().join(", ")
}
