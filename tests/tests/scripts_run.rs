//! `scripts/run` as a user meets it: it starts everything, prints a token and a publish command
//! that work, uses a server already listening, and on SIGTERM stops what it started, only that.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use herald_client::{Connection, Event};
use herald_tests::NatsServer;
use herald_tests::servers::{free_port, repo_root};
use herald_tests::stack::next_event;

fn listening(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

#[tokio::test]
async fn scripts_run_starts_serves_and_stops_what_it_started() -> anyhow::Result<()> {
    herald_tests::init_logging();
    // A NATS server that is already there: scripts/run must use it and leave it running.
    let nats = NatsServer::start()?;
    let (ddb, gw, fx) = (free_port(), free_port(), free_port());
    let data = tempfile::tempdir()?;
    let root = repo_root();
    let mut child = Command::new("bash")
        .arg(root.join("scripts/run"))
        .env("HERALD_BIN_DIR", root.join("target/debug"))
        .env("HERALD_NATS_URL", nats.url())
        .env("HERALD_DYNAMODB_ENDPOINT", format!("http://127.0.0.1:{ddb}"))
        .env("HERALD_LISTEN", format!("127.0.0.1:{gw}"))
        .env("HERALD_FUNCTIONS_LISTEN", format!("127.0.0.1:{fx}"))
        .env("HERALD_ADMIN_LISTEN", format!("127.0.0.1:{}", free_port()))
        .env("HERALD_DATA_DIR", data.path())
        .env_remove("HERALD_JWT_SECRET")
        .env_remove("HERALD_SERVICE_JWT_SECRET")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;

    // Read what it prints until it says it is up.
    let stdout = child.stdout.take().expect("stdout");
    let printed = tokio::task::spawn_blocking(move || {
        let mut lines = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap_or_default();
            let done = line.starts_with("Ctrl-C stops");
            lines.push(line);
            if done {
                break;
            }
        }
        lines
    });
    let printed = tokio::time::timeout(Duration::from_secs(120), printed).await??;
    let token = printed.iter().map(|l| l.trim()).find(|l| l.starts_with("eyJ")).expect("a token line").to_owned();
    let publish = printed.iter().map(|l| l.trim()).find(|l| l.contains(" publish ")).expect("a publish command");
    assert!(printed.iter().any(|l| l.contains(&format!("ws://127.0.0.1:{gw}/v1/ws"))), "{printed:?}");

    // The printed token and command work as printed.
    let mut c = Connection::connect(&format!("ws://127.0.0.1:{gw}/v1/ws"), &token, None).await?;
    assert!(matches!(next_event(&mut c).await?, Event::Welcome { .. }));
    let status = Command::new("bash").arg("-c").arg(publish).stdout(Stdio::null()).status()?;
    assert!(status.success(), "the printed publish command failed");
    match next_event(&mut c).await? {
        Event::Notification { notification, .. } => {
            assert_eq!(notification.title, "Hello from Herald")
        }
        other => panic!("expected the demo notification, got {other:?}"),
    }

    // The printed service token publishes over HTTP (and the printed curl command, where curl
    // is installed: a fresh machine may not have it).
    let service_token =
        printed.iter().map(|l| l.trim()).filter(|l| l.starts_with("eyJ")).nth(1).expect("a service token line");
    let over_http = serde_json::json!({"id": "run-http", "recipients": {"users": ["demo-user"]}, "kind": "demo", "title": "over HTTP"});
    let r = herald_tests::http::call(
        &format!("127.0.0.1:{gw}"),
        "POST",
        "/v1/notifications",
        Some(service_token),
        Some(&over_http),
    )
    .await?;
    assert_eq!(r.status, 202, "{}", r.body);
    match next_event(&mut c).await? {
        Event::Notification { notification, .. } => assert_eq!(notification.id, "run-http"),
        other => panic!("expected the HTTP notification, got {other:?}"),
    }
    let curl = printed.iter().map(|l| l.trim()).find(|l| l.starts_with("curl ")).expect("a curl command");
    if Command::new("curl").arg("--version").stdout(Stdio::null()).status().is_ok_and(|s| s.success()) {
        let out = Command::new("bash").arg("-c").arg(curl).output()?;
        assert!(String::from_utf8_lossy(&out.stdout).contains(r#""duplicate":false"#), "{out:?}");
        match next_event(&mut c).await? {
            Event::Notification { notification, .. } => assert_eq!(notification.title, "Hello over HTTP"),
            other => panic!("expected the curl notification, got {other:?}"),
        }
    }

    // SIGTERM: everything it started stops; the NATS server it found keeps running.
    let pid = child.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status()?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait()?.is_none() {
        assert!(Instant::now() < deadline, "scripts/run did not exit on SIGTERM");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for port in [gw, fx, ddb] {
        assert!(!listening(port), "port {port} still served after stop");
    }
    assert!(listening(nats.port), "the pre-existing NATS server was stopped");
    Ok(())
}
