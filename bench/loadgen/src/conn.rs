//! One simulated user in a worker: binds a loopback source address, connects, authenticates,
//! reads notifications into the tally, and, when dropped, reconnects. A Herald client keeps the
//! cursor of the last notification it received, or else the `welcome` cursor of its first
//! connection (CONTRACT §3: where delivery started), and resumes from it; its replay is done at
//! `replayed`. A reconnection without any cursor, or one answered by `reset`, is counted apart
//! and never as replayed: what was sent while it was away cannot come back.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use rand::Rng;
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{Semaphore, oneshot};
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{WebSocketStream, client_async_with_config};

use crate::protocol::Incoming;
use crate::tally::Tally;
use crate::wire::{StatusReport, System, WorkerSpec, now_us};

type Ws = WebSocketStream<TcpStream>;

/// A handshake step that takes longer than this has failed.
const STEP_TIMEOUT: Duration = Duration::from_secs(20);
/// Reconnections per user at most, so a dead fleet cannot spin a worker forever.
const MAX_ATTEMPTS: u32 = 200;

/// What every user task of a worker shares.
pub struct Shared {
    pub spec: WorkerSpec,
    pub tally: Tally,
    gate: Semaphore,
    pub connected: AtomicU64,
    pub started: AtomicU64,
    pub drops: AtomicU64,
    pub back: AtomicU64,
    pub replayed: AtomicU64,
    pub without_cursor: AtomicU64,
    pub resets: AtomicU64,
    pub last_back_us: AtomicU64,
    pub last_replayed_us: AtomicU64,
}

impl Shared {
    pub fn new(spec: WorkerSpec) -> Self {
        Shared {
            tally: Tally::new(spec.first_user, spec.users),
            gate: Semaphore::new(spec.connect_concurrency.max(1)),
            spec,
            connected: AtomicU64::new(0),
            started: AtomicU64::new(0),
            drops: AtomicU64::new(0),
            back: AtomicU64::new(0),
            replayed: AtomicU64::new(0),
            without_cursor: AtomicU64::new(0),
            resets: AtomicU64::new(0),
            last_back_us: AtomicU64::new(0),
            last_replayed_us: AtomicU64::new(0),
        }
    }

    pub fn status(&self) -> StatusReport {
        StatusReport {
            connected: self.connected.load(Ordering::Relaxed),
            started: self.started.load(Ordering::Relaxed),
            drops: self.drops.load(Ordering::Relaxed),
            back: self.back.load(Ordering::Relaxed),
            replayed: self.replayed.load(Ordering::Relaxed),
            without_cursor: self.without_cursor.load(Ordering::Relaxed),
            resets: self.resets.load(Ordering::Relaxed),
            last_back_us: self.last_back_us.load(Ordering::Relaxed),
            last_replayed_us: self.last_replayed_us.load(Ordering::Relaxed),
        }
    }

    fn mark_replayed(&self) {
        self.replayed.fetch_add(1, Ordering::Relaxed);
        self.last_replayed_us.fetch_max(now_us(), Ordering::Relaxed);
    }
}

/// The source address of local socket `local` in worker net `net`, `per_source` sockets each.
pub fn source(net: u8, per_source: u64, local: u64) -> SocketAddr {
    let a = local / per_source.max(1);
    let ip = Ipv4Addr::new(127, net, (a / 250 % 250 + 1) as u8, (a % 250 + 1) as u8);
    SocketAddr::V4(SocketAddrV4::new(ip, 0))
}

