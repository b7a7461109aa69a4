//! The bench scenarios, each run against one started system: idle connections, latency under
//! load, the max-rate search and runner throughput (Herald only), team fan-out, good clients
//! under hostile load (Herald only), and a reconnect storm.

pub mod fanout;
pub mod hostile;
pub mod idle;
pub mod latency;
pub mod maxrate;
pub mod storm;
pub mod throughput;

use crate::config::BenchConfig;
use crate::fleet::Layout;
use crate::systems::Sut;

/// `users` clients spread over `gateways` (by user index), reconnecting to the same set.
pub fn layout(cfg: &BenchConfig, sut: &Sut, users: u64, gateways: usize) -> Layout {
    let targets: Vec<String> = sut.gateways.iter().take(gateways).map(|g| g.addr.clone()).collect();
    Layout {
        system: sut.system,
        users,
        reconnect_targets: targets.clone(),
        targets,
        reconnect: true,
        secret: cfg.secret.clone(),
        audience: cfg.audience.clone(),
        per_source: crate::wire::default_per_source(),
        hostile: None,
    }
}

/// Fails when a fleet did not connect everyone: figures over a partial fleet would mislead.
pub fn all_connected(c: &crate::fleet::Connected, what: &str) -> anyhow::Result<()> {
    if c.failed > 0 {
        anyhow::bail!(
            "{what}: {} of {} first connections failed (first: {})",
            c.failed,
            c.ok + c.failed,
            c.first_error.as_deref().unwrap_or("?")
        );
    }
    Ok(())
}
