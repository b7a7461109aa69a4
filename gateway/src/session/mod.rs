//! One WebSocket session: `hello`, `welcome`, replay from the cursor, then live delivery until
//! the client leaves, its token ends, it is revoked, it is too slow, or the gateway drains.
//!
//! The promise (README, "What is guaranteed"): every notification stored for the user after the
//! session's starting cursor reaches the client once, in cursor order. The parts:
//! - [`handshake`]: `hello` and authentication.
//! - [`replay`]: the start (subscribe, wait until the server has the interest, welcome, replay
//!   or reset) and every catch-up from the stream (gaps, mailbox overflows, NATS reconnects,
//!   the late look once the interest has reached the whole cluster), which never stops short of
//!   a sequence it knows exists, whatever a lagging replica answers.
//! - [`live_loop`]: the loop that pushes live entries, answers the client, and runs the timers
//!   and the drain.
//!
//! `last` is the newest cursor sent (or passed over, for a muted copy); a live message at or
//! below it is a copy and is skipped, and one whose `Nats-Last-Sequence` is above it reveals a
//! gap that is read from the stream first.

mod handshake;
mod live_loop;
mod read_state;
mod replay;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::ws::{CloseFrame, Message};
use futures::{SinkExt, StreamExt};
use herald_core::Cursor;
use tokio::time::Instant;
use tracing::debug;

use crate::auth::{AuthError, Claims};
use crate::events::Generation;
use crate::log::Entry;
use crate::outbound::Outbound;
use crate::protocol::{self, close};
use crate::state::AppState;
use crate::upgrade::Ws;

/// Why a session ends; each maps to an error frame and a close code.
#[derive(Debug)]
enum End {
    /// The peer went away or the socket failed: nothing more can be sent.
    Gone,
    Close {
        code: u16,
        error: &'static str,
        message: String,
    },
    /// The drain period ended: close with 1001, no error.
    GoingAway,
}

