//! Hostile sockets, played by a worker whose spec says so: each one, again and again, opens a
//! socket that misbehaves in one of five ways and records what the gateway did with it.
//!
//! - `bad_token`: upgrades and sends `hello` with a token signed by the wrong key, or one that
//!   is not a JWT at all (expected: close 4001).
//! - `garbage`: upgrades and sends text that is not JSON, a binary frame, a frame over the
//!   gateway's 64 KiB limit, or JSON that is not `hello` (expected: close 4008).
//! - `stall_tcp`: connects and sends nothing; `stall_http`: sends half an HTTP upgrade request
//!   (expected: the gateway times them out; what it does is what is counted).
//! - `silent`: upgrades and never says `hello` (expected: close 4001 at the hello deadline).
//!
//! A socket re-opens `reopen_ms` (±50 %) after it ends, so the attack keeps going for as long
//! as the worker runs; one the gateway never closes is given up after `hold_secs`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use rand::Rng;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{WebSocketStream, client_async_with_config};

use crate::conn::source;
use crate::wire::WorkerSpec;

/// Connecting and upgrading take at most this; past it the attempt counts as `connect_timeout`.
const STEP_TIMEOUT: Duration = Duration::from_secs(20);

/// How the hostile sockets of one worker behave.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HostileSpec {
    /// Pause after a socket ends before it re-opens (ms, ±50 %).
    pub reopen_ms: u64,
    /// How long a socket waits for the gateway to close it before giving up.
    pub hold_secs: f64,
    /// Size of the oversized frame (over the gateway's frame limit).
    pub oversized_bytes: usize,
}

/// The ways a hostile socket misbehaves; socket `i` plays `KINDS[i % KINDS.len()]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    BadToken,
    Garbage,
    StallTcp,
    StallHttp,
    Silent,
}

pub const KINDS: [Kind; 5] = [Kind::BadToken, Kind::Garbage, Kind::StallTcp, Kind::StallHttp, Kind::Silent];

impl Kind {
    pub fn label(self) -> &'static str {
        match self {
            Kind::BadToken => "bad_token",
            Kind::Garbage => "garbage",
            Kind::StallTcp => "stall_tcp",
            Kind::StallHttp => "stall_http",
            Kind::Silent => "silent",
        }
    }
}

/// How often one outcome happened, and how long its sockets were open (connect to end).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Outcome {
    pub count: u64,
    pub open_ms_sum: f64,
    pub open_ms_max: f64,
}

impl Outcome {
    pub fn add(&mut self, o: &Outcome) {
        self.count += o.count;
        self.open_ms_sum += o.open_ms_sum;
        self.open_ms_max = self.open_ms_max.max(o.open_ms_max);
    }

    pub fn mean_ms(&self) -> f64 {
        self.open_ms_sum / self.count.max(1) as f64
    }
}

/// A worker's hostile tally: sockets open now (in all and by kind), attempts so far, and
/// outcomes by `"<kind> <outcome>"` (e.g. `"bad_token close_4001"`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct HostileReport {
    pub in_play: u64,
    pub opened: u64,
    /// Sockets that have connected at least once.
    #[serde(default)]
    pub reached: u64,
    pub open_by_kind: BTreeMap<String, u64>,
    pub outcomes: BTreeMap<String, Outcome>,
}

impl HostileReport {
    pub fn merge(&mut self, other: &HostileReport) {
        self.in_play += other.in_play;
        self.opened += other.opened;
        self.reached += other.reached;
        for (k, n) in &other.open_by_kind {
            *self.open_by_kind.entry(k.clone()).or_default() += n;
        }
        for (k, o) in &other.outcomes {
            self.outcomes.entry(k.clone()).or_default().add(o);
        }
    }
}

/// What a hostile worker's sockets share.
pub struct Hostile {
    spec: WorkerSpec,
    hostile: HostileSpec,
    gate: Semaphore,
    pub in_play: AtomicU64,
    pub opened: AtomicU64,
    reached: AtomicU64,
    open_by_kind: [AtomicU64; KINDS.len()],
    outcomes: Mutex<BTreeMap<String, Outcome>>,
}

impl Hostile {
    pub fn new(spec: WorkerSpec, hostile: HostileSpec) -> Self {
        Hostile {
            gate: Semaphore::new(spec.connect_concurrency.max(1)),
            spec,
            hostile,
            in_play: AtomicU64::new(0),
            opened: AtomicU64::new(0),
            reached: AtomicU64::new(0),
            open_by_kind: Default::default(),
            outcomes: Mutex::new(BTreeMap::new()),
        }
    }

