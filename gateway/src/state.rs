//! What every request and session of one gateway process shares.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use async_nats::jetstream::kv;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::{AuthError, Claims, Verifier};
use crate::config::Config;
use crate::events::Events;
use crate::limits::RateLimiter;
use crate::live::LiveRouter;
use crate::log::UserLog;
use crate::metrics::Metrics;
use crate::revocation::Revocations;

#[derive(Debug)]
pub struct AppState {
    pub config: Config,
    pub verifier: Verifier,
    /// The HTTP API's own parts (service tokens, its limits, the publisher).
    pub api: crate::api::Shared,
    /// Admin tokens' own key; `None`: the admin API is off.
    pub admin_verifier: Option<Verifier>,
    pub client: async_nats::Client,
    pub live: LiveRouter,
    pub log: UserLog,
    pub metrics: Metrics,
    pub revocations: Revocations,
    pub revocation_store: kv::Store,
    pub events: std::sync::Arc<Events>,
    pub connect_limit: RateLimiter,
    pub frame_limit: RateLimiter,
    /// Bounds the stream reads of catch-ups in flight (see `Config::catchup_concurrency`).
    pub catchups: tokio::sync::Semaphore,
    /// `HERALD_USER`'s per-user cap (-1: none), for the retention check of cursor `0`.
    pub max_per_user: std::sync::atomic::AtomicI64,
    /// Sockets accepted and not yet closed (the per-process cap counts these).
    pub open: AtomicUsize,
    /// False while starting and once draining.
    pub ready: AtomicBool,
    pub shutdown: CancellationToken,
    /// Upgraded sockets, which axum's graceful shutdown does not wait for.
    pub sessions: TaskTracker,
    session_prefix: String,
    session_counter: AtomicU64,
}

/// The parts built before the state (they need NATS or files).
pub struct Parts {
    pub config: Config,
    pub verifier: Verifier,
    pub api: crate::api::Shared,
    pub admin_verifier: Option<Verifier>,
    pub client: async_nats::Client,
    pub live: LiveRouter,
    pub revocation_store: kv::Store,
    pub events: std::sync::Arc<Events>,
    pub shutdown: CancellationToken,
}

impl AppState {
    pub fn new(p: Parts) -> Self {
        let l = &p.config.limits;
        AppState {
            log: UserLog::new(p.client.clone(), p.config.replay_timeout),
            connect_limit: RateLimiter::new(l.connects_per_ip_per_sec, l.connect_burst, l.tracked_ips),
            frame_limit: RateLimiter::new(l.frames_per_ip_per_sec, l.frame_burst, l.tracked_ips),
            catchups: tokio::sync::Semaphore::new(p.config.catchup_concurrency),
            max_per_user: std::sync::atomic::AtomicI64::new(-1),
            verifier: p.verifier,
            api: p.api,
            admin_verifier: p.admin_verifier,
            client: p.client,
            live: p.live,
            metrics: Metrics::default(),
            revocations: Revocations::default(),
            revocation_store: p.revocation_store,
            events: p.events,
            open: AtomicUsize::new(0),
            ready: AtomicBool::new(false),
            shutdown: p.shutdown,
            sessions: TaskTracker::new(),
            session_prefix: format!("{:08x}", rand::random::<u32>()),
            session_counter: AtomicU64::new(0),
            config: p.config,
        }
    }

    /// Unique per process and across restarts (random prefix), cheap to make.
    pub fn next_session_id(&self) -> String {
        format!("{}-{:x}", self.session_prefix, self.session_counter.fetch_add(1, Ordering::Relaxed))
    }

    /// A user token: valid, not a service token (those carry a `scope`, or verify with the
    /// service key), and not revoked.
    pub fn verify_user(&self, token: &str) -> Result<Claims, AuthError> {
        let claims = match self.verifier.verify(token) {
            Ok(c) if c.scope.is_some() => return Err(AuthError::ServiceToken),
            Ok(c) => c,
            Err(_) if self.api.verify_service(token).is_ok() => return Err(AuthError::ServiceToken),
            Err(e) => return Err(e),
        };
        if self.revocations.is_revoked(&claims) {
            return Err(AuthError::Revoked);
        }
        Ok(claims)
    }
}

/// Counts an accepted socket until dropped (when its session ends, or its upgrade fails).
pub struct OpenSlot(std::sync::Arc<AppState>);

impl OpenSlot {
    /// A slot, unless the process is at its connection cap.
    pub fn take(state: &std::sync::Arc<AppState>) -> Option<Self> {
        let max = state.config.limits.max_connections;
        state.open.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1)).ok()?;
        state.metrics.connections.inc();
        Some(OpenSlot(state.clone()))
    }
}

impl Drop for OpenSlot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
        self.0.metrics.connections.dec();
    }
}
