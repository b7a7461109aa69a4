//! Reconnect storm: every client of one gateway is cut at once (the process is killed) while
//! notifications keep flowing to them; they come back on the other gateway (Herald: with their
//! cursors). Measures the time until all are back and have replayed, and every loss and copy.
//!
//! A warm-up first gives every client one notification, so each resumes from a notification's
//! cursor (a client that received nothing resumes from its `welcome` cursor). A Herald client
//! that comes back without a cursor, or is answered by `reset`, never counts as replayed.

use std::time::{Duration, Instant};

use crate::config::BenchConfig;
use crate::fleet::Fleet;
use crate::publish::{Audience, Plan};
use crate::results::{Latency, Loss, Storm};
use crate::systems::Sut;
use crate::wire::{Expected, now_us};

pub async fn run(cfg: &BenchConfig, sut: &mut Sut) -> anyhow::Result<Storm> {
    let clients = cfg.storm_clients;
    eprintln!(
        "storm: {clients} clients on one gateway, {}/s for {} s, the gateway killed at {} s",
        cfg.storm_rate, cfg.storm_secs, cfg.storm_cut_at
    );
    let mut layout = super::layout(cfg, sut, clients, 1);
    layout.reconnect_targets = vec![sut.gateways[1].addr.clone()];
    let mut fleet = Fleet::launch(&format!("{} storm", sut.system.label()), layout).await?;
    let connected = fleet.connected(Duration::from_secs(600)).await?;
    super::all_connected(&connected, "storm")?;

    let warm = Plan { phase: 40, audience: Audience::Users(clients), count: clients, rate: cfg.storm_rate.max(2000.0) };
    let warm_sent = sut.publisher.run(&warm).await?;
    let w = fleet
        .settle(
            40,
            Expected::Direct { count: clients, users: clients },
            &warm_sent.unacked,
            Duration::from_secs_f64(cfg.drain_secs),
        )
        .await?;
    eprintln!(
        "storm: warm-up delivered {}/{}, lost {} dup {}",
        w.report.received, w.report.expected, w.report.lost, w.report.duplicated
    );

    let count = (cfg.storm_rate * cfg.storm_secs).round() as u64;
    let plan = Plan { phase: 41, audience: Audience::Users(clients), count, rate: cfg.storm_rate };
    let Sut { gateways, publisher, .. } = sut;
    let victim = &mut gateways[0];
    let cut_at = Duration::from_secs_f64(cfg.storm_cut_at);
    let watch = async {
        tokio::time::sleep(cut_at).await;
        let t_cut = now_us();
        victim.kill().await;
        eprintln!("storm: gateway killed");
        let deadline = Instant::now() + Duration::from_secs_f64(cfg.drain_secs);
        loop {
            let s = fleet.status().await?;
            let done = s.back >= clients && s.replayed >= clients;
            if done || Instant::now() >= deadline {
                let since = |us: u64| (us.saturating_sub(t_cut)) as f64 / 1000.0;
                let all_back = (s.back >= clients).then(|| since(s.last_back_us));
                let all_replayed = (s.replayed >= clients).then(|| since(s.last_replayed_us));
                return anyhow::Ok((s, all_back, all_replayed));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let (sent, watched) = tokio::join!(publisher.run(&plan), watch);
    let (sent, (status, all_back_ms, all_replayed_ms)) = (sent?, watched?);
    let t = fleet
        .settle(41, Expected::Direct { count, users: clients }, &sent.unacked, Duration::from_secs_f64(cfg.drain_secs))
        .await?;
    fleet.stop().await;
    let storm = Storm {
        clients,
        rate: cfg.storm_rate,
        cut_at_secs: cfg.storm_cut_at,
        sent,
        back: status.back,
        replayed: status.replayed,
        without_cursor: status.without_cursor,
        resets: status.resets,
        all_back_ms,
        all_replayed_ms,
        warmup: Loss::from(&w.report),
        loss: Loss::from(&t.report),
        latency: Latency::from_hist(&t.hist),
    };
    eprintln!(
        "storm: {} back ({:?} ms), {} replayed ({:?} ms), {} without a cursor, {} reset; lost {} dup {} ooo {}",
        storm.back,
        storm.all_back_ms.map(|v| v.round()),
        storm.replayed,
        storm.all_replayed_ms.map(|v| v.round()),
        storm.without_cursor,
        storm.resets,
        storm.loss.lost,
        storm.loss.duplicated,
        storm.loss.out_of_order
    );
    Ok(storm)
}
