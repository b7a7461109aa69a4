//! Subjects and the user-id → subject-token encoding.
//!
//! User ids are any UTF-8 string (dots, `*`, `>`, spaces included), but a NATS subject token may
//! contain none of those. Base64url without padding maps every id to a token of `[A-Za-z0-9_-]`
//! and is injective, so no id can ever share a subject with another id.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Requests from creators: `herald.in.<source>`.
pub const IN_PREFIX: &str = "herald.in.";
/// Stored per-user notifications: `herald.user.<token>` (the `HERALD_USER` stream).
pub const USER_PREFIX: &str = "herald.user.";
/// Live copies the `HERALD_USER` stream republishes after storing: `herald.live.<token>`.
pub const LIVE_PREFIX: &str = "herald.live.";
/// Read-state changes of a user, for every gateway that has a device of theirs:
/// `herald.state.<token>` (core NATS, not stored).
pub const STATE_PREFIX: &str = "herald.state.";
/// Dead letters: `herald.dlq.<source>`.
pub const DLQ_PREFIX: &str = "herald.dlq.";

pub const IN_STREAM: &str = "HERALD_IN";
pub const USER_STREAM: &str = "HERALD_USER";
pub const DLQ_STREAM: &str = "HERALD_DLQ";
/// JetStream's advisories about `HERALD_IN` consumers that gave a message up, captured because
/// advisories themselves are not durable.
pub const ADVISORY_STREAM: &str = "HERALD_ADVISORIES";
/// A message delivered `max_deliver` times without an ack.
pub const MAX_DELIVERIES_ADVISORY: &str = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.HERALD_IN.*";
/// A message terminated (`+TERM`) by a consumer.
pub const TERMINATED_ADVISORY: &str = "$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED.HERALD_IN.*";

/// Reply-inbox prefixes of Herald's own processes. Replies carry data (a Direct Get's answer is
/// a user's notification), so with NATS authorization on each role may read only its own
/// inboxes (`infra/nats/permissions.conf`); creators keep the default `_INBOX`.
pub const GATEWAY_INBOX_PREFIX: &str = "_INBOX_gateway";
pub const FUNCTIONS_INBOX_PREFIX: &str = "_INBOX_functions";
pub const ADMIN_INBOX_PREFIX: &str = "_INBOX_admin";

/// The subject token for an id (user or any other free-form id).
pub fn token(id: &str) -> String {
    URL_SAFE_NO_PAD.encode(id.as_bytes())
}

/// Inverse of [`token`]; `None` when the token was not made by it.
pub fn decode_token(token: &str) -> Option<String> {
    let bytes = URL_SAFE_NO_PAD.decode(token).ok()?;
    String::from_utf8(bytes).ok()
}

pub fn user_subject(user: &str) -> String {
    format!("{USER_PREFIX}{}", token(user))
}

pub fn live_subject(user: &str) -> String {
    format!("{LIVE_PREFIX}{}", token(user))
}

pub fn state_subject(user: &str) -> String {
    format!("{STATE_PREFIX}{}", token(user))
}

pub fn in_subject(source: &str) -> String {
    format!("{IN_PREFIX}{source}")
}

pub fn dlq_subject(source: &str) -> String {
    format!("{DLQ_PREFIX}{source}")
}

/// The `<source>` of a `herald.in.<source>` subject. A subject with more tokens after the prefix
/// (`herald.in.a.b`) still names one source, `a.b`, so nothing a creator sends is unroutable.
pub fn source_of(subject: &str) -> Option<&str> {
    subject.strip_prefix(IN_PREFIX).filter(|s| !s.is_empty())
}

/// Whether `source` is usable as the single subject token the contract asks for.
pub fn is_valid_source(source: &str) -> bool {
    !source.is_empty() && source.bytes().all(|b| b.is_ascii_graphic() && b != b'.' && b != b'*' && b != b'>')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_subject_safe_and_distinct() {
        let ids = ["a", "a.b", "a*", "a>", "a b", "ä", "a.", ".a", "*", ">", "é", "e\u{301}"];
        let mut seen = std::collections::HashSet::new();
        for id in ids {
            let t = token(id);
            assert!(t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'), "{t}");
            assert!(seen.insert(t.clone()), "collision for {id:?}");
            assert_eq!(decode_token(&t).as_deref(), Some(id));
        }
    }

    #[test]
    fn source_parsing() {
        assert_eq!(source_of("herald.in.billing"), Some("billing"));
        assert_eq!(source_of("herald.in."), None);
        assert_eq!(source_of("herald.user.x"), None);
        assert!(is_valid_source("billing-2"));
        assert!(!is_valid_source("a.b"));
        assert!(!is_valid_source(""));
    }
}
