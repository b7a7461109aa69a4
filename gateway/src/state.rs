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
    /// Bytes read back for each user's replays (see `Limits::replay_bytes_per_user_per_sec`).
    pub replay_limit: RateLimiter<String>,
    /// Bounds the stream reads of catch-ups in flight (see `Config::catchup_concurrency`).
    pub catchups: tokio::sync::Semaphore,
    /// Bounds the sessions' store reads in flight (unread counts, replayed read state), apart
    /// from the stream reads: a slow store must not hold up catch-ups.
    pub store_reads: tokio::sync::Semaphore,
    /// `HERALD_USER`'s per-user cap (-1: none), for the retention check of cursor `0`.
    pub max_per_user: std::sync::atomic::AtomicI64,
    /// Sockets accepted and not yet closed (the per-process cap counts these).
    pub open: AtomicUsize,
    /// The same, by client IP (only IPs with a socket open: at most `open` entries).
    open_per_ip: std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>,
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
            replay_limit: RateLimiter::new(
                l.replay_bytes_per_user_per_sec,
                l.replay_burst_bytes_per_user,
                l.tracked_ips,
            ),
            catchups: tokio::sync::Semaphore::new(p.config.catchup_concurrency),
            store_reads: tokio::sync::Semaphore::new(p.config.catchup_concurrency),
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
            open_per_ip: Default::default(),
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

/// Counts an accepted socket, in the process and for its client IP, until dropped (when its
/// session ends, or its upgrade fails).
pub struct OpenSlot(std::sync::Arc<AppState>, std::net::IpAddr);

/// Why no slot was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoSlot {
    /// The process is at `max_connections`.
    Full,
    /// This IP is at `max_connections_per_ip`.
    IpFull,
}

impl OpenSlot {
    /// A slot, unless the process or `ip` is at its connection cap.
    pub fn take(state: &std::sync::Arc<AppState>, ip: std::net::IpAddr) -> Result<Self, NoSlot> {
        let limits = &state.config.limits;
        {
            let mut per_ip = state.open_per_ip.lock().unwrap_or_else(|p| p.into_inner());
            let n = per_ip.entry(ip).or_insert(0);
            if *n >= limits.max_connections_per_ip {
                return Err(NoSlot::IpFull);
            }
            *n += 1;
        }
        let max = limits.max_connections;
        if state.open.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1)).is_err() {
            release_ip(state, ip);
            return Err(NoSlot::Full);
        }
        state.metrics.connections.inc();
        Ok(OpenSlot(state.clone(), ip))
    }
}

fn release_ip(state: &AppState, ip: std::net::IpAddr) {
    let mut per_ip = state.open_per_ip.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(n) = per_ip.get_mut(&ip) {
        *n -= 1;
        if *n == 0 {
            per_ip.remove(&ip);
        }
    }
}

impl Drop for OpenSlot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
        release_ip(&self.0, self.1);
        self.0.metrics.connections.dec();
    }
}
