//! The public listener's HTTP server: the router on hyper, as `axum::serve` runs it, plus a
//! timer. `axum::serve` builds hyper without one, which turns hyper's header-read timeout off: a
//! socket that never finishes its request (a stalled upgrade, slowloris) held a descriptor
//! forever, before any per-IP cap or connection count could see it. Here such a socket is
//! closed after `header_timeout`.

use std::net::SocketAddr;
use std::pin::pin;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::serve::Listener;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tower_service::Service;
use tracing::{trace, warn};

/// How long HTTP requests still running when `shutdown` fires may take to finish (upgraded
/// WebSockets are the sessions' own and drain separately).
const GRACE: Duration = Duration::from_secs(10);

/// Serves `app` on `listener` until `shutdown`; handlers see the peer as `ConnectInfo`.
pub async fn serve<L>(mut listener: L, app: Router, header_timeout: Duration, shutdown: impl Future<Output = ()>)
where
    L: Listener<Addr = SocketAddr>,
{
    // HTTP/1.1 only: WebSockets upgrade from it, and browsers and load balancers speak it to
    // us. (An HTTP/1-or-2 server first waits for the bytes that tell them apart, with no timer.)
    let mut builder = http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(header_timeout);
    // Shutdown is announced to every connection through `signal`; each holds a `close`
    // receiver until it ends, so `close_tx.closed()` is "every connection has ended".
    let (signal_tx, signal_rx) = tokio::sync::watch::channel(());
    let (close_tx, close_rx) = tokio::sync::watch::channel(());
    let mut shutdown = pin!(shutdown);
    loop {
        let (io, addr) = tokio::select! {
            conn = listener.accept() => conn,
            _ = &mut shutdown => break,
        };
        let service = hyper::service::service_fn({
            let app = app.clone();
            move |mut req: hyper::Request<Incoming>| {
                req.extensions_mut().insert(ConnectInfo(addr));
                app.clone().call(req)
            }
        });
        let conn = builder.serve_connection(TokioIo::new(io), service).with_upgrades();
        let (mut signal, close) = (signal_rx.clone(), close_rx.clone());
        tokio::spawn(async move {
            let mut conn = pin!(conn);
            let result = tokio::select! {
                r = conn.as_mut() => r,
                _ = signal.changed() => {
                    // Finish the request in progress, then close (an upgraded socket has
                    // left hyper already).
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = result {
                trace!(error = %e, "connection ended with an error");
            }
            drop(close);
        });
    }
    // No new socket from here on.
    drop(listener);
    let _ = signal_tx.send(());
    drop(close_rx);
    if tokio::time::timeout(GRACE, close_tx.closed()).await.is_err() {
        warn!("HTTP requests still running {GRACE:?} after shutdown; leaving them");
    }
}
