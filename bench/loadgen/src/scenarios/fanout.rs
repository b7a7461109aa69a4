//! Fan-out: a team of N connected members gets notifications one after the other; for each, the
//! time from publish to the first and the last member's delivery, and deliveries per second.
//! Herald expands the team in its deliver function (one stored item and one per-user publish per
//! member); the baseline emits once to the team's room.

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

pub async fn run(cfg: &BenchConfig, sut: &Sut) -> anyhow::Result<Fanout> {
    let members = cfg.members;
    eprintln!("fanout: a team of {members} connected members, {} notifications", cfg.fanout_notifications);
    if let Some(inbox) = &sut.inbox {
        let users: Vec<String> = (0..members).map(|u| format!("u{u}")).collect();
        for chunk in users.chunks(1000) {
            inbox.add_members(TEAM, chunk).await.context("adding team members")?;
        }
    }
    let mut fleet =
        Fleet::launch(&format!("{} fanout", sut.system.label()), super::layout(cfg, sut, members, 2)).await?;
    let connected = fleet.connected(Duration::from_secs(600)).await?;
    super::all_connected(&connected, "fanout")?;
    let mut all = new_histogram();
    let mut notifications = Vec::new();
    for i in 0..cfg.fanout_notifications {
        let phase = 30 + i as u32;
        let t0 = now_us();
        sut.publisher.run(&Plan { phase, audience: Audience::Team(TEAM.into()), count: 1, rate: 1.0 }).await?;
        let expected = Expected::Team { count: 1, members };
        let t = fleet.settle(phase, expected, Duration::from_secs_f64(cfg.drain_secs * 2.0)).await?;
        all.add(&t.hist)?;
        let ms = |us: u64| us.saturating_sub(t0) as f64 / 1000.0;
        let one = FanoutOne {
            loss: Loss::from(&t.report),
            first_delivery_ms: ms(t.report.first_us),
            last_delivery_ms: ms(t.report.last_us),
            deliveries_per_sec: t.report.received as f64 / (ms(t.report.last_us) / 1000.0).max(1e-6),
        };
        eprintln!(
            "fanout #{i}: first {:.1} ms, last {:.1} ms, {:.0} deliveries/s; lost {} dup {}",
            one.first_delivery_ms, one.last_delivery_ms, one.deliveries_per_sec, one.loss.lost, one.loss.duplicated
        );
        notifications.push(one);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    fleet.stop().await;
    Ok(Fanout { members, notifications, latency: Latency::from_hist(&all) })
}
