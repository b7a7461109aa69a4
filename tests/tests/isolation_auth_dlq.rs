//! Who gets what: ids that look like subject syntax stay apart, bad tokens are refused with
//! 4001, and invalid requests land on the dead-letter stream with their reason.

use std::time::Duration;

use async_nats::jetstream::consumer::{DeliverPolicy, pull};
use futures::StreamExt;
use herald_client::{Connection, Event, token};
use herald_core::notification::{HDR_REASON, HDR_REASON_CODE};
use herald_tests::stack::{AUDIENCE, SECRET, drain_events, next_event};
use herald_tests::{Stack, StackOptions};
use serde_json::json;

#[tokio::test]
async fn ids_with_subject_syntax_never_receive_each_others_notifications() -> anyhow::Result<()> {
    let stack = Stack::start(StackOptions::default()).await?;
    let users = ["a.b", "a", "a.*", "*", ">", "a.>", "a b", "a  b", "élodie", "Élodie", "用户", "a.b.c"];
    let mut conns = Vec::new();
    for u in users {
        conns.push(stack.connect(u, None).await?);
    }
    for u in users {
        stack.publish(&format!("for {u}"), &[u]).await?;
    }
    for (u, c) in users.iter().zip(conns.iter_mut()) {
        let events = drain_events(c, Duration::from_millis(700)).await;
        let got: Vec<String> = events
            .iter()
            .filter_map(|e| match e {
                Event::Notification { notification, .. } => Some(notification.id.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(got, [format!("for {u}")], "user {u:?}");
        assert_eq!(stack.stored(u, &format!("for {u}")).await?, 1);
    }
    Ok(())
}

async fn refused(stack: &Stack, token: &str) -> anyhow::Result<(Option<u16>, Vec<Event>)> {
    let mut c = Connection::connect(&stack.ws_url(0), token, None).await?;
    let events = drain_events(&mut c, Duration::from_secs(2)).await;
    let code = events.iter().find_map(|e| match e {
        Event::Closed { code, .. } => *code,
        _ => None,
    });
    Ok((code, events))
}

#[tokio::test]
async fn bad_tokens_are_refused_with_4001() -> anyhow::Result<()> {
    let stack = Stack::start(StackOptions::default()).await?;
    let now = token::now_secs();
    let b64 = |v: serde_json::Value| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let cases = [
        ("wrong key", token::sign("another-secret", &json!({"sub":"u","aud":AUDIENCE,"exp":now+600}))),
        ("expired", token::sign(SECRET, &json!({"sub":"u","aud":AUDIENCE,"exp":now-600}))),
        ("no exp", token::sign(SECRET, &json!({"sub":"u","aud":AUDIENCE}))),
        ("other aud", token::sign(SECRET, &json!({"sub":"u","aud":"someone-else","exp":now+600}))),
        ("no aud", token::sign(SECRET, &json!({"sub":"u","exp":now+600}))),
        (
            "alg none",
            format!(
                "{}.{}.",
                b64(json!({"alg":"none","typ":"JWT"})),
                b64(json!({"sub":"u","aud":AUDIENCE,"exp":now+600}))
            ),
        ),
        ("garbage", "not-a-jwt".to_owned()),
        ("empty sub", token::sign(SECRET, &json!({"sub":"","aud":AUDIENCE,"exp":now+600}))),
    ];
    for (what, t) in cases {
        let (code, events) = refused(&stack, &t).await?;
        assert_eq!(code, Some(4001), "{what}: {events:?}");
        assert!(
            events.iter().any(|e| matches!(e, Event::Error { code, .. } if code == "unauthenticated")),
            "{what}: an error frame first"
        );
        assert!(!events.iter().any(|e| matches!(e, Event::Welcome { .. })), "{what}");
    }
    // The good token still works on the same gateway.
    let mut ok = stack.connect("u", None).await?;
    stack.publish("still-serving", &["u"]).await?;
    assert!(matches!(next_event(&mut ok).await?, Event::Notification { .. }));
    Ok(())
}

#[tokio::test]
async fn invalid_requests_land_on_the_dlq_with_their_reason() -> anyhow::Result<()> {
    let stack = Stack::start(StackOptions::default()).await?;
    let cases = [
        ("no-recipients", json!({"id":"x1","recipients":{},"kind":"k","title":"t"}).to_string(), "no_recipients"),
        ("no-title", json!({"id":"x2","recipients":{"users":["u"]},"kind":"k"}).to_string(), "malformed"),
        ("not-json", "{oops".to_owned(), "malformed"),
        (
            "bad-date",
            json!({"id":"x4","recipients":{"users":["u"]},"kind":"k","title":"t","created_at":"soon"}).to_string(),
            "bad_created_at",
        ),
    ];
    for (id, body, _) in &cases {
        stack.publisher.publish_raw("billing", id, body.clone().into()).await?;
    }
    // A valid one after them is still delivered: bad input loses nothing else.
    stack.publish("valid-after", &["u"]).await?;

    let dlq = stack.js.get_stream("HERALD_DLQ").await?;
    let consumer =
        dlq.create_consumer(pull::Config { deliver_policy: DeliverPolicy::All, ..Default::default() }).await?;
    let mut msgs = consumer.messages().await?;
    // The runner handles requests concurrently: their dead letters come in any order.
    let mut letters = std::collections::HashMap::new();
    for _ in &cases {
        let m = tokio::time::timeout(Duration::from_secs(10), msgs.next()).await?.expect("a dead letter")?;
        assert_eq!(m.subject.as_str(), "herald.dlq.billing");
        let headers = m.headers.as_ref().expect("headers");
        assert!(!headers.get(HDR_REASON).map(|v| v.as_str()).unwrap_or("").is_empty());
        let code = headers.get(HDR_REASON_CODE).map(|v| v.as_str().to_owned());
        letters.insert(String::from_utf8(m.payload.to_vec())?, code);
        m.ack().await.map_err(|e| anyhow::anyhow!(e))?;
    }
    for (id, body, code) in &cases {
        let got = letters.get(body.as_str()).unwrap_or_else(|| panic!("{id}: no dead letter with its original body"));
        assert_eq!(got.as_deref(), Some(*code), "{id}");
    }
    for _ in 0..100 {
        if stack.stored("u", "valid-after").await? == 1 {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the valid request after the invalid ones was not stored");
}
