//! Latency under load: users connected over two gateways, notifications to them at each rate in
//! turn (open loop), publish→socket latency percentiles and every loss, copy and reordering.

use std::time::Duration;

use crate::config::BenchConfig;
use crate::fleet::Fleet;
use crate::publish::{Audience, Plan};
use crate::results::{Latency, Loss, Rate};
use crate::systems::Sut;
use crate::wire::Expected;

pub async fn run(cfg: &BenchConfig, sut: &Sut) -> anyhow::Result<Vec<Rate>> {
    let users = cfg.users;
    eprintln!("latency: {users} users over 2 gateways; rates {:?}/s, {} s each", cfg.rates, cfg.phase_secs);
    let mut fleet =
        Fleet::launch(&format!("{} latency", sut.system.label()), super::layout(cfg, sut, users, 2)).await?;
    let connected = fleet.connected(Duration::from_secs(600)).await?;
    super::all_connected(&connected, "latency")?;
    let mut out = Vec::new();
    for (i, &rate) in cfg.rates.iter().enumerate() {
        let phase = 10 + i as u32;
        let count = (rate * cfg.phase_secs).round() as u64;
        let drops_before = fleet.status().await?.drops;
        let sent = sut.publisher.run(&Plan { phase, audience: Audience::Users(users), count, rate }).await?;
        let expected = Expected::Direct { count, users };
        let t = fleet.settle(phase, expected, Duration::from_secs_f64(cfg.drain_secs)).await?;
        let r = Rate {
            rate,
            users,
            sent,
            loss: Loss::from(&t.report),
            latency: Latency::from_hist(&t.hist),
            drops: fleet.status().await?.drops - drops_before,
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
        out.push(r);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    fleet.stop().await;
    Ok(out)
}
