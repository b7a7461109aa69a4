//! The WebSocket upgrade (RFC 6455 §4.2), done here rather than by axum's `WebSocketUpgrade`,
//! so that an idle socket costs as little as it can: axum's upgrade task keeps room for the
//! pending upgrade, hyper's connection wrapper and the handshake for the socket's whole life
//! (~0.8 KB per socket, measured), and its socket type keeps hyper's boxed I/O. Here the session
//! owns the bare `TcpStream` (hyper hands it back after the 101) and the caller's task holds a
//! pointer to it.

use std::future::Future;
use std::pin::Pin;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tracing::{debug, error};

use crate::api::error::ApiError;

/// A WebSocket on the connection's own TCP stream.
pub type Ws = crate::ws::WebSocket;

/// The opening of an accepted socket: `None` when the client went away first.
pub type Opening = Pin<Box<dyn Future<Output = Option<Box<Ws>>> + Send>>;

/// A valid upgrade request, not yet answered.
pub struct Upgrade {
    pending: hyper::upgrade::OnUpgrade,
    accept: HeaderValue,
}

impl<S: Send + Sync> FromRequestParts<S> for Upgrade {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        // axum routes HEAD to a GET handler; only a GET upgrades (RFC 6455 §4.1).
        if parts.method != Method::GET {
            return Err(ApiError::invalid("a WebSocket upgrade is a GET"));
        }
        let h = &parts.headers;
        if !has_token(h, header::CONNECTION, "upgrade") || !has_token(h, header::UPGRADE, "websocket") {
            return Err(ApiError::invalid(
                "not a WebSocket upgrade: Connection: upgrade and Upgrade: websocket expected",
            ));
        }
        if h.get(header::SEC_WEBSOCKET_VERSION).is_none_or(|v| v != "13") {
            return Err(ApiError::invalid("Sec-WebSocket-Version: 13 expected"));
        }
        let key = h.get(header::SEC_WEBSOCKET_KEY).ok_or_else(|| ApiError::invalid("Sec-WebSocket-Key missing"))?;
        let accept = HeaderValue::from_str(&derive_accept_key(key.as_bytes())).expect("base64 is a valid header value");
        let pending = parts
            .extensions
            .remove::<hyper::upgrade::OnUpgrade>()
            .ok_or_else(|| ApiError::invalid("this connection cannot be upgraded (HTTP/1.1 expected)"))?;
        Ok(Upgrade { pending, accept })
    }
}

/// Whether a comma-separated header holds `token` (case-insensitive).
fn has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

impl Upgrade {
    /// The 101 answer, and the socket it opens. The opening is boxed and ends once the socket
    /// is open, so a task awaiting it keeps only a pointer's room for it.
    pub fn accept(self, max_message: usize) -> (Response, Opening) {
        let response = Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header(header::CONNECTION, "upgrade")
            .header(header::UPGRADE, "websocket")
            .header(header::SEC_WEBSOCKET_ACCEPT, self.accept)
            .body(axum::body::Body::empty())
            .expect("a valid response");
        (response, Box::pin(open(self.pending, max_message)))
    }
}

async fn open(pending: hyper::upgrade::OnUpgrade, max_message: usize) -> Option<Box<Ws>> {
    let upgraded = match pending.await {
        Ok(u) => u,
        Err(e) => {
            debug!(error = %e, "the upgrade did not complete");
            return None;
        }
    };
    // The gateway's listener hands hyper a `TcpStream` (serve.rs): take it back, with anything
    // the client sent after its request that hyper had already read.
    let parts = match upgraded.downcast::<TokioIo<TcpStream>>() {
        Ok(p) => p,
        Err(_) => {
            error!("an upgraded connection is not a TCP stream; closing it");
            return None;
        }
    };
    let tcp = parts.io.into_inner();
    Some(Box::new(Ws::new(tcp, parts.read_buf.to_vec(), max_message)))
}
