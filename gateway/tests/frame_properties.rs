//! Property tests of the WebSocket frames: any text a client sends gets an answer (a frame or
//! an error that never quotes it back), the frames the server writes are valid JSON that says
//! what was meant, and cursors survive the round trip.

use herald_core::Cursor;
use herald_gateway::protocol::{self, ClientFrame};
use proptest::prelude::*;
use serde_json::{Value, json};

proptest! {
    #[test]
    fn any_text_gets_an_answer_that_never_quotes_it(text in "\\PC{0,200}") {
        if let Err(e) = ClientFrame::parse(&text) {
            // A token in a broken frame must not reach the logs through the error.
            prop_assert!(e == "unknown frame type or bad field" || e == "not a JSON frame", "{}", e);
        }
    }

    #[test]
    fn hello_refresh_and_ack_round_trip(token in prop::option::of("\\PC{0,80}"), cursor in prop::option::of("\\PC{0,40}")) {
        let hello = json!({"type": "hello", "token": token, "cursor": cursor}).to_string();
        prop_assert_eq!(ClientFrame::parse(&hello), Ok(ClientFrame::Hello { token: token.clone(), cursor: cursor.clone() }));
        if let Some(t) = token {
            let refresh = json!({"type": "refresh", "token": t}).to_string();
            prop_assert_eq!(ClientFrame::parse(&refresh), Ok(ClientFrame::Refresh { token: t }));
        }
        if let Some(c) = cursor {
            let ack = json!({"type": "ack", "cursor": c}).to_string();
            prop_assert_eq!(ClientFrame::parse(&ack), Ok(ClientFrame::Ack { cursor: c }));
        }
    }

    #[test]
    fn frames_of_other_types_are_refused(kind in "[a-z_]{1,12}") {
        prop_assume!(!["hello", "refresh", "ack"].contains(&kind.as_str()));
        let frame = json!({"type": kind, "token": "t", "cursor": "1"}).to_string();
        prop_assert!(ClientFrame::parse(&frame).is_err());
    }

    #[test]
    fn notification_frames_carry_the_cursor_and_the_payload(
        epoch in 1u64..4_000_000_000,
        seq in any::<u64>(),
        replay in any::<bool>(),
        id in "\\PC{0,40}",
        title in "\\PC{0,80}",
    ) {
        let payload = json!({"id": id, "title": title, "read": false}).to_string();
        let cursor = Cursor::new(epoch, seq);
        let frame: Value = serde_json::from_str(&protocol::notification(cursor, replay, &payload)).expect("valid JSON");
        prop_assert_eq!(&frame["type"], "notification");
        prop_assert_eq!(&frame["replay"], replay);
        prop_assert_eq!(frame["cursor"].as_str().and_then(protocol::parse_cursor), Some(cursor));
        prop_assert_eq!(&frame["notification"]["id"], &Value::String(id));
    }

    #[test]
    fn cursors_parse_back_and_keep_their_order(a in (1u64..4_000_000_000, any::<u64>()), b in (1u64..4_000_000_000, any::<u64>())) {
        let (ca, cb) = (Cursor::new(a.0, a.1), Cursor::new(b.0, b.1));
        let (sa, sb) = (ca.to_string(), cb.to_string());
        prop_assert_eq!(protocol::parse_cursor(&sa), Some(ca));
        // Clients compare cursors as decimal numbers: longer is newer, then by text.
        prop_assert_eq!((sa.len(), &sa).cmp(&(sb.len(), &sb)), ca.cmp(&cb));
    }

    #[test]
    fn arbitrary_cursor_text_never_panics(text in "\\PC{0,50}") {
        let _ = protocol::parse_cursor(&text);
    }
}