impl End {
    fn auth(e: AuthError) -> Self {
        if e == AuthError::ServiceToken {
            return End::Close { code: close::FORBIDDEN, error: "forbidden", message: e.to_string() };
        }
        End::Close { code: close::UNAUTHENTICATED, error: "unauthenticated", message: e.to_string() }
    }
    fn protocol(message: impl Into<String>) -> Self {
        End::Close { code: close::PROTOCOL, error: "protocol", message: message.into() }
    }
    fn internal(e: impl std::fmt::Display) -> Self {
        End::Close { code: close::INTERNAL, error: "internal", message: e.to_string() }
    }
    fn too_slow(message: &str) -> Self {
        End::Close { code: close::TOO_SLOW, error: "too_slow", message: message.into() }
    }
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// A socket as the session's steps pass it along: boxed, so that each step's future (the upgrade
/// task, the handshake, the session, the goodbye) holds a pointer, not its own copy of the
/// WebSocket (a moved value keeps its place in the future it was moved out of).
pub type Socket = Box<Ws>;

pub async fn run(mut socket: Socket, state: &Arc<AppState>, ip: IpAddr, header_claims: Option<Box<Claims>>) {
    // The handshake, the session's loop and the goodbye are each boxed, so this future, kept
    // for the socket's whole life, is a few pointers. The session's state is built in its own
    // box with no await while its parts are at hand: a value moved across an await keeps its
    // place in the future it was moved out of.
    let started = match Box::pin(handshake::handshake(&mut socket, state, ip, header_claims)).await {
        Ok((claims, cursor)) => Ok((Session::new(socket, state.clone(), ip, claims), cursor)),
        Err(end) => Err((end, socket)),
    };
    let (end, socket) = match started {
        Ok((mut session, cursor)) => {
            let end = Box::pin(session.serve(cursor)).await;
            (end, session.socket)
        }
        Err(refused) => refused,
    };
    Box::pin(goodbye(socket, state, end)).await;
}

/// Closes the socket as `end` says.
async fn goodbye(mut socket: Socket, state: &AppState, end: End) {
    match end {
        End::GoingAway => {
            let close = Message::Close(Some(CloseFrame { code: close::GOING_AWAY, reason: "drained".into() }));
            let _ = tokio::time::timeout(Duration::from_secs(1), socket.send(close)).await;
        }
        End::Close { code, error, message } => {
            if code == close::TOO_SLOW {
                state.metrics.slow_closes.inc();
            }
            refuse(&mut socket, code, error, &message).await;
        }
        // A client that closed is owed its close frame back (RFC 6455 §5.5.1), which the socket
        // queued when it read the client's: without this flush the client sees 1006, abnormal.
        End::Gone => {
            let _ = tokio::time::timeout(Duration::from_secs(1), socket.flush()).await;
        }
    }
}

/// Sends `error` and closes with `code`, then waits for the client's close: for sessions that
/// end, and for sockets refused after the upgrade (a browser cannot read an upgrade's status).
pub async fn refuse(socket: &mut Ws, code: u16, error: &'static str, message: &str) {
    debug!(code, error, %message, "closing session");
    // A client that stopped reading would block these forever; give them a moment.
    let bye = async {
        socket.send(Message::Text(protocol::error(error, message))).await?;
        socket.send(Message::Close(Some(CloseFrame { code, reason: error.into() }))).await
    };
    if tokio::time::timeout(Duration::from_secs(1), bye).await.is_ok_and(|r| r.is_ok()) {
        linger(socket).await;
    }
}

/// After our close frame, waits (up to a second) for the client's close before dropping the
/// socket. Dropping it with unread input (the rest of an oversized frame, say) makes the kernel
/// send a reset, which can destroy the close frame before the client reads it.
async fn linger(socket: &mut Ws) {
    let wait = async {
        loop {
            match socket.next().await {
                Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => {}
                // Ended, or unusable after an oversized frame (the stream then reports its end
                // at once): hold the socket open for the rest of the second.
                None | Some(Err(_)) => std::future::pending::<()>().await,
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), wait).await;
}

struct Session {
    socket: Socket,
    state: Arc<AppState>,
    claims: Claims,
    ip: IpAddr,
    out: Outbound,
    /// The process-wide events as this session last acted on them.
    generation: Generation,
    /// The stream epoch of every cursor this session sends.
    epoch: u64,
    /// The newest sequence sent or passed over on this connection (or the baseline it started
    /// from).
    last: u64,
    warned: bool,
    ping_due: Instant,
    awaiting_pong: bool,
    drain_deadline: Option<Instant>,
    /// When the subscription has surely reached every node: one more look at the stream then.
    settle_at: Option<Instant>,
    /// The change number of the newest `unread` count sent (read_events: older ones are skipped).
    unread_rev: Arc<std::sync::atomic::AtomicU64>,
}

impl Session {
    fn new(socket: Socket, state: Arc<AppState>, ip: IpAddr, claims: Claims) -> Box<Self> {
        Box::new(Session {
            out: Outbound::new(state.config.limits.outbound_frames, state.config.limits.outbound_bytes),
            generation: Generation::default(),
            socket,
            ping_due: Instant::now() + state.config.ping_interval,
            state,
            claims,
            ip,
            epoch: 0,
            last: 0,
            warned: false,
            awaiting_pong: false,
            drain_deadline: None,
            settle_at: None,
            unread_rev: Arc::default(),
        })
    }

    async fn serve(&mut self, cursor: Option<String>) -> End {
        match self.serve_inner(cursor).await {
            Ok(()) => End::Gone,
            Err(end) => end,
        }
    }

    fn cursor(&self, seq: u64) -> Cursor {
        Cursor::new(self.epoch, seq)
    }

    /// Queues a live entry (a muted copy only moves `last`).
    fn push(&mut self, e: &Entry) -> Result<(), End> {
        if let Some(at) = e.accepted_at_ms {
            self.state.metrics.received_latency.observe((now_ms() - at).max(0) as f64 / 1000.0);
        }
        if !e.muted {
            let payload = std::str::from_utf8(&e.payload).unwrap_or("null");
            self.queue(protocol::notification(self.cursor(e.seq), false, payload))?;
            if let Some(at) = e.accepted_at_ms {
                self.state.metrics.push_latency.observe((now_ms() - at).max(0) as f64 / 1000.0);
            }
        }
        self.last = e.seq;
        Ok(())
    }

    fn queue(&mut self, frame: String) -> Result<(), End> {
        self.out.push(frame).map_err(|_| End::too_slow("outbound queue full"))?;
        self.state.metrics.frames_out.inc();
        Ok(())
    }

    /// Sends one frame now, after everything queued.
    async fn send_now(&mut self, text: String) -> Result<(), End> {
        self.flush_queue().await?;
        let send = self.socket.send(Message::Text(text));
        match tokio::time::timeout(self.state.config.limits.write_timeout, send).await {
            Err(_) => Err(End::too_slow("the client is not reading")),
            Ok(Err(_)) => Err(End::Gone),
            Ok(Ok(())) => {
                self.state.metrics.frames_out.inc();
                Ok(())
            }
        }
    }

    /// Writes out the outbound queue, so that frames sent directly come after it.
    async fn flush_queue(&mut self) -> Result<(), End> {
        if self.out.pending() == 0 {
            return Ok(());
        }
        let (out, socket) = (&mut self.out, &mut self.socket);
        let flush = std::future::poll_fn(|cx| out.poll_flush_all(socket, cx));
        match tokio::time::timeout(self.state.config.limits.write_timeout, flush).await {
            Err(_) => Err(End::too_slow("the client is not reading")),
            Ok(Err(())) => Err(End::Gone),
            Ok(Ok(())) => Ok(()),
        }
    }
}