/// Runs user `local` until it gives up; `first` learns how its first connection went.
pub async fn run_user(shared: Arc<Shared>, local: u64, first: oneshot::Sender<Result<(), String>>) {
    let spec = &shared.spec;
    let g = spec.first_user + local;
    let token = herald_client::token::user_token(&spec.secret, &spec.audience, &format!("u{g}"), 6 * 3600);
    let src = source(spec.source_net, spec.per_source, local);
    let mut cursor: Option<String> = None;
    let mut first = Some(first);
    let mut backoff = Duration::from_millis(250);
    for attempt in 0..MAX_ATTEMPTS {
        let target = if attempt == 0 {
            &spec.targets[g as usize % spec.targets.len()]
        } else {
            &spec.reconnect_targets[(g + u64::from(attempt)) as usize % spec.reconnect_targets.len()]
        };
        let permit = shared.gate.acquire().await.expect("the gate is never closed");
        let opened = open(spec.system, src, target, &token, cursor.as_deref()).await;
        drop(permit);
        let resumed = cursor.is_some();
        match opened {
            Ok((ws, welcome_cursor)) => {
                if let Some(tx) = first.take() {
                    let _ = tx.send(Ok(()));
                } else {
                    shared.back.fetch_add(1, Ordering::Relaxed);
                    shared.last_back_us.fetch_max(now_us(), Ordering::Relaxed);
                    match spec.system {
                        // Socket.IO has nothing to replay: back is all there is.
                        System::SocketIo => shared.mark_replayed(),
                        System::Herald if !resumed => {
                            shared.without_cursor.fetch_add(1, Ordering::Relaxed);
                        }
                        System::Herald => {}
                    }
                }
                if cursor.is_none() {
                    cursor = welcome_cursor;
                }
                backoff = Duration::from_millis(250);
                shared.connected.fetch_add(1, Ordering::Relaxed);
                let replaying = attempt > 0 && spec.system == System::Herald && resumed;
                read(&shared, local, ws, &mut cursor, replaying).await;
                shared.connected.fetch_sub(1, Ordering::Relaxed);
                shared.drops.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                if let Some(tx) = first.take() {
                    let _ = tx.send(Err(e));
                    return; // a first connection that fails is reported, not retried
                }
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
        if !spec.reconnect {
            return;
        }
        // A client library's jitter, so a cut fleet does not come back in lockstep.
        let jitter = rand::rng().random_range(0..=backoff.as_millis() as u64);
        tokio::time::sleep(Duration::from_millis(jitter)).await;
    }
}

/// Connects from `src` to `target` and authenticates; returns the socket, ready for
/// notifications, and the `welcome` cursor.
async fn open(
    system: System,
    src: SocketAddr,
    target: &str,
    token: &str,
    cursor: Option<&str>,
) -> Result<(Ws, Option<String>), String> {
    let addr: SocketAddr = target.parse().map_err(|e| format!("{target}: {e}"))?;
    let socket = TcpSocket::new_v4().map_err(|e| format!("socket: {e}"))?;
    socket.bind(src).map_err(|e| format!("bind {src}: {e}"))?;
    let stream = timeout(STEP_TIMEOUT, socket.connect(addr))
        .await
        .map_err(|_| "connect timed out".to_owned())?
        .map_err(|e| format!("connect {addr}: {e}"))?;
    let _ = stream.set_nodelay(true);
    // Small buffers, as the gateway uses: the bench should not need more memory than the server.
    let config = WebSocketConfig::default().read_buffer_size(4096).write_buffer_size(0).max_message_size(Some(1 << 20));
    let (mut ws, _) = timeout(STEP_TIMEOUT, client_async_with_config(system.url(target), stream, Some(config)))
        .await
        .map_err(|_| "upgrade timed out".to_owned())?
        .map_err(|e| format!("upgrade: {e}"))?;
    if let Some(hello) = system.hello(token, cursor) {
        ws.send(Message::text(hello)).await.map_err(|e| format!("hello: {e}"))?;
    }
    let welcome = async {
        while let Some(msg) = ws.next().await {
            let Message::Text(text) = msg.map_err(|e| format!("handshake: {e}"))? else { continue };
            match system.parse(&text) {
                Incoming::Welcome { cursor } => return Ok(cursor),
                Incoming::Open => {
                    ws.send(Message::text(System::socketio_connect(token))).await.map_err(|e| format!("auth: {e}"))?
                }
                Incoming::Refused(why) => return Err(format!("refused: {why}")),
                _ => {}
            }
        }
        Err("closed during the handshake".to_owned())
    };
    let welcome_cursor = timeout(STEP_TIMEOUT, welcome).await.map_err(|_| "no welcome in time".to_owned())??;
    Ok((ws, welcome_cursor))
}

/// Reads until the socket closes, recording notifications and answering engine.io pings;
/// `replaying`: this connection resumed from a cursor, and its replay ends at `replayed`.
async fn read(shared: &Shared, local: u64, mut ws: Ws, cursor: &mut Option<String>, replaying: bool) {
    let system = shared.spec.system;
    let mut awaiting_replay = replaying;
    // Socket.IO's start ends at its connect ack; Herald's at the first `unread`.
    let mut started = system == System::SocketIo;
    if started {
        shared.started.fetch_add(1, Ordering::Relaxed);
    }
    while let Some(Ok(msg)) = ws.next().await {
        let text = match msg {
            Message::Text(text) => text,
            Message::Close(_) => break,
            _ => continue,
        };
        match system.parse(&text) {
            Incoming::Notification { stamp, cursor: c } => {
                shared.tally.record(local as usize, stamp, now_us());
                if c.is_some() {
                    *cursor = c;
                }
            }
            Incoming::Unread if !started => {
                started = true;
                shared.started.fetch_add(1, Ordering::Relaxed);
            }
            Incoming::Replayed if awaiting_replay => {
                awaiting_replay = false;
                shared.mark_replayed();
            }
            // Live delivery goes on after a reset, but the replay is incomplete for good.
            Incoming::Reset => {
                awaiting_replay = false;
                shared.resets.fetch_add(1, Ordering::Relaxed);
            }
            Incoming::Ping if ws.send(Message::text("3")).await.is_err() => break,
            Incoming::Refused(_) => break,
            _ => {}
        }
    }
    if started {
        shared.started.fetch_sub(1, Ordering::Relaxed);
    }
}
