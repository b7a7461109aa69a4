//! A WebSocket client that keeps every frame as it came, without the deduplication of
//! `herald_client::Connection`, for tests and checkers that must see copies and reorders; and
//! a way to store a user's copy straight into `HERALD_USER`, as the functions do, so that a
//! test controls exactly what is stored and when.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::{Context, bail};
use async_nats::jetstream;
use futures::{SinkExt, StreamExt};
use herald_core::subject;
use serde_json::{Value, json};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// A server frame, as much of it as checkers look at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Welcome { cursor: Option<String> },
    Notification { cursor: String, replay: bool, id: String },
    Replayed { cursor: Option<String>, count: u64 },
    Reset,
    Reconnect { after_ms: u64 },
    Other(String),
    Closed(Option<u16>),
}

impl Frame {
    /// The cursor as a number (they sort as numbers; wire form in `herald_core::Cursor`).
    pub fn cursor_number(c: &str) -> u128 {
        c.parse().unwrap_or(0)
    }
}

pub struct RawClient {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    closed: bool,
}

impl RawClient {
    /// Connects and sends `hello`; does not wait for `welcome`.
    pub async fn connect(url: &str, token: &str, cursor: Option<&str>) -> anyhow::Result<Self> {
        let (ws, _) = tokio::time::timeout(Duration::from_secs(10), tokio_tungstenite::connect_async(url))
            .await
            .context("connect timed out")??;
        Self::hello(ws, token, cursor).await
    }

    /// [`Self::connect`] from the local address `from` (any of 127.0.0.0/8 on loopback), as a
    /// client at that address would. An upgrade refused with an HTTP status is an error naming it.
    pub async fn connect_from(from: IpAddr, url: &str, token: &str, cursor: Option<&str>) -> anyhow::Result<Self> {
        let host = url.split("://").nth(1).and_then(|r| r.split('/').next()).context("a ws:// URL")?;
        let socket = TcpSocket::new_v4()?;
        socket.bind(SocketAddr::new(from, 0))?;
        let connect = async {
            let stream = socket.connect(host.parse()?).await?;
            anyhow::Ok(tokio_tungstenite::client_async(url, MaybeTlsStream::Plain(stream)).await?.0)
        };
        let ws = tokio::time::timeout(Duration::from_secs(10), connect).await.context("connect timed out")??;
        Self::hello(ws, token, cursor).await
    }

    async fn hello(
        ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
        token: &str,
        cursor: Option<&str>,
    ) -> anyhow::Result<Self> {
        let mut c = RawClient { ws, closed: false };
        let hello = json!({"type": "hello", "token": token, "cursor": cursor}).to_string();
        c.ws.send(Message::Text(hello.into())).await?;
        Ok(c)
    }

    /// The next frame; `Closed` once the connection ended (and on every call after).
    pub async fn next(&mut self) -> anyhow::Result<Frame> {
        loop {
            if self.closed {
                return Ok(Frame::Closed(None));
            }
            let m = match self.ws.next().await {
                None | Some(Err(_)) => {
                    self.closed = true;
                    return Ok(Frame::Closed(None));
                }
                Some(Ok(m)) => m,
            };
            match m {
                Message::Text(t) => return parse(t.as_str()),
                Message::Close(f) => {
                    self.closed = true;
                    return Ok(Frame::Closed(f.map(|f| u16::from(f.code))));
                }
                _ => {}
            }
        }
    }

    /// The next frame, or `None` after `wait` of silence.
    pub async fn next_within(&mut self, wait: Duration) -> anyhow::Result<Option<Frame>> {
        match tokio::time::timeout(wait, self.next()).await {
            Ok(f) => f.map(Some),
            Err(_) => Ok(None),
        }
    }

    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}

fn parse(text: &str) -> anyhow::Result<Frame> {
    let v: Value = serde_json::from_str(text)?;
    let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
    Ok(match v["type"].as_str().unwrap_or("") {
        "welcome" => Frame::Welcome { cursor: s("cursor") },
        "notification" => Frame::Notification {
            cursor: s("cursor").context("notification without cursor")?,
            replay: v["replay"].as_bool().unwrap_or(false),
            id: v["notification"]["id"].as_str().context("notification without id")?.to_owned(),
        },
        "replayed" => Frame::Replayed { cursor: s("cursor"), count: v["count"].as_u64().unwrap_or(0) },
        "reset" => Frame::Reset,
        "reconnect" => Frame::Reconnect { after_ms: v["after_ms"].as_u64().unwrap_or(0) },
        _ => Frame::Other(text.to_owned()),
    })
}

/// Stores a copy for `user` in `HERALD_USER` as the functions do (a `muted` one carries
/// `Herald-Muted: 1`); returns the ack future (its sequence is the copy's cursor).
pub async fn store(
    js: &jetstream::Context,
    user: &str,
    id: &str,
    body: &str,
    muted: bool,
) -> anyhow::Result<jetstream::context::PublishAckFuture> {
    let payload = json!({"id": id, "kind": "test", "title": id, "body": body, "data": null,
        "created_at": "2026-01-01T00:00:00Z", "read": false})
    .to_string();
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", format!("{user}:{id}").as_str());
    if muted {
        headers.insert(herald_core::notification::HDR_MUTED, "1");
    }
    match js.publish_with_headers(subject::user_subject(user), headers, payload.into()).await {
        Ok(ack) => Ok(ack),
        Err(e) => bail!("storing {id} for {user}: {e}"),
    }
}

/// Stores `ids` for `user` and waits for every ack; returns their sequences.
pub async fn store_all(js: &jetstream::Context, user: &str, ids: &[String], body: &str) -> anyhow::Result<Vec<u64>> {
    let mut acks = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(200) {
        let mut pending = Vec::new();
        for id in chunk {
            pending.push(store(js, user, id, body, false).await?);
        }
        for p in pending {
            acks.push(p.await?.sequence);
        }
    }
    Ok(acks)
}
