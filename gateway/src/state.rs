//! What every request and session of one gateway process shares.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::Verifier;
use crate::config::Config;
use crate::log::UserLog;
use crate::metrics::Metrics;

#[derive(Debug)]
pub struct AppState {
    pub config: Config,
    pub verifier: Verifier,
    pub client: async_nats::Client,
    pub log: UserLog,
    pub metrics: Metrics,
    /// False while starting and once draining.
    pub ready: AtomicBool,
    pub shutdown: CancellationToken,
    /// Upgraded sockets, which axum's graceful shutdown does not wait for.
    pub sessions: TaskTracker,
    session_prefix: String,
    session_counter: AtomicU64,
}

impl AppState {
    pub fn new(config: Config, client: async_nats::Client, shutdown: CancellationToken) -> Self {
        AppState {
            verifier: Verifier::new(&config.auth),
            log: UserLog::new(client.clone(), config.replay_timeout),
            config,
            client,
            metrics: Metrics::default(),
            ready: AtomicBool::new(false),
            shutdown,
            sessions: TaskTracker::new(),
            session_prefix: format!("{:08x}", rand::random::<u32>()),
            session_counter: AtomicU64::new(0),
        }
    }

    /// Unique per process and across restarts (random prefix), cheap to make.
    pub fn next_session_id(&self) -> String {
        format!(
            "{}-{:x}",
            self.session_prefix,
            self.session_counter.fetch_add(1, Ordering::Relaxed)
        )
    }
}
