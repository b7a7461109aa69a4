//! The gateway's internal plane and secrets, on the real gateway and nats-server: `/metrics`
//! and the admin API only on `HERALD_ADMIN_LISTEN`, admin tokens with their own key and
//! revocable, readiness that waits for the revocation mirror, HS256 `kid`s.

use std::time::{Duration, Instant};

use herald_client::{Connection, Event, token};
use herald_tests::stack::{AUDIENCE, SECRET, Task, drain_events, http_get, http_request};
use herald_tests::{Stack, StackOptions};
use serde_json::json;

#[tokio::test]
async fn metrics_and_admin_are_on_the_internal_listener_only() -> anyhow::Result<()> {
    let stack = Stack::start(StackOptions::default()).await?;
    let public = stack.gateway_addr(0);
    let admin_token = stack.admin_token("ops");
    assert_eq!(http_get(&format!("http://{public}/metrics")).await?.0, 404);
    let body = Some(json!({"user": "x"}));
    assert_eq!(http_request(public, "POST", "/v1/admin/revocations", body, Some(&admin_token)).await?.0, 404);
    assert_eq!(http_request(public, "GET", "/v1/admin/revocations", None, Some(&admin_token)).await?.0, 404);

    let _c = stack.connect("someone", None).await?;
    assert!(stack.metrics(0).await?.contains("herald_gateway_connections 1"));
    assert_eq!(stack.admin_request(0, "GET", "/v1/admin/revocations", None, &admin_token).await?.0, 200);
    assert_eq!(http_get(&format!("http://{}/readyz", stack.admin_addr(0))).await?.0, 200);
    Ok(())
}

#[tokio::test]
async fn an_admin_token_can_be_revoked() -> anyhow::Result<()> {
    let stack = Stack::start(StackOptions::default()).await?;
    let ops = stack.admin_token("ops");
    let rogue = stack.admin_token("rogue-operator");
    let stack = &stack;
    let list = |t: String| async move { stack.admin_request(0, "GET", "/v1/admin/revocations", None, &t).await };
    assert_eq!(list(rogue.clone()).await?.0, 200);
    let revoke = json!({"user": "rogue-operator", "reason": "left the company"});
    assert_eq!(stack.admin_request(0, "POST", "/v1/admin/revocations", Some(revoke), &ops).await?.0, 201);
    let deadline = Instant::now() + Duration::from_secs(5);
    while list(rogue.clone()).await?.0 != 401 {
        anyhow::ensure!(Instant::now() < deadline, "the revoked admin token still works after 5 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(list(ops).await?.0, 200, "other admins are untouched");
    Ok(())
}

#[tokio::test]
async fn an_hs256_token_naming_the_configured_kid_is_accepted() -> anyhow::Result<()> {
    let stack =
        Stack::start(StackOptions { env: vec![("HERALD_JWT_KID".into(), "2026-12".into())], ..Default::default() })
            .await?;
    let now = token::now_secs();
    let claims = json!({"sub": "kid-user", "aud": AUDIENCE, "exp": now + 600});
    let sign = |kid: Option<&str>| {
        let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        h.kid = kid.map(str::to_owned);
        jsonwebtoken::encode(&h, &claims, &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes())).unwrap()
    };
    for (kid, welcomed) in [(Some("2026-12"), true), (None, true), (Some("2025-01"), false)] {
        let mut c = Connection::connect(&stack.ws_url(0), &sign(kid), None).await?;
        let events = drain_events(&mut c, Duration::from_secs(2)).await;
        let got = events.iter().any(|e| matches!(e, Event::Welcome { .. }));
        assert_eq!(got, welcomed, "kid {kid:?}: {events:?}");
        if !welcomed {
            assert!(events.iter().any(|e| matches!(e, Event::Closed { code: Some(4001), .. })), "{events:?}");
        }
    }
    Ok(())
}

/// A gateway whose NATS user may see the revocation bucket but not watch it never loads its
/// mirror: it must stay unready and refuse sockets (it used to turn ready after 10 s).
#[tokio::test]
async fn a_gateway_is_not_ready_until_its_revocation_mirror_has_loaded() -> anyhow::Result<()> {
    let blind = r#"    { user: blind, password: "blind-test-password", permissions: {
      publish: { allow: ["$JS.API.INFO", "$JS.API.STREAM.INFO.KV_HERALD_REVOKED"] }
      subscribe: { allow: ["_INBOX_gateway.>", "herald.live.>"] } } }"#;
    let stack =
        Stack::start(StackOptions { nats_permissions: true, extra_nats_users: blind.into(), ..Default::default() })
            .await?;
    // Something to load: the bucket is not empty.
    let revoke = json!({"user": "someone"});
    let ops = stack.admin_token("ops");
    assert_eq!(stack.admin_request(0, "POST", "/v1/admin/revocations", Some(revoke), &ops).await?.0, 201);

    let url = format!("nats://blind:blind-test-password@127.0.0.1:{}", stack.nats.port);
    let config = herald_gateway::Config::from_vars(&stack.gateway_vars().with("HERALD_NATS_URL", url))?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?.into_std()?;
    let admin = tokio::net::TcpListener::bind("127.0.0.1:0").await?.into_std()?;
    let addr = listener.local_addr()?;
    let _gateway = Task::spawn("blind-gateway", move |stop| async move {
        let listener = tokio::net::TcpListener::from_std(listener).expect("a tokio listener");
        let admin = tokio::net::TcpListener::from_std(admin).expect("a tokio listener");
        let _ = herald_gateway::run_with_admin(listener, admin, config, stop).await;
    });
    let started = Instant::now();
    let mut served = false;
    while started.elapsed() < Duration::from_secs(12) {
        if let Ok((status, _)) = http_get(&format!("http://{addr}/readyz")).await {
            served = true;
            assert_eq!(status, 503, "ready without its revocations after {:?}", started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(served, "the gateway never answered /readyz");
    let refused = Connection::connect(&format!("ws://{addr}/v1/ws"), &stack.token("u"), None).await;
    assert!(refused.is_err_and(|e| e.to_string().contains("503")), "a socket was accepted while not ready");
    Ok(())
}
