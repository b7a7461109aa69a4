//! Herald's WebSocket gateway: authenticates clients, replays what they missed from
//! `HERALD_USER`, and pushes their notifications live.
//!
//! [`run`] serves until `shutdown` is cancelled, then drains: `/readyz` turns 503, every
//! session gets `reconnect`, and the process waits for its sessions before draining NATS.

pub mod auth;
pub mod config;
pub mod http;
pub mod log;
pub mod metrics;
pub mod protocol;
pub mod session;
pub mod state;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

pub use config::Config;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("connecting to NATS: {0}")]
    Connect(#[from] async_nats::ConnectError),
    #[error("serving HTTP: {0}")]
    Http(#[from] std::io::Error),
}

pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    let client = async_nats::ConnectOptions::new()
        .name("herald-gateway")
        .retry_on_initial_connect()
        .connect(&config.nats.url)
        .await?;
    let drain_period = config.drain_period;
    let state = Arc::new(state::AppState::new(
        config,
        client.clone(),
        shutdown.clone(),
    ));
    state.ready.store(true, Ordering::Relaxed);
    info!(addr = %listener.local_addr()?, "herald-gateway ready");

    let serve_shutdown = {
        let state = state.clone();
        async move {
            state.shutdown.cancelled().await;
            state.ready.store(false, Ordering::Relaxed);
        }
    };
    axum::serve(listener, http::app(state.clone()))
        .with_graceful_shutdown(serve_shutdown)
        .await?;

    // Sessions saw the same cancellation and are sending `reconnect`; give them the period.
    state.sessions.close();
    if tokio::time::timeout(drain_period + Duration::from_secs(1), state.sessions.wait())
        .await
        .is_err()
    {
        warn!(
            left = state.sessions.len(),
            "drain period ended with sessions open"
        );
    }
    let _ = client.drain().await;
    Ok(())
}
