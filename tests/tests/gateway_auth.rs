//! Authentication through a connection's whole life, on the real gateway and nats-server:
//! header and first-frame tokens, URL tokens refused, every bad-token variant, public keys and
//! JWKS rotation, refresh, expiry, revocation on two gateways (origins: gateway_close.rs).

use std::time::{Duration, Instant};

use herald_client::{Connection, Event, token};
use herald_tests::stack::{ADMIN_AUDIENCE, ADMIN_SECRET, AUDIENCE, SECRET, drain_events, next_event};
use herald_tests::{Stack, StackOptions};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

fn fixture(name: &str) -> std::path::PathBuf {
    herald_tests::servers::repo_root().join("tests/fixtures/keys").join(name)
}

fn sign_rs(key: &str, kid: Option<&str>, claims: &Value) -> String {
    let pem = std::fs::read(fixture(key)).unwrap();
    let mut h = Header::new(Algorithm::RS256);
    h.kid = kid.map(str::to_owned);
    encode(&h, claims, &EncodingKey::from_rsa_pem(&pem).unwrap()).unwrap()
}

fn claims(sub: &str, ttl: i64) -> Value {
    let now = token::now_secs() as i64;
    json!({"sub": sub, "aud": AUDIENCE, "iss": "https://auth.example", "iat": now, "exp": now + ttl})
}

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// Connects with `token` in hello and returns the close code (None if welcomed).
async fn close_code(stack: &Stack, token: &str) -> anyhow::Result<Option<u16>> {
    let mut c = Connection::connect(&stack.ws_url(0), token, None).await?;
    for e in drain_events(&mut c, Duration::from_secs(2)).await {
        match e {
            Event::Welcome { .. } => return Ok(None),
            Event::Closed { code, .. } => return Ok(code),
            _ => {}
        }
    }
    anyhow::bail!("neither welcome nor close")
}

#[tokio::test]
async fn a_header_token_authenticates_and_a_url_token_is_refused() -> anyhow::Result<()> {
    let stack = Stack::start(StackOptions::default()).await?;
    let t = stack.token("hdr");
    let mut c = Connection::connect_with_header(&stack.ws_url(0), &t, None).await?;
    assert!(matches!(next_event(&mut c).await?, Event::Welcome { .. }));
    stack.publish("via-header", &["hdr"]).await?;
    assert!(matches!(next_event(&mut c).await?, Event::Notification { .. }));

    // A bad header token is refused before the upgrade.
    let bad = token::sign("wrong", &claims("hdr", 600));
    let Err(err) = Connection::connect_with_header(&stack.ws_url(0), &bad, None).await else { panic!("refused") };
    assert!(err.to_string().contains("401"), "{err}");

    for q in ["token", "access_token", "jwt"] {
        let url = format!("{}?{q}={t}", stack.ws_url(0));
        let Err(err) = tokio_tungstenite::connect_async(url.into_client_request()?).await else { panic!("refused") };
        assert!(err.to_string().contains("400"), "{q}: {err}");
    }
    Ok(())
}

#[tokio::test]
async fn every_bad_token_variant_is_refused_with_4001_by_a_public_key_gateway() -> anyhow::Result<()> {
    let pub_pem = fixture("rsa-old.pub.pem");
    let stack = Stack::start(StackOptions {
        env: env(&[
            ("HERALD_JWT_ALGORITHM", "RS256"),
            ("HERALD_JWT_PUBLIC_KEY_FILE", pub_pem.to_str().unwrap()),
            ("HERALD_JWT_ISSUER", "https://auth.example"),
            ("HERALD_JWT_LEEWAY_SECONDS", "5"),
        ]),
        ..Default::default()
    })
    .await?;
    let now = token::now_secs() as i64;
    let good = sign_rs("rsa-old.key", None, &claims("pk-user", 600));
    assert_eq!(close_code(&stack, &good).await?, None, "a good RS256 token is welcomed");

    let b64 = |v: Value| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let with = |f: &dyn Fn(&mut Value)| {
        let mut c = claims("pk-user", 600);
        f(&mut c);
        sign_rs("rsa-old.key", None, &c)
    };
    // HS256 signed with the RSA public key as the secret: the classic algorithm confusion.
    let confused = {
        let pem = std::fs::read(&pub_pem)?;
        encode(&Header::new(Algorithm::HS256), &claims("pk-user", 600), &EncodingKey::from_secret(&pem))?
    };
    let cases: Vec<(&str, String)> = vec![
        ("wrong key", sign_rs("rsa-new.key", None, &claims("pk-user", 600))),
        ("alg none", format!("{}.{}.", b64(json!({"alg":"none","typ":"JWT"})), b64(claims("pk-user", 600)))),
        ("HS256 with the public key", confused),
        ("expired", with(&|c| c["exp"] = json!(now - 120))),
        (
            "no exp",
            with(&|c| {
                c.as_object_mut().unwrap().remove("exp");
            }),
        ),
        ("wrong aud", with(&|c| c["aud"] = json!("other"))),
        ("wrong iss", with(&|c| c["iss"] = json!("https://evil.example"))),
        (
            "no iss",
            with(&|c| {
                c.as_object_mut().unwrap().remove("iss");
            }),
        ),
        ("nbf in the future", with(&|c| c["nbf"] = json!(now + 600))),
    ];
    for (what, t) in cases {
        assert_eq!(close_code(&stack, &t).await?, Some(4001), "{what}");
    }
    let metrics = stack.metrics(0).await?;
    for reason in ["signature", "expired", "audience", "issuer", "not_yet_valid"] {
        assert!(metrics.contains(&format!("reason=\"{reason}\"")), "metrics count {reason}");
    }
    assert!(!metrics.contains("eyJ"), "no token in metrics");
    Ok(())
}

