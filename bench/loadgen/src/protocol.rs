//! The two client protocols the load generator speaks over one WebSocket: Herald's JSON frames
//! (CONTRACT.md §3) and Socket.IO 4's framing (engine.io v4 packets carrying socket.io packets),
//! written out by hand so one Rust client drives both systems at the same cost.

use serde::Deserialize;
use serde_json::{Value, json};

use crate::wire::{Stamp, System};

/// What a text frame from the server means to the load generator.
#[derive(Debug)]
pub enum Incoming {
    /// A bench notification; Herald's carries its cursor.
    Notification {
        stamp: Stamp,
        cursor: Option<String>,
    },
    /// Herald `welcome` (with the cursor where delivery on this connection starts, which a
    /// client that has received nothing yet resumes from) or the socket.io `CONNECT` ack.
    Welcome {
        cursor: Option<String>,
    },
    /// Herald `replayed`: everything missed since the `hello` cursor has been sent.
    Replayed,
    /// Herald `unread`: the first one ends the session's start (it follows `welcome` and any
    /// replay, once the count is read from the store).
    Unread,
    /// engine.io `open` (the first packet; the client answers with the socket.io `CONNECT`).
    Open,
    /// engine.io ping: the client must answer `3`.
    Ping,
    /// Herald `reset`: the `hello` cursor is too old or unknown; what was missed is not replayed.
    Reset,
    /// Refused or failed: an `error` frame or a socket.io `CONNECT_ERROR`.
    Refused(String),
    Other,
}

impl System {
    /// The WebSocket URL on `target` (`host:port`).
    pub fn url(self, target: &str) -> String {
        match self {
            System::Herald => format!("ws://{target}/v1/ws"),
            System::SocketIo => format!("ws://{target}/socket.io/?EIO=4&transport=websocket"),
        }
    }

    /// The client's first frame for Herald (`hello`, with the cursor on a reconnect); Socket.IO
    /// speaks first, so its auth packet waits for [`Incoming::Open`].
    pub fn hello(self, token: &str, cursor: Option<&str>) -> Option<String> {
        match self {
            System::Herald => Some(json!({"type": "hello", "token": token, "cursor": cursor}).to_string()),
            System::SocketIo => None,
        }
    }

    /// The socket.io `CONNECT` packet to the main namespace, with the token as `auth`.
    pub fn socketio_connect(token: &str) -> String {
        format!("40{}", json!({ "token": token }))
    }

    pub fn parse(self, text: &str) -> Incoming {
        match self {
            System::Herald => parse_herald(text),
            System::SocketIo => parse_socketio(text),
        }
    }
}

#[derive(Deserialize)]
struct HeraldFrame {
    #[serde(rename = "type")]
    kind: String,
    cursor: Option<String>,
    notification: Option<HeraldNotification>,
    code: Option<String>,
}

#[derive(Deserialize)]
struct HeraldNotification {
    data: Option<Value>,
}

fn stamp_of(data: Option<Value>) -> Option<Stamp> {
    data.and_then(|d| serde_json::from_value(d).ok())
}

fn parse_herald(text: &str) -> Incoming {
    let Ok(frame) = serde_json::from_str::<HeraldFrame>(text) else {
        return Incoming::Other;
    };
    match frame.kind.as_str() {
        "notification" => match stamp_of(frame.notification.and_then(|n| n.data)) {
            Some(stamp) => Incoming::Notification { stamp, cursor: frame.cursor },
            None => Incoming::Other,
        },
        "welcome" => Incoming::Welcome { cursor: frame.cursor },
        "replayed" => Incoming::Replayed,
        "unread" => Incoming::Unread,
        "error" => Incoming::Refused(frame.code.unwrap_or_default()),
        "reset" => Incoming::Reset,
        _ => Incoming::Other,
    }
}

fn parse_socketio(text: &str) -> Incoming {
    // engine.io: 0 open, 2 ping, 4 message (then the socket.io packet: 0 CONNECT, 2 EVENT, 4 CONNECT_ERROR).
    match text.as_bytes() {
        [b'0', ..] => Incoming::Open,
        [b'2', ..] => Incoming::Ping,
        [b'4', b'0', ..] => Incoming::Welcome { cursor: None },
        [b'4', b'4', ..] => Incoming::Refused(text[2..].to_owned()),
        [b'4', b'2', ..] => {
            let Ok(Value::Array(mut parts)) = serde_json::from_str::<Value>(&text[2..]) else {
                return Incoming::Other;
            };
            if parts.len() < 2 || parts[0] != "notification" {
                return Incoming::Other;
            }
            match stamp_of(parts.swap_remove(1).get_mut("data").map(Value::take)) {
                Some(stamp) => Incoming::Notification { stamp, cursor: None },
                None => Incoming::Other,
            }
        }
        _ => Incoming::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_systems_notifications() {
        let h = r#"{"type":"notification","cursor":"7","replay":false,"notification":{"id":"a","data":{"sent_us":5,"p":1,"seq":2}}}"#;
        assert!(
            matches!(System::Herald.parse(h), Incoming::Notification { stamp: Stamp { seq: 2, .. }, cursor: Some(c) } if c == "7")
        );
        let s = r#"42["notification",{"id":"a","data":{"sent_us":5,"p":1,"seq":3}}]"#;
        assert!(matches!(System::SocketIo.parse(s), Incoming::Notification { stamp: Stamp { seq: 3, .. }, .. }));
        assert!(matches!(System::SocketIo.parse("2"), Incoming::Ping));
        assert!(matches!(System::SocketIo.parse(r#"40{"sid":"x"}"#), Incoming::Welcome { cursor: None }));
        let w = r#"{"type":"welcome","user":"u1","session":"s","expires_at":1,"cursor":"42"}"#;
        assert!(matches!(System::Herald.parse(w), Incoming::Welcome { cursor: Some(c) } if c == "42"));
        assert!(matches!(System::Herald.parse(r#"{"type":"reset","reason":"gone"}"#), Incoming::Reset));
        assert!(matches!(System::SocketIo.parse(r#"44{"message":"unauthorized"}"#), Incoming::Refused(_)));
    }
}
