//! The admin API: revoke a user or a token id on every gateway, and list revocations.
//! Served on the internal plane only. Callers present an admin token: signed with the admin key
//! (`HERALD_ADMIN_JWT_SECRET`, never the user-token key), `scope` containing `admin`, and not
//! revoked (its `sub` or `jti` can be revoked like a user's).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api::error::ApiError;
use crate::http::bearer;
use crate::revocation::{self, Revocation, Target};
use crate::state::AppState;

fn authorize(st: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let token = bearer(headers).ok_or_else(|| ApiError::Unauthenticated("an admin token is required".into()))?;
    let verifier = st
        .admin_verifier
        .as_ref()
        .ok_or_else(|| ApiError::Unauthenticated("the admin API is off: set HERALD_ADMIN_JWT_SECRET".into()))?;
    let claims = verifier.verify(token).map_err(|e| ApiError::Unauthenticated(e.to_string()))?;
    if st.revocations.is_revoked(&claims) {
        return Err(ApiError::Unauthenticated("token was revoked".into()));
    }
    if !claims.has_scope("admin") {
        return Err(ApiError::Forbidden("the token's scope lacks admin".into()));
    }
    Ok(())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokeRequest {
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    jti: Option<String>,
    #[serde(default)]
    reason: String,
}

pub async fn revoke(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Json<RevokeRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    authorize(&st, &headers)?;
    let Json(req) = body?;
    let (target, id) = match (&req.user, &req.jti) {
        (Some(u), None) if !u.is_empty() => (Target::User, u.as_str()),
        (None, Some(j)) if !j.is_empty() => (Target::TokenId, j.as_str()),
        _ => {
            return Err(ApiError::invalid("give exactly one of user or jti"));
        }
    };
    let at = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let r = Revocation { at, reason: req.reason.clone() };
    revocation::revoke(&st.revocation_store, target, id, &r).await.map_err(|e| ApiError::Unavailable(e.to_string()))?;
    tracing::info!(target = ?target, reason = %r.reason, "revoked");
    Ok((StatusCode::CREATED, Json(entry(target, id, &r))))
}

pub async fn list(State(st): State<Arc<AppState>>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    authorize(&st, &headers)?;
    let items: Vec<Value> = st.revocations.list().iter().map(|(t, id, r)| entry(*t, id, r)).collect();
    Ok(Json(json!({ "revocations": items })))
}

fn entry(target: Target, id: &str, r: &Revocation) -> Value {
    let key = match target {
        Target::User => "user",
        Target::TokenId => "jti",
    };
    json!({ key: id, "at": r.at, "reason": r.reason })
}