#[tokio::test]
async fn jwks_rotation_accepts_both_keys_while_both_are_listed() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let jwks = dir.path().join("jwks.json");
    std::fs::copy(fixture("jwks-old.json"), &jwks)?;
    let stack = Stack::start(StackOptions {
        env: env(&[("HERALD_JWT_JWKS_FILE", jwks.to_str().unwrap())]),
        ..Default::default()
    })
    .await?;
    let old = sign_rs("rsa-old.key", Some("rsa-old"), &claims("rot", 600));
    let new = sign_rs("rsa-new.key", Some("rsa-new"), &claims("rot", 600));
    let forged = sign_rs("rsa-new.key", Some("rsa-old"), &claims("rot", 600));
    assert_eq!(close_code(&stack, &old).await?, None);
    assert_eq!(close_code(&stack, &new).await?, Some(4001), "new key not listed yet");
    assert_eq!(close_code(&stack, &forged).await?, Some(4001), "kid of one key, signed by another");

    // Rotation step 1: both listed. The file is re-read within a second or two.
    tokio::time::sleep(Duration::from_millis(1100)).await; // a different mtime
    std::fs::copy(fixture("jwks-both.json"), &jwks)?;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(close_code(&stack, &old).await?, None);
    assert_eq!(close_code(&stack, &new).await?, None);

    // Step 2: the old key retired.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    std::fs::copy(fixture("jwks-new.json"), &jwks)?;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(close_code(&stack, &old).await?, Some(4001));
    assert_eq!(close_code(&stack, &new).await?, None);
    Ok(())
}

#[tokio::test]
async fn refresh_keeps_delivery_and_another_users_token_closes_4003() -> anyhow::Result<()> {
    let stack = Stack::start(StackOptions::default()).await?;
    let mut c = stack.connect("ref", None).await?;
    c.refresh(&stack.token("ref")).await?;
    stack.publish("after-refresh", &["ref"]).await?;
    match next_event(&mut c).await? {
        Event::Notification { notification, .. } => assert_eq!(notification.id, "after-refresh"),
        other => panic!("{other:?}"),
    }
    c.refresh(&stack.token("someone-else")).await?;
    let events = drain_events(&mut c, Duration::from_secs(2)).await;
    assert!(events.iter().any(|e| matches!(e, Event::Closed { code: Some(4003), .. })), "{events:?}");
    Ok(())
}

#[tokio::test]
async fn an_expiring_token_gets_token_expiring_then_4001_at_exp_unless_refreshed() -> anyhow::Result<()> {
    let stack = Stack::start(StackOptions::default()).await?;
    let short = token::user_token(SECRET, AUDIENCE, "exp-user", 3);
    let mut c = Connection::connect(&stack.ws_url(0), &short, None).await?;
    assert!(matches!(next_event(&mut c).await?, Event::Welcome { .. }));
    assert!(matches!(next_event(&mut c).await?, Event::TokenExpiring { .. }));
    let started = Instant::now();
    let events = drain_events(&mut c, Duration::from_secs(6)).await;
    assert!(events.iter().any(|e| matches!(e, Event::Closed { code: Some(4001), .. })), "{events:?}");
    assert!(started.elapsed() < Duration::from_secs(5));

    // The same, refreshed in time: it stays.
    let mut c =
        Connection::connect(&stack.ws_url(0), &token::user_token(SECRET, AUDIENCE, "exp-user", 3), None).await?;
    assert!(matches!(next_event(&mut c).await?, Event::Welcome { .. }));
    assert!(matches!(next_event(&mut c).await?, Event::TokenExpiring { .. }));
    c.refresh(&stack.token("exp-user")).await?;
    tokio::time::sleep(Duration::from_secs(4)).await;
    stack.publish("still-here", &["exp-user"]).await?;
    match next_event(&mut c).await? {
        Event::Notification { notification, .. } => assert_eq!(notification.id, "still-here"),
        other => panic!("{other:?}"),
    }
    Ok(())
}

