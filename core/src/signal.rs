//! Process signals for the binaries: the first SIGTERM or Ctrl-C cancels the shutdown token.

use tokio_util::sync::CancellationToken;

pub async fn cancel_on_signal(shutdown: CancellationToken) {
    let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate());
    match term {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
    shutdown.cancel();
}