    pub fn report(&self) -> HostileReport {
        HostileReport {
            in_play: self.in_play.load(Ordering::Relaxed),
            opened: self.opened.load(Ordering::Relaxed),
            reached: self.reached.load(Ordering::Relaxed),
            open_by_kind: KINDS
                .iter()
                .zip(&self.open_by_kind)
                .map(|(k, n)| (k.label().to_owned(), n.load(Ordering::Relaxed)))
                .collect(),
            outcomes: self.outcomes.lock().expect("outcomes lock").clone(),
        }
    }

    fn record(&self, kind: Kind, outcome: &str, open_for: Duration) {
        let ms = open_for.as_secs_f64() * 1000.0;
        let mut all = self.outcomes.lock().expect("outcomes lock");
        all.entry(format!("{} {outcome}", kind.label())).or_default().add(&Outcome {
            count: 1,
            open_ms_sum: ms,
            open_ms_max: ms,
        });
    }

    /// Starts every socket of the worker; they run until the process exits.
    pub fn start(self: &Arc<Self>) {
        for local in 0..self.spec.users {
            tokio::spawn(self.clone().play(local));
        }
    }

    async fn play(self: Arc<Self>, local: u64) {
        let g = (self.spec.first_user + local) as usize;
        let k = g % KINDS.len();
        let src = source(self.spec.source_net, self.spec.per_source, local);
        // Each gateway gets every kind.
        let target = self.spec.targets[(g / KINDS.len()) % self.spec.targets.len()].clone();
        let mut reached = false;
        for attempt in 0u64.. {
            let (outcome, open_for) = self.attempt(k, attempt, src, &target, !reached).await;
            reached |= open_for.is_some();
            self.record(KINDS[k], &outcome, open_for.unwrap_or_default());
            let pause = self.hostile.reopen_ms.max(1);
            let ms = rand::rng().random_range(pause / 2..=pause + pause / 2);
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
    }

    /// One socket from connect to end: its outcome and how long it was open (`None`: it never
    /// connected); `first`: no socket of this slot has connected yet (counted in `reached` as
    /// soon as this one connects: a stalled one may not end for minutes).
    async fn attempt(
        &self,
        k: usize,
        attempt: u64,
        src: SocketAddr,
        target: &str,
        first: bool,
    ) -> (String, Option<Duration>) {
        let kind = KINDS[k];
        let permit = self.gate.acquire().await.expect("the gate is never closed");
        let stream = match connect(src, target).await {
            Ok(s) => s,
            Err(why) => return (why, None),
        };
        self.opened.fetch_add(1, Ordering::Relaxed);
        if first {
            self.reached.fetch_add(1, Ordering::Relaxed);
        }
        self.in_play.fetch_add(1, Ordering::Relaxed);
        self.open_by_kind[k].fetch_add(1, Ordering::Relaxed);
        let t0 = Instant::now();
        let hold = Duration::from_secs_f64(self.hostile.hold_secs);
        let outcome = if matches!(kind, Kind::StallTcp | Kind::StallHttp) {
            drop(permit);
            stall(stream, kind == Kind::StallHttp, hold).await
        } else {
            let config = WebSocketConfig::default().read_buffer_size(4096).max_message_size(Some(1 << 20));
            let upgraded =
                timeout(STEP_TIMEOUT, client_async_with_config(format!("ws://{target}/v1/ws"), stream, Some(config)))
                    .await;
            drop(permit);
            match upgraded {
                Err(_) => "upgrade_timeout".to_owned(),
                Ok(Err(WsError::Http(response))) => format!("http_{}", response.status().as_u16()),
                Ok(Err(_)) => "upgrade_error".to_owned(),
                Ok(Ok((mut ws, _))) => {
                    if let Some(frame) = self.first_frame(kind, attempt) {
                        // The gateway may close before an oversized frame is all written; what it
                        // answers is read below either way.
                        let _ = ws.send(frame).await;
                    }
                    until_closed(&mut ws, hold).await
                }
            }
        };
        self.in_play.fetch_sub(1, Ordering::Relaxed);
        self.open_by_kind[k].fetch_sub(1, Ordering::Relaxed);
        (outcome, Some(t0.elapsed()))
    }

    /// What a socket of `kind` sends after the upgrade (the variant changes with each attempt).
    fn first_frame(&self, kind: Kind, attempt: u64) -> Option<Message> {
        match kind {
            Kind::BadToken if attempt.is_multiple_of(2) => {
                let token = herald_client::token::user_token(
                    "not-the-gateway-secret-but-long-enough-to-sign",
                    &self.spec.audience,
                    "u0",
                    3600,
                );
                Some(Message::text(serde_json::json!({"type": "hello", "token": token}).to_string()))
            }
            Kind::BadToken => Some(Message::text(r#"{"type":"hello","token":"not-a-jwt"}"#)),
            Kind::Garbage => Some(match attempt % 4 {
                0 => Message::text("this is not JSON {"),
                1 => Message::binary(vec![0xde, 0xad, 0xbe, 0xef]),
                2 => Message::text("x".repeat(self.hostile.oversized_bytes)),
                _ => Message::text(r#"{"type":"ack","cursor":"1"}"#),
            }),
            Kind::StallTcp | Kind::StallHttp | Kind::Silent => None,
        }
    }
}

async fn connect(src: SocketAddr, target: &str) -> Result<TcpStream, String> {
    let addr: SocketAddr = target.parse().map_err(|_| "bad_target".to_owned())?;
    let socket = TcpSocket::new_v4().map_err(|_| "socket_error".to_owned())?;
    socket.bind(src).map_err(|_| "bind_error".to_owned())?;
    match timeout(STEP_TIMEOUT, socket.connect(addr)).await {
        Err(_) => Err("connect_timeout".into()),
        Ok(Err(_)) => Err("connect_error".into()),
        Ok(Ok(s)) => Ok(s),
    }
}

/// Reads until the gateway closes: `close_<code>`, `closed_without_code`, `dropped` (no close
/// frame), or `held_to_limit` when it is still open after `hold`.
async fn until_closed(ws: &mut WebSocketStream<TcpStream>, hold: Duration) -> String {
    let read = async {
        while let Some(msg) = ws.next().await {
            match msg {
                Ok(Message::Close(Some(frame))) => return format!("close_{}", u16::from(frame.code)),
                Ok(Message::Close(None)) => return "closed_without_code".to_owned(),
                Ok(_) => {}
                Err(_) => return "dropped".to_owned(),
            }
        }
        "dropped".to_owned()
    };
    timeout(hold, read).await.unwrap_or_else(|_| "held_to_limit".to_owned())
}

/// A stalled upgrade: nothing at all, or half a request (`half`), then wait for the gateway:
/// `closed_by_gateway`, `http_<status>` if it answers, `dropped` on a reset, or `held_to_limit`.
async fn stall(mut stream: TcpStream, half: bool, hold: Duration) -> String {
    if half {
        let half = "GET /v1/ws HTTP/1.1\r\nHost: herald\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n";
        if stream.write_all(half.as_bytes()).await.is_err() {
            return "dropped".to_owned();
        }
    }
    let mut buf = [0u8; 512];
    match timeout(hold, stream.read(&mut buf)).await {
        Err(_) => "held_to_limit".to_owned(),
        Ok(Ok(0)) => "closed_by_gateway".to_owned(),
        Ok(Ok(n)) => String::from_utf8_lossy(&buf[..n])
            .strip_prefix("HTTP/1.1 ")
            .and_then(|rest| rest.get(..3))
            .map_or_else(|| "answered".to_owned(), |status| format!("http_{status}")),
        Ok(Err(_)) => "dropped".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use tokio::net::TcpListener;

    use super::*;

    /// A loopback server that does `serve` with each socket it accepts.
    async fn server<F, Fut>(serve: F) -> String
    where
        F: Fn(TcpStream) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                serve(s).await;
            }
        });
        addr
    }

    async fn stall_against(addr: &str, half: bool, hold: Duration) -> String {
        let stream = connect("127.0.0.1:0".parse().unwrap(), addr).await.unwrap();
        stall(stream, half, hold).await
    }

    #[tokio::test]
    async fn a_stall_reports_what_the_server_did() {
        let closes = server(|s| async move { drop(s) }).await;
        assert_eq!(stall_against(&closes, false, Duration::from_secs(5)).await, "closed_by_gateway");
        let answers = server(|mut s| async move {
            let _ = s.write_all(b"HTTP/1.1 408 Request Timeout\r\n\r\n").await;
        })
        .await;
        assert_eq!(stall_against(&answers, true, Duration::from_secs(5)).await, "http_408");
        let holds = server(|s| async move {
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(5)).await;
                drop(s);
            });
        })
        .await;
        assert_eq!(stall_against(&holds, true, Duration::from_millis(200)).await, "held_to_limit");
    }

    #[test]
    fn reports_merge_by_outcome() {
        let one = |n: u64, ms: f64| HostileReport {
            in_play: n,
            opened: n,
            reached: n,
            open_by_kind: BTreeMap::from([("stall_tcp".to_owned(), n)]),
            outcomes: BTreeMap::from([(
                "bad_token close_4001".to_owned(),
                Outcome { count: n, open_ms_sum: ms * n as f64, open_ms_max: ms },
            )]),
        };
        let mut all = one(2, 10.0);
        all.merge(&one(1, 40.0));
        let o = all.outcomes["bad_token close_4001"];
        assert_eq!((all.in_play, all.opened, o.count, o.open_ms_max), (3, 3, 3, 40.0));
        assert_eq!(o.mean_ms(), 20.0);
        assert_eq!((all.open_by_kind["stall_tcp"], all.reached), (3, 3));
    }
}
