//! What a recipient receives: the stored, pushed and replayed form of a notification, and the
//! NATS header names that travel with it.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::ValidRequest;
use crate::subject::token;

/// Unix milliseconds at which the request was first accepted by `HERALD_IN`; the start of the
/// publish→push latency the gateway measures.
pub const HDR_ACCEPTED_AT: &str = "Herald-Accepted-At";
/// On a per-user copy in `HERALD_USER`: `"1"` when the user had muted the notification's kind.
/// The copy has a cursor like any other (the inbox and the socket share one cursor space), but
/// gateways neither push nor replay it.
pub const HDR_MUTED: &str = "Herald-Muted";
/// On a dead letter: the machine-readable reason code.
pub const HDR_REASON_CODE: &str = "Herald-Reason-Code";
/// On a dead letter: the reason in words.
pub const HDR_REASON: &str = "Herald-Reason";
/// On a dead letter: the producing service.
pub const HDR_SOURCE: &str = "Herald-Source";
/// On a dead letter: the `HERALD_IN` stream sequence of the original request.
pub const HDR_ORIGINAL_SEQ: &str = "Herald-Original-Seq";
/// On a dead letter: how many times the request was delivered before it was given up.
pub const HDR_DELIVERIES: &str = "Herald-Deliveries";
/// On a re-driven request: the `HERALD_IN` sequence of the request it re-drives.
pub const HDR_REDRIVE_OF: &str = "Herald-Redrive-Of";

/// The notification object of a `notification` frame (CONTRACT §3) and of an inbox item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Notification {
    pub id: String,
    pub kind: String,
    pub title: String,
    pub body: Option<String>,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub data: Option<Value>,
    /// RFC 3339.
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub created_at: String,
    /// The read state for this user, as of when it was sent.
    pub read: bool,
}

impl Notification {
    pub fn from_request(valid: &ValidRequest) -> Self {
        let r = &valid.request;
        Notification {
            id: r.id.clone(),
            kind: r.kind.clone(),
            title: r.title.clone(),
            body: r.body.clone(),
            data: r.data.clone(),
            created_at: rfc3339(valid.created_at),
            read: false,
        }
    }
}

/// RFC 3339 in UTC with the precision it was given.
pub fn rfc3339(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC).format(&Rfc3339).expect("an OffsetDateTime in UTC always formats as RFC 3339")
}

/// The `Nats-Msg-Id` of a notification's copy for one user. Both parts are encoded so that the
/// pair is unambiguous and header-safe whatever bytes the ids hold.
pub fn user_msg_id(user: &str, id: &str) -> String {
    format!("{}.{}", token(user), token(id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_msg_ids_do_not_collide_across_splits() {
        assert_ne!(user_msg_id("a.b", "c"), user_msg_id("a", "b.c"));
        assert!(user_msg_id("x\r\n", "y\n").bytes().all(|b| b.is_ascii_graphic()));
    }

    #[test]
    fn serializes_every_contract_field() {
        let n = Notification {
            id: "i".into(),
            kind: "k".into(),
            title: "t".into(),
            body: None,
            data: None,
            created_at: "2026-11-28T12:00:00Z".into(),
            read: false,
        };
        let v = serde_json::to_value(&n).unwrap();
        for f in ["id", "kind", "title", "body", "data", "created_at", "read"] {
            assert!(v.get(f).is_some(), "{f}");
        }
    }
}
