//! Idle: N connections held across the gateway fleet. Measures connect+auth rate (wall, and per
//! CPU second the gateways spent), resident memory per connection per gateway (VmRSS after
//! minus before), and the gateways' CPU at rest.

use std::time::Duration;

use crate::config::BenchConfig;
use crate::fleet::Fleet;
use crate::procstat::{cpu_secs, rss_bytes};
use crate::results::Idle;
use crate::systems::Sut;

pub async fn run(cfg: &BenchConfig, sut: &Sut) -> anyhow::Result<Idle> {
    let n = cfg.gateways.min(sut.gateways.len());
    let gws = &sut.gateways[..n];
    let total = cfg.per_gateway * n as u64;
    eprintln!("idle: {total} connections over {n} gateways");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let pids: Vec<u32> = gws.iter().map(|g| g.pid()).collect();
    let rss_before: Vec<u64> = pids.iter().map(|&p| rss_bytes(p)).collect();
    let cpu_before: f64 = pids.iter().map(|&p| cpu_secs(p)).sum();

    let mut layout = super::layout(cfg, sut, total, n);
    layout.reconnect = false;
    let mut fleet = Fleet::launch(&format!("{} idle", sut.system.label()), layout).await?;
    let connected = fleet.connected(Duration::from_secs(600)).await?;
    let connect_cpu = pids.iter().map(|&p| cpu_secs(p)).sum::<f64>() - cpu_before;

    // Every session started (its count read), then allocations settled: memory and CPU at rest.
    super::at_rest(&mut fleet, "idle").await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_after: Vec<u64> = pids.iter().map(|&p| rss_bytes(p)).collect();
    let cpu0: Vec<f64> = pids.iter().map(|&p| cpu_secs(p)).collect();
    tokio::time::sleep(Duration::from_secs_f64(cfg.rest_secs)).await;
    let cpu_rest_pct: Vec<f64> =
        pids.iter().zip(&cpu0).map(|(&p, c0)| (cpu_secs(p) - c0) / cfg.rest_secs * 100.0).collect();
    let status = fleet.status().await?;
    fleet.stop().await;

    // User g connects to gateway g % n.
    let per_gw: Vec<u64> = (0..n as u64).map(|i| total / n as u64 + u64::from(i < total % n as u64)).collect();
    let rss_per_conn: Vec<f64> = rss_after
        .iter()
        .zip(&rss_before)
        .zip(&per_gw)
        .map(|((a, b), c)| (*a as f64 - *b as f64) / (*c).max(1) as f64)
        .collect();
    let idle = Idle {
        gateways: n,
        connections: connected.ok,
        failed: connected.failed + status.drops,
        first_error: connected.first_error.clone(),
        connect_secs: connected.secs,
        connects_per_sec: connected.ok as f64 / connected.secs.max(1e-9),
        connect_cpu_secs: connect_cpu,
        connects_per_cpu_sec: connected.ok as f64 / connect_cpu.max(0.01),
        rss_before,
        rss_after,
        connections_per_gateway: per_gw,
        rss_per_conn_mean: rss_per_conn.iter().sum::<f64>() / n as f64,
        rss_per_conn,
        cpu_rest_pct_mean: cpu_rest_pct.iter().sum::<f64>() / n as f64,
        cpu_rest_pct,
    };
    eprintln!(
        "idle: {} connected ({} failed) in {:.1} s = {:.0}/s, {:.0}/gateway-CPU-s; {:.0} B RSS/conn; {:.2}% CPU at rest",
        idle.connections,
        idle.failed,
        idle.connect_secs,
        idle.connects_per_sec,
        idle.connects_per_cpu_sec,
        idle.rss_per_conn_mean,
        idle.cpu_rest_pct_mean
    );
    Ok(idle)
}