async fn admin(
    stack: &Stack,
    gw: usize,
    method: &str,
    body: Option<Value>,
    token: &str,
) -> anyhow::Result<(u16, Value)> {
    stack.admin_request(gw, method, "/v1/admin/revocations", body, token).await
}

#[tokio::test]
async fn a_revoked_user_is_closed_on_every_gateway_within_a_second() -> anyhow::Result<()> {
    let stack = Stack::start(StackOptions { gateways: 2, ..Default::default() }).await?;
    let mut on0 = stack.connect_to(0, "victim", None).await?;
    let mut on1 = stack.connect_to(1, "victim", None).await?;
    let mut other = stack.connect_to(1, "bystander", None).await?;
    let now = token::now_secs();
    let admin_token = stack.admin_token("ops");
    // The user-token key cannot mint an admin token, scope or not.
    let user_key_admin = token::sign(SECRET, &json!({"sub":"ops","aud":AUDIENCE,"exp":now+600,"scope":"admin"}));
    let unscoped = token::sign(ADMIN_SECRET, &json!({"sub":"ops","aud":ADMIN_AUDIENCE,"exp":now+600}));
    let old_victim_token = stack.token("victim");

    assert_eq!(admin(&stack, 0, "POST", Some(json!({"user":"victim"})), &user_key_admin).await?.0, 401);
    assert_eq!(admin(&stack, 0, "POST", Some(json!({"user":"victim"})), &unscoped).await?.0, 403);
    assert_eq!(admin(&stack, 0, "POST", Some(json!({"user":"victim"})), "nope").await?.0, 401);
    assert_eq!(admin(&stack, 0, "POST", Some(json!({})), &admin_token).await?.0, 400);

    let started = Instant::now();
    let (status, _) =
        admin(&stack, 0, "POST", Some(json!({"user":"victim","reason":"stolen laptop"})), &admin_token).await?;
    assert_eq!(status, 201);
    for c in [&mut on0, &mut on1] {
        let events = drain_events(c, Duration::from_millis(1500)).await;
        assert!(events.iter().any(|e| matches!(e, Event::Closed { code: Some(4001), .. })), "{events:?}");
    }
    assert!(started.elapsed() < Duration::from_millis(1500), "closed within ~1 s: {:?}", started.elapsed());
    // The old token no longer connects anywhere; the bystander is untouched.
    assert_eq!(close_code(&stack, &old_victim_token).await?, Some(4001));
    stack.publish("for-bystander", &["bystander"]).await?;
    assert!(matches!(next_event(&mut other).await?, Event::Notification { .. }));
    let (status, list) = admin(&stack, 1, "GET", None, &admin_token).await?;
    assert_eq!(status, 200);
    assert_eq!(list["revocations"][0]["user"], "victim");
    assert_eq!(list["revocations"][0]["reason"], "stolen laptop");

    // A token issued after the revocation (a new login) works again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(close_code(&stack, &stack.token("victim")).await?, None);

    // Revoking one token id closes only that token's session.
    let t1 = token::sign(SECRET, &json!({"sub":"multi","aud":AUDIENCE,"exp":now+600,"jti":"t-1"}));
    let t2 = token::sign(SECRET, &json!({"sub":"multi","aud":AUDIENCE,"exp":now+600,"jti":"t-2"}));
    let mut c1 = Connection::connect(&stack.ws_url(0), &t1, None).await?;
    let mut c2 = Connection::connect(&stack.ws_url(1), &t2, None).await?;
    assert!(matches!(next_event(&mut c1).await?, Event::Welcome { .. }));
    assert!(matches!(next_event(&mut c2).await?, Event::Welcome { .. }));
    assert_eq!(admin(&stack, 1, "POST", Some(json!({"jti":"t-1"})), &admin_token).await?.0, 201);
    let events = drain_events(&mut c1, Duration::from_millis(1500)).await;
    assert!(events.iter().any(|e| matches!(e, Event::Closed { code: Some(4001), .. })), "{events:?}");
    stack.publish("for-t2", &["multi"]).await?;
    assert!(matches!(next_event(&mut c2).await?, Event::Notification { .. }));
    Ok(())
}
