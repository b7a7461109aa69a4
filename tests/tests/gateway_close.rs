//! How sockets end, seen from clients that were not written with the gateway: a client's normal
//! close is answered with its own code (RFC 6455 §5.5.1), and an origin not allowed is upgraded
//! and closed with 4003, which a browser can read (it cannot read an upgrade's HTTP status).
//! Checked with tungstenite and with Python's `websockets` (pinned in `.tools/pyws`). A request
//! that is not a WebSocket upgrade gets the JSON 400 every error has.

use std::process::Command;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use herald_tests::{Stack, StackOptions, servers};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

const ALLOWED: &str = "https://app.example";

async fn stack() -> anyhow::Result<Stack> {
    Stack::start(StackOptions {
        env: vec![("HERALD_ALLOWED_ORIGINS".into(), format!("{ALLOWED}, https://admin.example"))],
        ..Default::default()
    })
    .await
}

/// Runs the Python client; returns its JSON line.
fn python(url: &str, token: &str, origin: Option<&str>) -> anyhow::Result<Value> {
    let lib = servers::tool("HERALD_PY_WEBSOCKETS", ".tools/pyws")?;
    let script = servers::repo_root().join("tests/fixtures/py/ws_close.py");
    let mut cmd = Command::new("python3");
    cmd.env("PYTHONPATH", lib).arg(script).arg(url).arg(token);
    cmd.args(origin);
    let out = cmd.output()?;
    anyhow::ensure!(out.status.success(), "python: {}", String::from_utf8_lossy(&out.stderr));
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// Connects with an Origin, sends hello, and returns every text frame and the close frame seen.
async fn tungstenite_session(
    url: &str,
    origin: &str,
    token: &str,
    close_after_welcome: bool,
) -> anyhow::Result<(Vec<Value>, Option<CloseFrame>)> {
    let mut req = url.into_client_request()?;
    req.headers_mut().insert("origin", origin.parse()?);
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await?;
    ws.send(Message::Text(json!({"type": "hello", "token": token}).to_string().into())).await?;
    let mut frames = Vec::new();
    let read = async {
        while let Some(m) = ws.next().await {
            match m? {
                Message::Text(t) => {
                    let v: Value = serde_json::from_str(t.as_str())?;
                    if close_after_welcome && v["type"] == "welcome" {
                        ws.send(Message::Close(Some(CloseFrame { code: CloseCode::Normal, reason: "bye".into() })))
                            .await?;
                    }
                    frames.push(v);
                }
                Message::Close(f) => return anyhow::Ok(f),
                _ => {}
            }
        }
        anyhow::bail!("the stream ended without a close frame (1006)")
    };
    let close = tokio::time::timeout(Duration::from_secs(10), read).await??;
    Ok((frames, close))
}

#[tokio::test]
async fn a_normal_close_is_answered_with_its_code() -> anyhow::Result<()> {
    let stack = stack().await?;
    let url = stack.ws_url(0);
    let (frames, close) = tungstenite_session(&url, ALLOWED, &stack.token("closer"), true).await?;
    assert_eq!(frames[0]["type"], "welcome", "{frames:?}");
    assert_eq!(close.map(|c| u16::from(c.code)), Some(1000));

    let url2 = url.clone();
    let token = stack.token("closer-py");
    let seen = tokio::task::spawn_blocking(move || python(&url2, &token, None)).await??;
    assert_eq!(seen, json!({"welcome": true, "close_code": 1000}));
    Ok(())
}

#[tokio::test]
async fn an_origin_not_allowed_is_closed_with_4003_after_the_upgrade() -> anyhow::Result<()> {
    let stack = stack().await?;
    let url = stack.ws_url(0);
    let (frames, close) = tungstenite_session(&url, "https://evil.example", &stack.token("o"), false).await?;
    assert_eq!(close.map(|c| u16::from(c.code)), Some(4003));
    assert!(frames.iter().all(|f| f["type"] != "welcome"), "{frames:?}");
    assert_eq!(frames.last().map(|f| f["code"].clone()), Some(json!("forbidden")), "{frames:?}");

    // An allowed origin is served.
    let (frames, _) = tungstenite_session(&url, ALLOWED, &stack.token("o"), true).await?;
    assert_eq!(frames[0]["type"], "welcome");

    let (u, t) = (url.clone(), stack.token("o-py"));
    let seen = tokio::task::spawn_blocking(move || python(&u, &t, Some("https://evil.example"))).await??;
    assert_eq!(seen, json!({"welcome": false, "close_code": 4003}));
    let (u, t) = (url.clone(), stack.token("o-py"));
    let seen = tokio::task::spawn_blocking(move || python(&u, &t, Some(ALLOWED))).await??;
    assert_eq!(seen, json!({"welcome": true, "close_code": 1000}));
    Ok(())
}

/// Sends `request` to the gateway and returns the status line and headers of its answer.
async fn raw(addr: &str, request: &str) -> anyhow::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(request.as_bytes()).await?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut byte)).await??;
        anyhow::ensure!(n == 1, "closed before the end of the answer's head");
        head.push(byte[0]);
    }
    Ok(String::from_utf8(head)?)
}

#[tokio::test]
async fn a_request_that_is_not_a_websocket_upgrade_gets_the_json_400_and_a_good_one_the_rfc_accept_key()
-> anyhow::Result<()> {
    let stack = stack().await?;
    let url = stack.ws_url(0);
    let (status, body) = servers::http_get(&url.replace("ws://", "http://")).await?;
    assert_eq!(status, 400, "{body}");
    let v: Value = serde_json::from_str(&body)?;
    assert_eq!(v["error"]["code"], "bad_request", "{body}");

    let addr = url.trim_start_matches("ws://").trim_end_matches("/v1/ws");
    // RFC 6455 §1.3's sample nonce and the accept key it must give.
    let upgrade = |method: &str, version: u8| {
        format!(
            "{method} /v1/ws HTTP/1.1\r\nHost: {addr}\r\nConnection: keep-alive, Upgrade\r\nUpgrade: WebSocket\r\n\
             Sec-WebSocket-Version: {version}\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        )
    };
    let old = raw(addr, &upgrade("GET", 8)).await?;
    assert!(old.starts_with("HTTP/1.1 400"), "{old}");
    let head = raw(addr, &upgrade("HEAD", 13)).await?;
    assert!(head.starts_with("HTTP/1.1 400"), "only a GET upgrades: {head}");
    let ok = raw(addr, &upgrade("GET", 13)).await?;
    assert!(ok.starts_with("HTTP/1.1 101"), "{ok}");
    assert!(ok.to_ascii_lowercase().contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="), "{ok}");
    Ok(())
}
