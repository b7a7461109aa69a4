//! Herald's WebSocket gateway: authenticates clients, replays what they missed from
//! `HERALD_USER`, and pushes their notifications live.
//!
//! [`run`] serves until `shutdown` is cancelled, then drains: `/readyz` turns 503 and no new
//! socket is accepted, every session gets `reconnect` with a delay spread over the drain period
//! and keeps being served until it leaves or the period ends, then NATS is drained.

pub mod admin;
pub mod api;
pub mod auth;
pub mod client_addr;
pub mod config;
pub mod demo;
pub mod events;
pub mod http;
pub mod internal;
pub mod keys;
pub mod limits;
pub mod live;
pub mod log;
pub mod metrics;
pub mod outbound;
pub mod protocol;
pub mod read_events;
pub mod revocation;
pub mod serve;
pub mod session;
pub mod state;
pub mod upgrade;
pub mod ws;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

pub use config::Config;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::events::Events;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("connecting to NATS: {0}")]
    Connect(#[from] async_nats::ConnectError),
    #[error("loading keys: {0}")]
    Keys(#[from] keys::KeyError),
    #[error("{0}")]
    Revocations(#[from] revocation::RevocationError),
    #[error("{0}")]
    Api(#[from] api::SharedError),
    #[error("serving HTTP: {0}")]
    Http(#[from] std::io::Error),
    #[error("HERALD_NATS_URL: {0}")]
    NatsUrl(std::io::Error),
}

/// Serves the public listener, and the internal plane on `HERALD_ADMIN_LISTEN`.
pub async fn run(listener: TcpListener, config: Config, shutdown: CancellationToken) -> Result<(), RunError> {
    let admin = TcpListener::bind(config.admin_listen).await?;
    run_with_admin(listener, admin, config, shutdown).await
}

/// [`run`] with the internal plane's listener given (tests bind port 0).
pub async fn run_with_admin(
    listener: TcpListener,
    admin_listener: TcpListener,
    config: Config,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    let keyring = keys::Keyring::load(config.auth.keys.clone())?;
    let admin_verifier = match &config.admin_auth {
        Some(a) => Some(auth::Verifier::new(a, keys::Keyring::load(a.keys.clone())?)),
        None => None,
    };
    // Every session's mailbox for read frames and process-wide events.
    let sessions = Arc::new(read_events::ReadHub::default());
    let events = Arc::new(Events::new(sessions.clone()));
    // This connection serves Direct Get, KV and the admin API; live subscriptions ride on the
    // live router's own connection (see `live`).
    let client = config
        .nats
        .options(&config.nats.url)
        .name("herald-gateway")
        .custom_inbox_prefix(herald_core::subject::GATEWAY_INBOX_PREFIX)
        .retry_on_initial_connect()
        .subscription_capacity(1024)
        // A frozen server or a half-open connection is noticed within a few pings, not minutes.
        .ping_interval(config.live_ping_interval.max(Duration::from_secs(1)))
        .connect(herald_core::nats::servers(&config.nats.url).map_err(RunError::NatsUrl)?)
        .await?;
    let background = CancellationToken::new();
    let live_config = live::LiveConfig {
        urls: config.nats.url.clone(),
        tls: config.nats.tls.clone(),
        auth: config.nats.auth.clone(),
        ping_interval: config.live_ping_interval,
        ping_deadline: config.live_ping_deadline,
    };
    tokio::spawn({
        let (events, stop) = (events.clone(), background.clone());
        async move {
            tokio::select! {
                _ = events.tell_sessions() => {}
                _ = stop.cancelled() => {}
            }
        }
    });
    let live = live::LiveRouter::start(live_config, events.clone(), background.clone());
    let js = async_nats::jetstream::new(client.clone());
    // With NATS authorization on, the gateway's own user may only read the revocation bucket;
    // the admin plane creates it and writes to it as the admin user.
    let (store, watched) = match &config.admin_nats_url {
        None => {
            let store =
                revocation::bucket(&js, &config.revocation_bucket, config.revocation_ttl, config.replicas).await?;
            (store.clone(), store)
        }
        Some(url) => {
            // The admin user logs in with its own URL's password, never the gateway's nkey.
            let admin = herald_core::nats::options_with(url.expose(), config.nats.tls.as_ref())
                .name("herald-gateway-admin")
                .custom_inbox_prefix(herald_core::subject::ADMIN_INBOX_PREFIX)
                .retry_on_initial_connect()
                .connect(url.expose())
                .await?;
            let admin_js = async_nats::jetstream::new(admin);
            let store =
                revocation::bucket(&admin_js, &config.revocation_bucket, config.revocation_ttl, config.replicas)
                    .await?;
            (store, revocation::open(&js, &config.revocation_bucket).await?)
        }
    };
    let drain_period = config.drain_period;
    let api = api::Shared::new(&config, client.clone(), sessions).await?;
    let state = Arc::new(state::AppState::new(state::Parts {
        verifier: auth::Verifier::new(&config.auth, keyring),
        api,
        admin_verifier,
        config,
        client: client.clone(),
        live,
        revocation_store: store.clone(),
        events: events.clone(),
        shutdown: shutdown.clone(),
    }));

    // Revocations must be loaded before the first handshake.
    let (loaded_tx, loaded_rx) = tokio::sync::oneshot::channel();
    tokio::spawn({
        let state = state.clone();
        let stop = background.clone();
        async move {
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = revocation::follow(watched, &state.revocations, &state.events, loaded_tx) => {}
            }
        }
    });
    tokio::spawn({
        let state = state.clone();
        let stop = background.clone();
        async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tick.tick() => {}
                }
                match state.verifier.keys.reload_if_changed() {
                    Ok(true) => info!("verification keys reloaded"),
                    Ok(false) => {}
                    Err(e) => warn!(error = %e, "keeping the previous keys"),
                }
            }
        }
    });
    // Cursors carry the stream's epoch: know it before the first session, and notice when the
    // stream is recreated (every session then resets to the new stream).
    let (epoch_tx, epoch_rx) = tokio::sync::oneshot::channel();
    tokio::spawn({
        let state = state.clone();
        let stop = background.clone();
        async move {
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = follow_stream(&state, epoch_tx) => {}
            }
        }
    });
    api::spawn_housekeeping(state.clone(), background.clone());
    if state.config.api.create_tables
        && let Err(e) = state.api.store.ensure_tables().await
    {
        // Sockets work without the store; the inbox API answers 503 until it is there.
        warn!(error = %e, "creating the inbox tables failed");
    }
    tokio::spawn({
        let (client, hub, stop) = (client.clone(), state.api.read_hub.clone(), background.clone());
        async move {
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = read_events::follow(client, hub) => {}
            }
        }
    });
    // Fail closed: not ready (503 on /readyz and on new sockets) until the revocation mirror
    // holds the whole bucket, however long that takes; a revoked token is never let in early.
    tokio::spawn({
        let state = state.clone();
        let addr = listener.local_addr()?;
        async move {
            let _ = tokio::time::timeout(Duration::from_secs(10), epoch_rx).await;
            if loaded_rx.await.is_ok() && !state.shutdown.is_cancelled() {
                state.ready.store(true, Ordering::Relaxed);
                info!(%addr, "herald-gateway ready");
            }
        }
    });
    info!(addr = %admin_listener.local_addr()?, "internal plane listening");
    let internal = tokio::spawn({
        let app = internal::app(state.clone());
        let stop = background.clone();
        let header_timeout = state.config.limits.header_timeout;
        async move {
            serve::serve(admin_listener, app, header_timeout, stop.cancelled_owned()).await;
        }
    });

    let serve_shutdown = {
        let state = state.clone();
        async move {
            state.shutdown.cancelled().await;
            state.ready.store(false, Ordering::Relaxed);
            state.events.drain();
        }
    };
    // Every socket's address is the real client's (PROXY protocol when configured).
    let listener = client_addr::ClientListener::new(listener, state.config.limits.proxy_protocol, {
        let state = state.clone();
        move |e| {
            state.metrics.refused("proxy_protocol");
            tracing::debug!(error = %e, "socket closed: no valid PROXY header");
        }
    })?;
    serve::serve(listener, http::app(state.clone()), state.config.limits.header_timeout, serve_shutdown).await;

    // Sessions were told of the drain (`Events::drain`): they sent `reconnect` and close by the
    // period's end.
    state.sessions.close();
    if tokio::time::timeout(drain_period + Duration::from_secs(2), state.sessions.wait()).await.is_err() {
        warn!(left = state.sessions.len(), "drain period ended with sessions open");
    }
    background.cancel();
    let _ = internal.await;
    let _ = client.drain().await;
    Ok(())
}

/// Reads `HERALD_USER`'s epoch and per-user cap now and every few seconds.
async fn follow_stream(state: &state::AppState, loaded: tokio::sync::oneshot::Sender<()>) {
    let mut loaded = Some(loaded);
    loop {
        match state.log.facts().await {
            Ok(f) => {
                state.max_per_user.store(f.max_per_user, Ordering::Relaxed);
                let before = state.events.epoch();
                if state.events.set_epoch(f.epoch) && before != 0 {
                    warn!(before, now = f.epoch, "HERALD_USER was recreated; sessions reset to the new stream");
                }
                if let Some(tx) = loaded.take() {
                    let _ = tx.send(());
                }
            }
            Err(e) => warn!(error = %e, "reading HERALD_USER's info"),
        }
        tokio::time::sleep(Duration::from_secs(if loaded.is_some() { 1 } else { 5 })).await;
    }
}
