//! The gateway's public HTTP surface: `/v1/ws`, `/healthz`, `/readyz` (the admin API and
//! `/metrics` are on the internal plane, `internal.rs`).
//!
//! Everything that can refuse a socket does it here, before the upgrade, with an HTTP status:
//! not a WebSocket upgrade (400, `upgrade.rs`), draining (503), at the connection cap (503), a
//! token in the URL (400), too many connects from one IP (429), a bad header token (401). An
//! origin not allowed is the exception: browsers cannot read the status of a refused upgrade
//! (they see 1006 and retry), so it is upgraded and closed at once with 4003, which a browser
//! client can act on.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::Response;
use axum::routing::get;

use crate::api;
use crate::api::error::ApiError;
use crate::auth::{AuthError, Claims};
use crate::protocol::close;
use crate::session;
use crate::state::{AppState, NoSlot, OpenSlot};
use crate::upgrade::Upgrade;

pub fn app(state: Arc<AppState>) -> Router {
    let demo = if state.config.demo { crate::demo::routes() } else { Router::new() };
    demo.route("/v1/ws", get(ws))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .merge(api::app(&state.config))
        .with_state(state)
}

pub async fn readyz(State(st): State<Arc<AppState>>) -> (StatusCode, &'static str) {
    // Both connections: the one that reads the stream and the one that carries live delivery.
    let connected = st.client.connection_state() == async_nats::connection::State::Connected && st.live.healthy();
    if st.ready.load(Ordering::Relaxed) && connected {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready")
    }
}

/// What a client at its address's connection cap is told to wait.
const IP_FULL_RETRY: Duration = Duration::from_secs(5);

/// Names a URL query may carry a token under; such URLs end up in logs and are refused.
const TOKEN_PARAMS: [&str; 5] = ["token", "access_token", "jwt", "auth", "authorization"];

async fn ws(
    State(st): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    uri: Uri,
    upgrade: Upgrade,
) -> Result<Response, ApiError> {
    let refuse = |reason: &'static str, error: ApiError| {
        st.metrics.refused(reason);
        error
    };
    if !st.ready.load(Ordering::Relaxed) {
        return Err(refuse("unavailable", ApiError::Unavailable("this gateway is not serving".into())));
    }
    if let Some(q) = uri.query()
        && q.split('&')
            .any(|kv| TOKEN_PARAMS.contains(&kv.split('=').next().unwrap_or("").to_ascii_lowercase().as_str()))
    {
        return Err(refuse(
            "token_in_url",
            ApiError::Invalid {
                code: "token_in_url",
                message: "send the token in the Authorization header or the hello frame, never in the URL".into(),
            },
        ));
    }
    let origin_ok = origin_allowed(&st.config.allowed_origins, &headers);
    let ip = crate::client_addr::client_ip(peer, &headers, &st.config.limits.trusted_proxies);
    if !st.connect_limit.allow(ip) {
        // The bucket holds its next token after one refill interval.
        let retry_after = Duration::from_secs_f64(1.0 / st.config.limits.connects_per_ip_per_sec.max(0.001));
        return Err(refuse(
            "rate_limited",
            ApiError::TooMany { retry_after: retry_after.min(Duration::from_secs(60)) },
        ));
    }
    let header_claims = match bearer(&headers) {
        None => None,
        Some(token) => match st.verify_user(token) {
            Ok(c) => Some(Box::new(c)),
            Err(AuthError::ServiceToken) => {
                st.metrics.auth_failure(AuthError::ServiceToken.code());
                return Err(ApiError::Forbidden(AuthError::ServiceToken.to_string()));
            }
            Err(e) => {
                st.metrics.auth_failure(e.code());
                return Err(ApiError::Unauthenticated(e.to_string()));
            }
        },
    };
    let slot = match OpenSlot::take(&st, ip) {
        Ok(slot) => slot,
        Err(NoSlot::Full) => {
            return Err(refuse("full", ApiError::Unavailable("this gateway is at its connection limit".into())));
        }
        // A place frees when one of the address's sockets closes: no telling when.
        Err(NoSlot::IpFull) => return Err(refuse("ip_connections", ApiError::TooMany { retry_after: IP_FULL_RETRY })),
    };
    let (response, open) = upgrade.accept(st.config.limits.max_frame_bytes);
    let conn = Box::new(Accepted { state: st.clone(), ip, header_claims, origin_ok, _slot: slot });
    // The socket's one task: while the session lives it holds three pointers (the opening, the
    // accepted request, the session), each step's state in its own allocation.
    tokio::spawn(st.sessions.track_future(async move {
        if let Some(socket) = open.await {
            Box::pin(conn.serve(socket)).await;
        }
    }));
    Ok(response)
}

/// An upgrade request that passed every check, waiting for its socket.
struct Accepted {
    state: Arc<AppState>,
    ip: IpAddr,
    /// Boxed: most clients authenticate with `hello` (a browser cannot set the header), and
    /// this is held for the socket's whole life.
    header_claims: Option<Box<Claims>>,
    origin_ok: bool,
    /// Held until the socket closes (its drop frees the place).
    _slot: OpenSlot,
}

impl Accepted {
    /// Taken by reference, not moved apart: a value moved out keeps its place in the future.
    async fn serve(mut self: Box<Self>, mut socket: session::Socket) {
        if self.origin_ok {
            session::run(socket, &self.state, self.ip, self.header_claims.take()).await;
        } else {
            self.state.metrics.refused("origin");
            // Boxed: this rare path's future would otherwise double the room every socket's
            // future keeps.
            Box::pin(session::refuse(&mut socket, close::FORBIDDEN, "forbidden", "this origin is not allowed")).await;
        }
        // The slot goes with `self`, once the socket is closed.
    }
}

fn origin_allowed(allowed: &[String], headers: &HeaderMap) -> bool {
    if allowed.is_empty() {
        return true;
    }
    match headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) {
        // Only browsers send Origin; a server-side client without one is not a CSRF vector.
        None => true,
        Some(origin) => allowed.iter().any(|a| a == origin || a == "*"),
    }
}

pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")).map(str::trim)
}
