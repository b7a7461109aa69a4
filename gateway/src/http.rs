//! The gateway's HTTP surface: `/v1/ws`, `/healthz`, `/readyz`, `/metrics`.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::{State, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use crate::session;
use crate::state::AppState;

/// An HTTP error as CONTRACT §4 shapes it.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error": {"code": self.code, "message": self.message}});
        (self.status, axum::Json(body)).into_response()
    }
}

pub fn app(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/v1/ws", get(ws))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route(
            "/metrics",
            get(|State(st): State<Arc<AppState>>| async move { st.metrics.render() }),
        )
        .with_state(state)
}

async fn readyz(State(st): State<Arc<AppState>>) -> (StatusCode, &'static str) {
    let connected = st.client.connection_state() == async_nats::connection::State::Connected;
    if st.ready.load(Ordering::Relaxed) && connected {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready")
    }
}

/// Names a URL query may carry a token under; such URLs end up in logs and are refused.
const TOKEN_PARAMS: [&str; 4] = ["token", "access_token", "jwt", "auth"];

async fn ws(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    uri: Uri,
    upgrade: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    if !st.ready.load(Ordering::Relaxed) {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "this gateway is not serving",
        ));
    }
    if let Some(q) = uri.query()
        && q.split('&')
            .any(|kv| TOKEN_PARAMS.contains(&kv.split('=').next().unwrap_or("")))
    {
        st.metrics.auth_failure("token_in_url");
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "token_in_url",
            "send the token in the Authorization header or the hello frame, never in the URL",
        ));
    }
    let header_claims = match bearer(&headers) {
        None => None,
        Some(token) => match st.verifier.verify(token) {
            Ok(c) => Some(c),
            Err(e) => {
                st.metrics.auth_failure(e.code());
                return Err(ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "unauthenticated",
                    e.to_string(),
                ));
            }
        },
    };
    let max = st.config.max_frame_bytes;
    let tracked = st.clone();
    Ok(upgrade
        // tungstenite's defaults (128 KiB read buffer, 64 MiB messages) cost ~136 KB per idle
        // socket and let one frame eat memory; 4 KiB and our frame limit keep both small.
        .read_buffer_size(4096)
        .write_buffer_size(0)
        .max_message_size(max)
        .max_frame_size(max)
        .on_upgrade(move |socket| {
            tracked
                .sessions
                .track_future(session::run(socket, st, header_claims))
        }))
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    v.strip_prefix("Bearer ")
        .or_else(|| v.strip_prefix("bearer "))
        .map(str::trim)
}
