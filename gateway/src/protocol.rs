//! The WebSocket frames of CONTRACT §3: what clients send, and how the server's are written.
//!
//! Outbound frames are built as strings: a notification's payload is already the JSON of its
//! `notification` object (stored so by the function), so pushing one is a copy, not a parse.

use herald_core::cursor::Cursor;
use serde::Deserialize;
use serde_json::json;

/// Close codes (CONTRACT §3).
pub mod close {
    pub const UNAUTHENTICATED: u16 = 4001;
    pub const FORBIDDEN: u16 = 4003;
    pub const PROTOCOL: u16 = 4008;
    pub const TOO_SLOW: u16 = 4029;
    pub const GOING_AWAY: u16 = 1001;
    pub const INTERNAL: u16 = 1011;
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientFrame {
    Hello {
        #[serde(default)]
        token: Option<String>,
        #[serde(default)]
        cursor: Option<String>,
    },
    Refresh {
        token: String,
    },
    Ack {
        cursor: String,
    },
}

impl ClientFrame {
    pub fn parse(text: &str) -> Result<Self, String> {
        serde_json::from_str(text).map_err(|e| {
            // serde's message can quote the frame (and a token in it); keep only its category.
            let what = if e.is_data() { "unknown frame type or bad field" } else { "not a JSON frame" };
            what.to_owned()
        })
    }
}

/// `cursor` (an addition to the contract's frame) is where a first connection starts: a client
/// that has received nothing yet resumes from it after a reconnect, so what arrives in between
/// is not lost. `"0"` means the user had nothing stored yet.
pub fn welcome(user: &str, session: &str, expires_at: u64, cursor: Option<Cursor>) -> String {
    let mut v = json!({"type": "welcome", "user": user, "session": session, "expires_at": expires_at});
    if let Some(c) = cursor {
        v["cursor"] = json!(c.to_string());
    }
    v.to_string()
}

/// `payload` is the stored notification object's JSON.
pub fn notification(cursor: Cursor, replay: bool, payload: &str) -> String {
    let mut s = String::with_capacity(payload.len() + 64);
    s.push_str(r#"{"type":"notification","cursor":""#);
    s.push_str(cursor.to_string().as_str());
    s.push_str(if replay { r#"","replay":true,"notification":"# } else { r#"","replay":false,"notification":"# });
    s.push_str(payload);
    s.push('}');
    s
}

pub fn replayed(cursor: Option<Cursor>, count: u64) -> String {
    json!({"type": "replayed", "cursor": cursor.map(|c| c.to_string()), "count": count}).to_string()
}

/// The user's unread count (after `welcome`, after `replayed`, and when it changes).
pub fn unread(count: u64) -> String {
    json!({"type": "unread", "count": count}).to_string()
}

pub fn reset(reason: &str) -> String {
    json!({"type": "reset", "reason": reason}).to_string()
}

pub fn token_expiring(expires_at: u64) -> String {
    json!({"type": "token_expiring", "expires_at": expires_at}).to_string()
}

pub fn reconnect(after_ms: u64, reason: &str) -> String {
    json!({"type": "reconnect", "after_ms": after_ms, "reason": reason}).to_string()
}

pub fn error(code: &str, message: &str) -> String {
    json!({"type": "error", "code": code, "message": message}).to_string()
}

/// Cursors are opaque to clients; see [`Cursor`] for their form (`0`: before the user's first
/// notification).
pub fn parse_cursor(cursor: &str) -> Option<Cursor> {
    cursor.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notification_frames_are_valid_json() {
        let f = notification(Cursor { epoch: None, seq: 42 }, true, r#"{"id":"a","read":false}"#);
        let v: serde_json::Value = serde_json::from_str(&f).unwrap();
        assert_eq!(v["type"], "notification");
        assert_eq!(v["cursor"], "42");
        assert_eq!(v["replay"], true);
        assert_eq!(v["notification"]["id"], "a");
    }

    #[test]
    fn parses_client_frames_and_refuses_others() {
        assert_eq!(
            ClientFrame::parse(r#"{"type":"hello","token":"t"}"#).unwrap(),
            ClientFrame::Hello { token: Some("t".into()), cursor: None }
        );
        assert_eq!(
            ClientFrame::parse(r#"{"type":"hello","cursor":null}"#).unwrap(),
            ClientFrame::Hello { token: None, cursor: None }
        );
        assert!(ClientFrame::parse(r#"{"type":"subscribe"}"#).is_err());
        assert!(ClientFrame::parse("{").is_err());
        assert_eq!(parse_cursor("0"), Some(Cursor { epoch: None, seq: 0 }));
        assert_eq!(parse_cursor("-1"), None);
        assert_eq!(parse_cursor("abc"), None);
        assert_eq!(parse_cursor("17"), Some(Cursor { epoch: None, seq: 17 }));
        let c = Cursor::new(1_796_000_000, 17);
        assert_eq!(parse_cursor(&c.to_string()), Some(c));
    }
}
