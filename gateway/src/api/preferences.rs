//! The calling user's preferences: the kinds they muted (stored, already read, neither pushed
//! nor replayed, not counted). The functions read them for every notification they handle, so a
//! change applies from the next one.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use herald_core::MAX_ID_BYTES;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::User;
use super::error::{ApiError, ErrorBody};
use super::inbox::unavailable;
use crate::state::AppState;

/// Kinds one user may mute.
const MAX_MUTED: usize = 100;

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Preferences {
    /// Kinds stored but not pushed, replayed or counted (at most 100, each 1 to 256 bytes).
    #[schema(max_items = 100)]
    pub muted_kinds: Vec<String>,
}

#[utoipa::path(
    get,
    path = "/v1/preferences",
    tag = "preferences",
    summary = "The user's preferences",
    responses(
        (status = 200, body = Preferences),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 429, body = ErrorBody, headers(("Retry-After" = u64))),
        (status = 503, body = ErrorBody),
    ),
    security(("user_token" = [])),
)]
pub async fn get(State(st): State<Arc<AppState>>, User(claims): User) -> Result<Json<Preferences>, ApiError> {
    Ok(Json(Preferences { muted_kinds: st.api.store.muted_kinds(&claims.sub).await.map_err(unavailable)? }))
}

#[utoipa::path(
    put,
    path = "/v1/preferences",
    tag = "preferences",
    summary = "Replace the user's preferences",
    request_body = Preferences,
    responses(
        (status = 200, description = "The stored preferences.", body = Preferences),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 413, body = ErrorBody),
        (status = 429, body = ErrorBody, headers(("Retry-After" = u64))),
        (status = 503, body = ErrorBody),
    ),
    security(("user_token" = [])),
)]
pub async fn put(
    State(st): State<Arc<AppState>>,
    User(claims): User,
    body: Result<Json<Preferences>, JsonRejection>,
) -> Result<Json<Preferences>, ApiError> {
    let Json(mut prefs) = body?;
    if prefs.muted_kinds.len() > MAX_MUTED {
        return Err(ApiError::invalid(format!("at most {MAX_MUTED} muted kinds")));
    }
    if prefs.muted_kinds.iter().any(|k| k.is_empty() || k.len() > MAX_ID_BYTES) {
        return Err(ApiError::invalid(format!("a kind is 1 to {MAX_ID_BYTES} bytes")));
    }
    prefs.muted_kinds.sort();
    prefs.muted_kinds.dedup();
    st.api.store.set_muted_kinds(&claims.sub, &prefs.muted_kinds).await.map_err(unavailable)?;
    Ok(Json(prefs))
}
