//! The Rust SDK and the `herald` CLI as a user meets them, on a real stack: the CLI's help,
//! usage errors (exit 2, one line, no backtrace), `token`, `publish` from flags and from stdin,
//! `listen` printing one JSON object per notification; the `Subscriber` across a gateway killed
//! and restarted (everything once, in order), and its in-band refresh.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use futures::StreamExt;
use herald_client::{Subscriber, SubscriberEvent, token};
use herald_tests::procs::bin_path;
use herald_tests::stack::{AUDIENCE, SECRET};
use herald_tests::{Stack, StackOptions};
use serde_json::Value;

fn herald() -> anyhow::Result<Command> {
    Ok(Command::new(bin_path("herald")?))
}

#[test]
fn help_everywhere_and_one_line_usage_errors() -> anyhow::Result<()> {
    for args in [
        &["--help"][..],
        &["publish", "--help"],
        &["listen", "--help"],
        &["inbox", "read", "--help"],
        &["dlq", "redrive", "--help"],
    ] {
        let out = herald()?.args(args).output()?;
        assert!(out.status.success(), "{args:?}");
        let text = String::from_utf8(out.stdout)?;
        assert!(text.contains("Usage:") && text.contains("Example"), "{args:?}: {text}");
    }
    let out = herald()?.args(["publish", "--no-such-flag"]).output()?;
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr)?;
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.starts_with("herald: ") && !err.contains("panicked") && !err.contains("backtrace"), "{err}");
    Ok(())
}

