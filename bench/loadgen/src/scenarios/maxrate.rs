//! Max rate (Herald): the highest sustained rate at which publish→socket p99 stays within a bound
//! (50 ms by default) with nothing lost or duplicated. A step search: each step is an open-loop
//! phase of `--step-secs` to the latency users, drained before the next; the rate grows by half
//! from `--search-from` until a step misses (or `--search-max`), or halves while the first steps
//! miss (not below `--search-min`), then two bisections between the last step that held and the
//! first that missed.

use std::time::Duration;

use crate::config::BenchConfig;
use crate::fleet::Fleet;
use crate::results::{MaxRate, Rate};
use crate::systems::Sut;

/// Bisections after the first miss.
const REFINE: usize = 2;

fn held(r: &Rate, bound_ms: f64) -> bool {
    r.latency.p99_ms <= bound_ms && r.loss.lost == 0 && r.loss.duplicated == 0 && r.sent.failed == 0
}

pub async fn run(cfg: &BenchConfig, sut: &Sut) -> anyhow::Result<MaxRate> {
    let bound = cfg.search_p99_ms;
    eprintln!(
        "maxrate: {} users; from {}/s (down to {}/s, up to {}/s), {} s per step, p99 bound {bound} ms",
        cfg.users, cfg.search_from, cfg.search_min, cfg.search_max, cfg.step_secs
    );
    let mut fleet =
        Fleet::launch(&format!("{} maxrate", sut.system.label()), super::layout(cfg, sut, cfg.users, 2)).await?;
    let connected = fleet.connected(Duration::from_secs(600)).await?;
    super::all_connected(&connected, "maxrate")?;
    super::at_rest(&mut fleet, "maxrate").await?;
    let mut m = MaxRate { p99_bound_ms: bound, ..MaxRate::default() };
    let mut phase = 60;
    let mut step = async |rate: f64, m: &mut MaxRate| -> anyhow::Result<bool> {
        let count = (rate * cfg.step_secs).round().max(1.0) as u64;
        let step = super::latency::Step { phase, users: cfg.users, rate, count, check_store: false };
        let r = super::latency::phase(cfg, sut, &mut fleet, step).await?;
        phase += 1;
        let ok = held(&r, bound);
        eprintln!("maxrate: {rate:.0}/s {}", if ok { "held" } else { "missed" });
        if ok {
            m.sustained = Some(m.sustained.map_or(rate, |s: f64| s.max(rate)));
        }
        m.steps.push(r);
        tokio::time::sleep(Duration::from_secs(1)).await;
        Ok(ok)
    };
    let (mut good, mut bad) = (None, None);
    let mut rate = cfg.search_from;
    loop {
        if step(rate, &mut m).await? {
            good = Some(rate);
            if bad.is_some() || rate >= cfg.search_max {
                break;
            }
            rate = (rate * 1.5).min(cfg.search_max).round();
        } else {
            bad = Some(rate);
            // Missed from the start: look below it.
            if good.is_some() || rate / 2.0 < cfg.search_min {
                break;
            }
            rate = (rate / 2.0).round();
        }
    }
    if let (Some(mut lo), Some(mut hi)) = (good, bad) {
        for _ in 0..REFINE {
            let mid = ((lo + hi) / 2.0).round();
            if mid <= lo || mid >= hi {
                break;
            }
            if step(mid, &mut m).await? {
                lo = mid;
            } else {
                hi = mid;
            }
        }
    }
    fleet.stop().await;
    eprintln!(
        "maxrate: sustained {} with p99 <= {bound} ms",
        m.sustained.map_or("nothing (not even the first step)".into(), |r| format!("{r:.0}/s"))
    );
    Ok(m)
}
