//! `POST /v1/notifications`: the publish request of CONTRACT §2 over HTTP, for services without
//! a NATS client.
//!
//! The body is validated by the same code the functions run (so a 400 names the same reason a
//! dead letter would), then published as received to `herald.in.<source>` with `Nats-Msg-Id` =
//! its `id`: the stream's deduplication makes a retried POST, or a POST racing a NATS publish of
//! the same id, one notification. The answer reports whether the id was already stored.

use std::sync::Arc;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use herald_core::{InvalidRequest, MAX_REQUEST_BYTES, NotificationRequest};
use serde::Serialize;
use utoipa::ToSchema;

use super::auth::{Publish, Service};
use super::error::{ApiError, ErrorBody};
use crate::state::AppState;

/// The answer to an accepted publish.
#[derive(Debug, Serialize, ToSchema)]
pub struct Accepted {
    /// The notification's id, as published.
    pub id: String,
    /// True when a request with this id had already been accepted: nothing new was stored.
    pub duplicate: bool,
}

pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

#[utoipa::path(
    post,
    path = "/v1/notifications",
    tag = "publishing",
    summary = "Publish a notification",
    description = "Publishes the request of the publishing protocol (docs/protocol.md) to \
        `herald.in.<source>`, `<source>` being the service token's `sub` with every character \
        outside `[A-Za-z0-9_-]` replaced by `_`. Idempotent by `id`: publishing the same `id` again, \
        from here or over NATS, makes no second notification and answers `duplicate: true`.",
    request_body(content = NotificationRequest, description = "At most 64 KiB.", content_type = "application/json"),
    params(
        ("Idempotency-Key" = Option<String>, Header, description = "Optional; must equal the body's `id`."),
    ),
    responses(
        (status = 202, description = "Accepted (stored in `HERALD_IN`).", body = Accepted),
        (status = 400, description = "Not a valid request; the message says why.", body = ErrorBody),
        (status = 401, description = "No service token, or a bad one.", body = ErrorBody),
        (status = 403, description = "A user token, or a service token without the `publish` scope.", body = ErrorBody),
        (status = 413, description = "Over 64 KiB.", body = ErrorBody),
        (status = 429, description = "Over the service's rate limit; see `Retry-After`.", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait."))),
        (status = 503, description = "NATS did not store the request in time; retry with the same id.", body = ErrorBody),
    ),
    security(("service_token" = ["publish"])),
)]
pub async fn publish(
    State(st): State<Arc<AppState>>,
    Service(claims, _): Service<Publish>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    // One byte past the limit is enough to know the body is too large.
    let body: Bytes = axum::body::to_bytes(body, MAX_REQUEST_BYTES + 1).await.map_err(|_| too_large())?;
    let valid = NotificationRequest::parse(&body, time::OffsetDateTime::now_utc()).map_err(|e| match e {
        InvalidRequest::TooLarge(_) => too_large(),
        e => ApiError::Invalid { code: e.code(), message: e.to_string() },
    })?;
    let id = valid.request.id;
    if let Some(key) = headers.get(IDEMPOTENCY_KEY)
        && key.to_str().ok() != Some(id.as_str())
    {
        return Err(ApiError::Invalid {
            code: "idempotency_key",
            message: "the Idempotency-Key header must equal the request's id".into(),
        });
    }
    let source = source_of(&claims.sub);
    let published =
        tokio::time::timeout(st.config.api.publish_timeout, st.api.publisher.publish_raw(&source, &id, body))
            .await
            .map_err(|_| {
                ApiError::Unavailable("NATS did not store the request in time; retry with the same id".into())
            })?
            .map_err(|e| ApiError::Unavailable(format!("{e}; retry with the same id")))?;
    Ok((StatusCode::ACCEPTED, Json(Accepted { id, duplicate: published.duplicate })))
}

fn too_large() -> ApiError {
    ApiError::TooLarge(format!("a request is at most {MAX_REQUEST_BYTES} bytes"))
}

/// The `<source>` of a service: its `sub`, made one subject token. Several services may map to
/// one source; a source only labels dead letters and metrics, so that is harmless.
pub fn source_of(sub: &str) -> String {
    let s: String =
        sub.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect();
    if s.is_empty() { "service".into() } else { s }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_service_sub_becomes_one_valid_subject_token() {
        assert_eq!(source_of("billing"), "billing");
        assert_eq!(source_of("billing.v2 eu/1"), "billing_v2_eu_1");
        assert_eq!(source_of("é>*"), "___");
        for sub in ["billing", "a.b", "*", ">", "x y", "ü"] {
            assert!(herald_core::subject::is_valid_source(&source_of(sub)), "{sub}");
        }
    }
}
