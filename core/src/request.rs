//! What a creator publishes (CONTRACT §2) and its validation.
//!
//! Validation returns a reason a human can act on; it lands on the dead-letter subject with the
//! original body, so it says which field is wrong and why rather than echoing serde's internals.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// A whole request is at most this many bytes.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;
/// Notification, user and team ids are 1 to this many bytes.
pub const MAX_ID_BYTES: usize = 256;

/// A notification request: what a service publishes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NotificationRequest {
    /// The idempotency key, 1 to 256 bytes: every publish of the same id yields one
    /// notification per recipient.
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 256, example = "order-8812-shipped"))]
    pub id: String,
    pub recipients: Recipients,
    #[cfg_attr(feature = "openapi", schema(min_length = 1, example = "order.shipped"))]
    pub kind: String,
    #[cfg_attr(feature = "openapi", schema(example = "Your order has shipped"))]
    pub title: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Any JSON, delivered as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub data: Option<Value>,
    /// RFC 3339; default: when the request was first accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(format = DateTime, example = "2026-11-28T12:00:00Z"))]
    pub created_at: Option<String>,
}

/// Users and teams (expanded to their members when the request is handled); at least one in all.
/// Ids are any UTF-8 strings of 1 to 256 bytes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Recipients {
    #[serde(default)]
    pub users: Vec<String>,
    #[serde(default)]
    pub teams: Vec<String>,
}

/// A request that passed validation, with `created_at` resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidRequest {
    pub request: NotificationRequest,
    pub created_at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidRequest {
    #[error("request is {0} bytes; the limit is {MAX_REQUEST_BYTES}")]
    TooLarge(usize),
    #[error("request is not valid JSON for a notification: {0}")]
    Malformed(String),
    #[error("`id` must be 1 to {MAX_ID_BYTES} bytes")]
    BadId,
    #[error("`recipients` needs at least one user or team")]
    NoRecipients,
    #[error("recipient {field} id must be 1 to {MAX_ID_BYTES} bytes")]
    BadRecipient { field: &'static str },
    #[error("`kind` must be a non-empty string")]
    BadKind,
    #[error("`created_at` must be an RFC 3339 timestamp")]
    BadCreatedAt,
    #[error("the source `{0}` is not a single subject token")]
    BadSource(String),
}

impl InvalidRequest {
    /// A stable, machine-readable name for metrics and the dead-letter header.
    pub fn code(&self) -> &'static str {
        match self {
            Self::TooLarge(_) => "too_large",
            Self::Malformed(_) => "malformed",
            Self::BadId => "bad_id",
            Self::NoRecipients => "no_recipients",
            Self::BadRecipient { .. } => "bad_recipient",
            Self::BadKind => "bad_kind",
            Self::BadCreatedAt => "bad_created_at",
            Self::BadSource(_) => "bad_source",
        }
    }
}

impl NotificationRequest {
    /// Parses and validates a request body as published on `herald.in.<source>`.
    /// `accepted_at` is when the request was first accepted, the default `created_at`.
    pub fn parse(body: &[u8], accepted_at: OffsetDateTime) -> Result<ValidRequest, InvalidRequest> {
        if body.len() > MAX_REQUEST_BYTES {
            return Err(InvalidRequest::TooLarge(body.len()));
        }
        let request: NotificationRequest =
            serde_json::from_slice(body).map_err(|e| InvalidRequest::Malformed(e.to_string()))?;
        request.validate(accepted_at)
    }

    pub fn validate(self, accepted_at: OffsetDateTime) -> Result<ValidRequest, InvalidRequest> {
        if !id_ok(&self.id) {
            return Err(InvalidRequest::BadId);
        }
        if self.recipients.users.is_empty() && self.recipients.teams.is_empty() {
            return Err(InvalidRequest::NoRecipients);
        }
        if !self.recipients.users.iter().all(|u| id_ok(u)) {
            return Err(InvalidRequest::BadRecipient { field: "user" });
        }
        if !self.recipients.teams.iter().all(|t| id_ok(t)) {
            return Err(InvalidRequest::BadRecipient { field: "team" });
        }
        if self.kind.is_empty() {
            return Err(InvalidRequest::BadKind);
        }
        let created_at = match &self.created_at {
            Some(s) => OffsetDateTime::parse(s, &Rfc3339).map_err(|_| InvalidRequest::BadCreatedAt)?,
            None => accepted_at,
        };
        Ok(ValidRequest { request: self, created_at })
    }
}

fn id_ok(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_ID_BYTES
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()
    }

    fn parse(v: Value) -> Result<ValidRequest, InvalidRequest> {
        NotificationRequest::parse(&serde_json::to_vec(&v).unwrap(), now())
    }

    #[test]
    fn accepts_the_contract_example() {
        let v = serde_json::json!({
            "id": "order-8812-shipped",
            "recipients": { "users": ["u-1", "u-2"], "teams": ["team-7"] },
            "kind": "order.shipped", "title": "Your order has shipped",
            "body": "It arrives on Tuesday.", "data": { "order": 8812 },
            "created_at": "2026-11-28T12:00:00Z"
        });
        let ok = parse(v).unwrap();
        assert_eq!(ok.created_at.unix_timestamp(), 1_795_867_200);
        assert_eq!(ok.request.recipients.teams, vec!["team-7"]);
    }

    #[test]
    fn defaults_created_at_to_acceptance() {
        let v = serde_json::json!({"id":"a","recipients":{"users":["u"]},"kind":"k","title":"t"});
        assert_eq!(parse(v).unwrap().created_at, now());
    }

    #[test]
    fn rejects_each_broken_field_with_its_reason() {
        let base = serde_json::json!({"id":"a","recipients":{"users":["u"]},"kind":"k","title":"t"});
        let with = |k: &str, v: Value| {
            let mut b = base.clone();
            b[k] = v;
            parse(b).unwrap_err()
        };
        assert_eq!(with("id", "".into()), InvalidRequest::BadId);
        assert_eq!(with("id", "x".repeat(257).into()), InvalidRequest::BadId);
        assert_eq!(with("recipients", serde_json::json!({})), InvalidRequest::NoRecipients);
        assert_eq!(
            with("recipients", serde_json::json!({"users":[""]})),
            InvalidRequest::BadRecipient { field: "user" }
        );
        assert_eq!(with("kind", "".into()), InvalidRequest::BadKind);
        assert_eq!(with("created_at", "yesterday".into()), InvalidRequest::BadCreatedAt);
        assert!(matches!(with("title", 5.into()), InvalidRequest::Malformed(_)));
        assert!(matches!(NotificationRequest::parse(b"not json", now()), Err(InvalidRequest::Malformed(_))));
        let big = vec![b' '; MAX_REQUEST_BYTES + 1];
        assert_eq!(NotificationRequest::parse(&big, now()), Err(InvalidRequest::TooLarge(big.len())));
    }
}
