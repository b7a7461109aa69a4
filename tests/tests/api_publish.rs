//! Publishing over HTTP and the two kinds of token, through a real gateway, nats-server and
//! functions runner: idempotency by id, every refusal with its status, rate limits, CORS.

use std::time::Duration;

use herald_client::{Connection, Event};
use herald_tests::http;
use herald_tests::stack::{drain_events, next_event, notification_ids};
use herald_tests::{Stack, StackOptions};
use serde_json::{Value, json};

fn body(id: &str, user: &str) -> Value {
    json!({"id": id, "recipients": {"users": [user]}, "kind": "http", "title": format!("title of {id}")})
}

async fn stack() -> anyhow::Result<Stack> {
    stack_with(false).await
}

async fn stack_with(nats_permissions: bool) -> anyhow::Result<Stack> {
    Stack::start(StackOptions {
        nats_permissions,
        env: vec![
            // Small per-service allowances, so one test can cross them; every check below uses
            // its own service name (its own bucket) except the flood.
            ("HERALD_API_SERVICE_PER_SEC".into(), "1".into()),
            ("HERALD_API_SERVICE_BURST".into(), "5".into()),
            ("HERALD_ALLOWED_ORIGINS".into(), "https://app.example".into()),
        ],
        ..Default::default()
    })
    .await
}

#[tokio::test]
async fn the_same_id_published_twice_over_http_is_one_notification() -> anyhow::Result<()> {
    // With NATS users on: the gateway publishes as a creator (HERALD_NATS_CREATOR_URL).
    let stack = stack_with(true).await?;
    let mut c = stack.connect("http-user", None).await?;
    let svc = stack.service_token("billing", "publish");
    let first = stack.http(0, "POST", "/v1/notifications", Some(&svc), Some(&body("inv-1", "http-user"))).await?;
    assert_eq!(first.status, 202, "{}", first.body);
    assert_eq!(first.json(), json!({"id": "inv-1", "duplicate": false}));
    match next_event(&mut c).await? {
        Event::Notification { notification, .. } => assert_eq!(notification.id, "inv-1"),
        other => panic!("expected the notification, got {other:?}"),
    }

    // Again, now with a matching Idempotency-Key: accepted as a duplicate, nothing new arrives.
    let again = http::request(
        stack.gateway_addr(0),
        "POST",
        "/v1/notifications",
        &[("Authorization", &format!("Bearer {svc}")), ("Idempotency-Key", "inv-1")],
        Some(body("inv-1", "http-user").to_string().as_bytes()),
    )
    .await?;
    assert_eq!(again.status, 202, "{}", again.body);
    assert_eq!(again.json(), json!({"id": "inv-1", "duplicate": true}));
    let later = drain_events(&mut c, Duration::from_secs(2)).await;
    assert!(notification_ids(&later).is_empty(), "a second copy arrived: {later:?}");
    assert_eq!(stack.stored("http-user", "inv-1").await?, 1);
    assert_eq!(stack.stream_count("http-user").await?, 1);
    Ok(())
}

