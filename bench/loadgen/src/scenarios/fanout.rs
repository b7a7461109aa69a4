//! Fan-out: a team of N connected members gets notifications one after the other; for each, the
//! time from publish to the first and the last member's delivery, and deliveries per second.
//! Herald expands the team in its deliver function (one stored item and one per-user publish per
//! member); the baseline emits once to the team's room.
//!
//! Right after each team notification, a one-recipient notification goes to a connected user
//! outside the team: its latency shows whether a big team holds up everything behind it
//! (head-of-line blocking). For Herald, also the time until the runners acknowledged the team
//! request (every member's copy stored) and, at the end, the team's items counted in the store.

use std::time::Duration;

use anyhow::Context;

use crate::config::BenchConfig;
use crate::fleet::Fleet;
use crate::publish::{Audience, Plan};
use crate::results::{Fanout, FanoutOne, Latency, Loss};
use crate::systems::Sut;
use crate::tally::new_histogram;
use crate::wire::{Expected, now_us};

/// The fan-out team: users `u0 .. u<members>` (server.js puts them in room `team:big-0`).
pub const TEAM: &str = "big-0";
/// Team notification `i` is phase `30 + i`; the probe after it is phase `50 + i`.
const TEAM_PHASE: u32 = 30;
const PROBE_PHASE: u32 = 50;

pub async fn run(cfg: &BenchConfig, sut: &Sut) -> anyhow::Result<Fanout> {
    let members = cfg.members;
    eprintln!("fanout: a team of {members} connected members, {} notifications", cfg.fanout_notifications);
    if let Some(h) = &sut.herald {
        let users: Vec<String> = (0..members).map(|u| format!("u{u}")).collect();
        for chunk in users.chunks(1000) {
            h.store.add_members(TEAM, chunk).await.context("adding team members")?;
        }
    }
    // One more user, u<members>, outside the team, receives the probes.
    let probe_user = members;
    let mut fleet =
        Fleet::launch(&format!("{} fanout", sut.system.label()), super::layout(cfg, sut, members + 1, 2)).await?;
    let connected = fleet.connected(Duration::from_secs(600)).await?;
    super::all_connected(&connected, "fanout")?;
    super::at_rest(&mut fleet, "fanout").await?;
    let drain = Duration::from_secs_f64(cfg.drain_secs * 2.0);
    let mut all = new_histogram();
    let mut notifications = Vec::new();
    for i in 0..cfg.fanout_notifications {
        let (phase, probe_phase) = (TEAM_PHASE + i as u32, PROBE_PHASE + i as u32);
        let t0 = now_us();
        let sent =
            sut.publisher.run(&Plan { phase, audience: Audience::Team(TEAM.into()), count: 1, rate: 1.0 }).await?;
        let probe = Plan { phase: probe_phase, audience: Audience::One(probe_user), count: 1, rate: 1.0 };
        let probe_sent = sut.publisher.run(&probe).await?;
        let stored_ms = async {
            match &sut.herald {
                Some(h) if sent.unacked.is_empty() => {
                    let done = h.acked_through(sent.last_sequence, drain).await?;
                    anyhow::Ok(done.then(|| now_us().saturating_sub(t0) as f64 / 1000.0))
                }
                _ => Ok(None),
            }
        };
        let expected = Expected::Team { count: 1, members };
        let (all_stored_ms, t) = tokio::join!(stored_ms, fleet.settle(phase, expected, &sent.unacked, drain));
        let (all_stored_ms, t) = (all_stored_ms?, t?);
        let p =
            fleet.settle(probe_phase, Expected::One { count: 1, user: probe_user }, &probe_sent.unacked, drain).await?;
        all.add(&t.hist)?;
        let ms = |us: u64| us.saturating_sub(t0) as f64 / 1000.0;
        let one = FanoutOne {
            loss: Loss::from(&t.report),
            first_delivery_ms: ms(t.report.first_us),
            last_delivery_ms: ms(t.report.last_us),
            deliveries_per_sec: t.report.received as f64 / (ms(t.report.last_us) / 1000.0).max(1e-6),
            all_stored_ms,
            stored: None,
            probe_ms: (p.report.received > 0).then(|| p.hist.max() as f64 / 1000.0),
            probe_loss: Loss::from(&p.report),
        };
        eprintln!(
            "fanout #{i}: first {:.1} ms, last {:.1} ms, {:.0} deliveries/s; all stored {} ms; lost {} dup {}; \
             one-user notification right after: {} ms, lost {} dup {}",
            one.first_delivery_ms,
            one.last_delivery_ms,
            one.deliveries_per_sec,
            crate::opsmetrics::show(one.all_stored_ms, 1),
            one.loss.lost,
            one.loss.duplicated,
            crate::opsmetrics::show(one.probe_ms, 1),
            one.probe_loss.lost,
            one.probe_loss.duplicated
        );
        notifications.push(one);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    fleet.stop().await;
    if let Some(h) = &sut.herald {
        for (i, one) in notifications.iter_mut().enumerate() {
            let stored = h.stored.count(0..members, &format!("bench-p{}-", TEAM_PHASE + i as u32)).await?;
            eprintln!("fanout #{i}: {stored} of {members} members' items in the store");
            one.stored = Some(stored);
        }
    }
    Ok(Fanout { members, notifications, latency: Latency::from_hist(&all) })
}