#[tokio::test]
async fn publish_and_listen_from_the_cli() -> anyhow::Result<()> {
    let stack = Stack::start(StackOptions::default()).await?;
    let nats = stack.nats.url_as(herald_tests::servers::NatsRole::Creator);
    let token = String::from_utf8(
        herald()?
            .args(["token", "--user", "cli-user", "--ttl", "600"])
            .env("HERALD_JWT_SECRET", SECRET)
            .output()?
            .stdout,
    )?;
    let listen = tokio::process::Command::new(bin_path("herald")?)
        .args(["listen", "--url", &stack.ws_url(0), "--count", "2"])
        .env("HERALD_TOKEN", token.trim())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let out = herald()?
        .args([
            "publish",
            "--source",
            "cli",
            "--user",
            "cli-user",
            "--id",
            "from-flags",
            "--title",
            "Hi",
            "--nats",
            &nats,
        ])
        .output()?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let printed: Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(printed["id"], "from-flags");
    assert_eq!(printed["duplicate"], false);

    let mut child = herald()?
        .args(["publish", "--source", "cli", "--file", "-", "--nats", &nats])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(br#"{"id":"from-stdin","recipients":{"users":["cli-user"]},"kind":"k","title":"From stdin"}"#)?;
    assert!(child.wait_with_output()?.status.success());

    let out = tokio::time::timeout(Duration::from_secs(20), listen.wait_with_output()).await??;
    assert!(out.status.success());
    let lines: Vec<Value> =
        String::from_utf8(out.stdout)?.lines().map(serde_json::from_str).collect::<Result<_, _>>()?;
    assert_eq!(lines[0]["type"], "connected", "{lines:?}");
    let ids: Vec<_> =
        lines.iter().filter(|l| l["type"] == "notification").map(|l| l["notification"]["id"].clone()).collect();
    assert_eq!(ids, ["from-flags", "from-stdin"]);
    Ok(())
}

#[tokio::test]
async fn the_subscriber_resumes_across_a_gateway_restart_and_refreshes_in_band() -> anyhow::Result<()> {
    let mut stack = Stack::start(StackOptions::default()).await?;
    let first = std::sync::atomic::AtomicBool::new(true);
    let mut events = Subscriber::with_provider(stack.ws_url(0), move |_fresh| {
        // The first token is inside the 90 s warning window: `token_expiring` comes at once.
        let ttl = if first.swap(false, std::sync::atomic::Ordering::Relaxed) { 70 } else { 3600 };
        let t = token::user_token(SECRET, AUDIENCE, "sub-user", ttl);
        async move { Ok(t) }
    })
    .backoff(Duration::from_millis(50), Duration::from_millis(500))
    .events();
    let mut seen = Vec::new();
    let mut refreshed = 0;
    let mut reconnects = 0;
    async fn next(events: &mut (impl futures::Stream<Item = SubscriberEvent> + Unpin)) -> SubscriberEvent {
        tokio::time::timeout(Duration::from_secs(20), events.next()).await.ok().flatten().expect("an event")
    }
    // Connected, then the in-band refresh that the first token's `token_expiring` asks for
    // (the stream only acts on frames while it is polled, so wait for it before the restart).
    let mut connected = false;
    while !(connected && refreshed >= 1) {
        match next(&mut events).await {
            SubscriberEvent::Connected { .. } => connected = true,
            SubscriberEvent::TokenRefreshed => refreshed += 1,
            SubscriberEvent::Unread { .. } => {}
            other => panic!("{other:?}"),
        }
    }
    stack.publish("s-0", &["sub-user"]).await?;
    // The gateway dies while notifications keep coming, and comes back.
    stack.kill_gateway(0).await;
    for i in 1..=4 {
        stack.publish(&format!("s-{i}"), &["sub-user"]).await?;
    }
    stack.revive_gateway(0).await?;
    for i in 5..=6 {
        stack.publish(&format!("s-{i}"), &["sub-user"]).await?;
    }
    while seen.len() < 7 {
        match next(&mut events).await {
            SubscriberEvent::Notification { notification, .. } => seen.push(notification.id),
            SubscriberEvent::TokenRefreshed => refreshed += 1,
            SubscriberEvent::Reconnecting { .. } => reconnects += 1,
            _ => {}
        }
    }
    assert_eq!(seen, (0..=6).map(|i| format!("s-{i}")).collect::<Vec<_>>(), "everything once, in order");
    assert!(reconnects >= 1);
    assert!(refreshed >= 1, "token_expiring was answered with a refresh");
    Ok(())
}

/// `HERALD_IN` on a bare server, for the CLI to publish into.
async fn create_in_stream(client: async_nats::Client) -> anyhow::Result<()> {
    use herald_core::subject::{IN_PREFIX, IN_STREAM};
    let config = async_nats::jetstream::stream::Config {
        name: IN_STREAM.into(),
        subjects: vec![format!("{IN_PREFIX}>")],
        ..Default::default()
    };
    async_nats::jetstream::new(client).create_stream(config).await?;
    Ok(())
}

/// `herald publish` of a one-user notification `id` to `url`, with one more flag and its file.
fn cli_publish(url: &str, id: &str, flag: Option<(&str, &std::path::Path)>) -> anyhow::Result<std::process::Output> {
    let mut cmd = herald()?;
    cmd.args(["publish", "--source", "cli", "--user", "u", "--title", "t", "--id", id, "--nats", url]);
    if let Some((name, file)) = flag {
        cmd.arg(name).arg(file);
    }
    Ok(cmd.output()?)
}

/// The CLI succeeded and printed `id` as the first message of the stream.
fn assert_published_first(out: &std::process::Output, id: &str) -> anyhow::Result<()> {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let printed: Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!((printed["id"].as_str(), printed["sequence"].as_u64()), (Some(id), Some(1)));
    Ok(())
}

/// A NATS that knows the creator only by its nkey: the CLI publishes with `--nats-nkey`, and
/// fails at once without it.
#[tokio::test]
async fn the_cli_logs_in_to_nats_with_an_nkey() -> anyhow::Result<()> {
    let pair = nkeys::KeyPair::new_user();
    let nats = herald_tests::NatsServer::start_secured_with(&format!(
        "    {{ nkey: {}, permissions: $HERALD_CREATOR }}\n",
        pair.public_key()
    ))?;
    let inspector = nats.url();
    create_in_stream(herald_core::nats::options(&inspector).connect(&inspector).await?).await?;
    let dir = tempfile::tempdir()?;
    let seed = dir.path().join("creator.nk");
    std::fs::write(&seed, pair.seed()?)?;
    let url = format!("nats://127.0.0.1:{}", nats.port);
    let publish = |id: &str, nkey: Option<&std::path::Path>| cli_publish(&url, id, nkey.map(|k| ("--nats-nkey", k)));
    let out = publish("by-nkey", Some(&seed))?;
    assert_published_first(&out, "by-nkey")?;
    let started = std::time::Instant::now();
    let out = publish("no-login", None)?;
    assert!(!out.status.success(), "a server with authorization refuses a client without a login");
    assert!(started.elapsed() < Duration::from_secs(15), "failed at once, not after retries");
    Ok(())
}

/// NATS in the cloud requires TLS from a deployment CA: the CLI (`--nats-ca`) and the SDK
/// (`Publisher::connect_tls`) publish through it; without the CA the CLI fails at once, saying so.
#[tokio::test]
async fn the_cli_and_the_sdk_publish_to_a_nats_that_requires_tls() -> anyhow::Result<()> {
    let certs = herald_tests::cluster::Certs::make()?;
    let nats = herald_tests::NatsServer::start_tls(&certs.node("server.pem"), &certs.node("server-key.pem"))?;
    let url = format!("tls://127.0.0.1:{}", nats.port);
    create_in_stream(herald_core::nats::options_with(&url, Some(&certs.tls)).connect(&url).await?).await?;
    let ca = certs.ca_file();
    let publish = |id: &str, ca: Option<&std::path::Path>| cli_publish(&url, id, ca.map(|c| ("--nats-ca", c)));

    let out = publish("over-tls", Some(&ca))?;
    assert_published_first(&out, "over-tls")?;

    let started = std::time::Instant::now();
    let out = publish("no-ca", None)?;
    assert!(!out.status.success(), "a server certificate from an unknown CA must be refused");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("connecting to"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(15), "failed at once, not after retries");

    let publisher = herald_client::Publisher::connect_tls(&url, &std::fs::read(&ca)?).await?;
    let req = herald_tests::stack::request("from-sdk", &["u"]);
    assert_eq!(publisher.publish("tls", &req).await?.sequence, 2);
    assert!(herald_client::Publisher::connect_tls(&url, b"not a certificate").await.is_err());
    Ok(())
}
