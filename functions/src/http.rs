//! The runner's operations endpoints: `/healthz`, `/readyz`, `/metrics`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;

use crate::metrics::Metrics;

#[derive(Debug, Default)]
pub struct Ops {
    pub ready: AtomicBool,
    pub metrics: Metrics,
    /// The store whose request counts the page shows, once it is built.
    pub store: OnceLock<herald_store::Store>,
}

pub fn app(ops: Arc<Ops>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(|State(ops): State<Arc<Ops>>| async move {
                if ops.ready.load(Ordering::Relaxed) {
                    (StatusCode::OK, "ready")
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "not ready")
                }
            }),
        )
        .route(
            "/metrics",
            get(|State(ops): State<Arc<Ops>>| async move { ops.metrics.render(ops.store.get().map(|s| s.requests())) }),
        )
        .with_state(ops)
}
