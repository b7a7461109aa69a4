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

/// Waits until every session of the fleet has started (its unread count read and sent): the
/// first phase would otherwise share the store with thousands of session starts. A fleet still
/// starting after a minute is measured anyway, and says so.
pub async fn at_rest(fleet: &mut crate::fleet::Fleet, what: &str) -> anyhow::Result<()> {
    if !fleet.at_rest(std::time::Duration::from_secs(60)).await? {
        eprintln!("{what}: sessions still starting after 60 s; measuring anyway");
    }
    Ok(())
}
