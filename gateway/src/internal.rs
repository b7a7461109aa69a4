//! The internal plane, on its own listener (`HERALD_ADMIN_LISTEN`, loopback by default):
//! `/metrics` and the admin API, which must never be reachable through the public port or the
//! load balancer, plus `/healthz` and `/readyz` for local probes.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::routing::get;

use crate::admin;
use crate::http::readyz;
use crate::state::AppState;

pub fn app(state: Arc<AppState>) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(|State(st): State<Arc<AppState>>| async move { st.metrics.render() + &crate::api::metrics(&st) }),
        )
        .route("/v1/admin/revocations", get(admin::list).post(admin::revoke))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(state)
}
