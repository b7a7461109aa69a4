//! `herald-bridge`: feeds the `deliver` Lambda function from JetStream (see
//! `herald_functions::bridge`). Reads its config once and runs until SIGTERM/Ctrl-C.

use anyhow::Context;
use herald_core::config::Vars;
use herald_functions::bridge::{BridgeConfig, run};
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("HERALD_LOG").unwrap_or_else(|_| "info".into()))
        .init();
    let vars = Vars::from_env();
    let config = BridgeConfig::from_vars(&vars)?;
    let listen = vars.string("HERALD_BRIDGE_LISTEN", "127.0.0.1:8082");
    let listener = tokio::net::TcpListener::bind(&listen).await.with_context(|| format!("binding {listen}"))?;
    let shutdown = CancellationToken::new();
    tokio::spawn(herald_core::signal::cancel_on_signal(shutdown.clone()));
    run(listener, config, shutdown).await?;
    Ok(())
}