#[tokio::test]
async fn bad_requests_and_wrong_tokens_are_refused_with_their_status() -> anyhow::Result<()> {
    let stack = stack().await?;
    let post = |token: Option<String>, body: Value| {
        let stack = &stack;
        async move { stack.http(0, "POST", "/v1/notifications", token.as_deref(), Some(&body)).await }
    };
    let expect = |r: &http::Response, status: u16, code: &str| {
        assert_eq!(r.status, status, "{}", r.body);
        assert_eq!(r.json()["error"]["code"], code, "{}", r.body);
        assert!(r.json()["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{}", r.body);
    };

    // The reason of a 400 is the validation's, field by field.
    let svc = Some(stack.service_token("validator", "publish"));
    expect(
        &post(svc.clone(), json!({"id": "", "recipients": {"users": ["u"]}, "kind": "k", "title": "t"})).await?,
        400,
        "bad_id",
    );
    expect(
        &post(svc.clone(), json!({"id": "a", "recipients": {}, "kind": "k", "title": "t"})).await?,
        400,
        "no_recipients",
    );
    expect(
        &post(svc.clone(), json!({"id": "a", "recipients": {"users": ["u"]}, "kind": "k"})).await?,
        400,
        "malformed",
    );
    let raw = http::request(
        stack.gateway_addr(0),
        "POST",
        "/v1/notifications",
        &[("Authorization", &format!("Bearer {}", svc.clone().unwrap()))],
        Some(b"{not json"),
    )
    .await?;
    expect(&raw, 400, "malformed");
    let mismatched = http::request(
        stack.gateway_addr(0),
        "POST",
        "/v1/notifications",
        &[("Authorization", &format!("Bearer {}", svc.clone().unwrap())), ("Idempotency-Key", "other")],
        Some(body("key-1", "u").to_string().as_bytes()),
    )
    .await?;
    expect(&mismatched, 400, "idempotency_key");

    // Over 64 KiB: 413, whether or not the JSON would be valid.
    let mut big = body("big", "u");
    big["body"] = json!("x".repeat(64 * 1024));
    expect(&post(Some(stack.service_token("big", "publish")), big).await?, 413, "too_large");

    // Tokens: none or bad → 401; a user token, or a service token without `publish` → 403.
    expect(&post(None, body("t1", "u")).await?, 401, "unauthenticated");
    let forged = herald_client::token::service_token("not-the-secret", "herald", "svc", "publish", 600);
    expect(&post(Some(forged), body("t2", "u")).await?, 401, "unauthenticated");
    let expired = herald_client::token::sign(
        herald_tests::stack::SERVICE_SECRET,
        &json!({"sub": "svc", "aud": "herald", "scope": "publish", "exp": 1_000_000}),
    );
    expect(&post(Some(expired), body("t3", "u")).await?, 401, "unauthenticated");
    let other_aud =
        herald_client::token::service_token(herald_tests::stack::SERVICE_SECRET, "else", "svc", "publish", 600);
    expect(&post(Some(other_aud), body("t4", "u")).await?, 401, "unauthenticated");
    expect(&post(Some(stack.token("a-user")), body("t5", "u")).await?, 403, "forbidden");
    expect(&post(Some(stack.service_token("ops", "admin")), body("t6", "u")).await?, 403, "forbidden");

    // Nothing refused reached HERALD_IN.
    let mut stream = stack.js.get_stream(herald_core::subject::IN_STREAM).await?;
    assert_eq!(stream.info().await?.state.messages, 0, "a refused request was published");
    Ok(())
}

#[tokio::test]
async fn a_service_token_cannot_open_a_socket() -> anyhow::Result<()> {
    let stack = stack().await?;
    let svc = stack.service_token("svc", "publish admin");
    // In the upgrade's header: refused before the upgrade with 403.
    let Err(err) = Connection::connect_with_header(&stack.ws_url(0), &svc, None).await else { panic!("refused") };
    assert!(err.to_string().contains("403"), "{err}");
    // In hello: closed with 4003.
    let mut c = Connection::connect(&stack.ws_url(0), &svc, None).await?;
    let events = drain_events(&mut c, Duration::from_secs(2)).await;
    assert!(events.iter().any(|e| matches!(e, Event::Closed { code: Some(4003), .. })), "{events:?}");
    Ok(())
}

#[tokio::test]
async fn a_service_past_its_allowance_gets_429_with_retry_after_and_cors_follows_the_allowed_origins()
-> anyhow::Result<()> {
    let stack = stack().await?;
    let flood = stack.service_token("flood", "publish");
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for i in 0..8 {
        let r = stack.http(0, "POST", "/v1/notifications", Some(&flood), Some(&body(&format!("f{i}"), "u"))).await?;
        if r.status == 429 {
            assert_eq!(r.json()["error"]["code"], "rate_limited");
            retry_after = r.header("retry-after").map(str::to_owned);
        }
        statuses.push(r.status);
    }
    assert_eq!(statuses.iter().filter(|s| **s == 202).count(), 5, "the burst is 5: {statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 3, "{statuses:?}");
    let secs: u64 = retry_after.expect("Retry-After").parse()?;
    assert!((1..=2).contains(&secs), "{secs}");
    // Another service is not affected.
    let other = stack.service_token("calm", "publish");
    assert_eq!(stack.http(0, "POST", "/v1/notifications", Some(&other), Some(&body("c1", "u"))).await?.status, 202);

    // CORS: a preflight from the allowed origin is answered, one from elsewhere gets no grant.
    let preflight = |origin: &'static str| {
        let addr = stack.gateway_addr(0).to_owned();
        async move {
            http::request(
                &addr,
                "OPTIONS",
                "/v1/notifications",
                &[
                    ("Origin", origin),
                    ("Access-Control-Request-Method", "POST"),
                    ("Access-Control-Request-Headers", "authorization, content-type"),
                ],
                None,
            )
            .await
        }
    };
    let ok = preflight("https://app.example").await?;
    assert_eq!(ok.header("access-control-allow-origin"), Some("https://app.example"), "{ok:?}");
    assert!(ok.header("access-control-allow-headers").is_some_and(|h| h.contains("authorization")), "{ok:?}");
    let other = preflight("https://evil.example").await?;
    assert_eq!(other.header("access-control-allow-origin"), None, "{other:?}");
    Ok(())
}
