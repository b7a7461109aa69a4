//! The demo inbox page (`HERALD_DEMO=1`): `/` serves a page built on the JavaScript client, whose
//! compiled modules are embedded in the binary, so a gateway is all a new user needs to see
//! Herald work. With `HERALD_DEV_TOKENS=1` too (development only: `scripts/run` sets it), the
//! page may mint a user token for any typed name (`POST /demo/token`); never in production.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use jsonwebtoken::{EncodingKey, Header, encode};
use serde::Deserialize;
use serde_json::json;

use crate::api::error::ApiError;
use crate::keys::KeySource;
use crate::state::AppState;

const PAGE: &str = include_str!("../demo/index.html");
const APP: &str = include_str!("../demo/app.js");
const STYLE: &str = include_str!("../demo/style.css");

/// The client's compiled modules (`clients/js/dist`, committed; `npm run build` rewrites them).
const CLIENT: [(&str, &str); 9] = [
    ("index.js", include_str!("../../clients/js/dist/index.js")),
    ("backoff.js", include_str!("../../clients/js/dist/backoff.js")),
    ("client.js", include_str!("../../clients/js/dist/client.js")),
    ("connection.js", include_str!("../../clients/js/dist/connection.js")),
    ("inbox.js", include_str!("../../clients/js/dist/inbox.js")),
    ("protocol.js", include_str!("../../clients/js/dist/protocol.js")),
    ("share.js", include_str!("../../clients/js/dist/share.js")),
    ("storage.js", include_str!("../../clients/js/dist/storage.js")),
    ("view.js", include_str!("../../clients/js/dist/view.js")),
];

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route("/demo/app.js", get(|| async { js(APP) }))
        .route("/demo/style.css", get(|| async { ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE) }))
        .route("/demo/herald/{file}", get(client_module))
        .route("/demo/config", get(config))
        .route("/demo/token", post(mint))
}

fn js(body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], body).into_response()
}

async fn client_module(Path(file): Path<String>) -> Response {
    match CLIENT.iter().find(|(name, _)| *name == file) {
        Some((_, body)) => js(body),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// What the page may do here.
async fn config(State(st): State<Arc<AppState>>) -> Json<serde_json::Value> {
    Json(json!({"mint": minting_secret(&st).is_some()}))
}

fn minting_secret(st: &AppState) -> Option<&str> {
    match &st.config.auth.keys {
        KeySource::Secret { secret, .. } if st.config.dev_tokens => Some(secret.expose()),
        _ => None,
    }
}

#[derive(Deserialize)]
struct MintRequest {
    user: String,
    /// Lifetime in seconds (60 to 86 400; default 3600).
    ttl_seconds: Option<u64>,
}

async fn mint(
    State(st): State<Arc<AppState>>,
    body: Result<Json<MintRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Json(req) = body?;
    let Some(secret) = minting_secret(&st) else {
        return Err(ApiError::NotFound("token minting is for development only".into()));
    };
    let user = req.user.trim();
    if user.is_empty() || user.len() > 256 {
        return Err(ApiError::invalid("a user name is 1 to 256 bytes"));
    }
    let ttl = req.ttl_seconds.unwrap_or(3600).clamp(60, 86_400);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let claims = json!({"sub": user, "aud": st.config.auth.audience, "iat": now, "exp": now + ttl});
    let token = encode(&Header::default(), &claims, &EncodingKey::from_secret(secret.as_bytes()))
        .map_err(|e| ApiError::Internal(format!("signing the token: {e}")))?;
    Ok(Json(json!({"token": token, "user": user, "expires_at": now + ttl})))
}
