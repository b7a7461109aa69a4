//! One WebSocket session: `hello`, `welcome`, replay from the cursor, then live delivery until
//! the client leaves, its token ends, it is revoked, it is too slow, or the gateway drains.
//!
//! Seam without gap or copy: the live subscription is made before anything is read from the
//! stream, so every notification stored after that point arrives live (buffered meanwhile).
//! `last` is the newest cursor sent; a live message at or below it is a copy and is skipped, and
//! one whose `Nats-Last-Sequence` is above it reveals a gap that is filled from the stream first.
//! After a NATS reconnect the session catches up from `last` the same way.

use std::future::poll_fn;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures::SinkExt;
use herald_core::subject;
use rand::Rng;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::debug;

use crate::auth::{AuthError, Claims};
use crate::events::Generation;
use crate::live::LiveSub;
use crate::log::Entry;
use crate::outbound::{Io, Outbound};
use crate::protocol::{self, ClientFrame, close};
use crate::state::AppState;

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

/// The instant at which a Unix time (seconds) comes.
fn instant_at(unix_secs: u64) -> Instant {
    let now = now_secs();
    Instant::now() + Duration::from_secs(unix_secs.saturating_sub(now))
}

pub async fn run(mut socket: WebSocket, state: Arc<AppState>, ip: IpAddr, header_claims: Option<Claims>) {
    let end = match handshake(&mut socket, &state, header_claims).await {
        Ok((claims, cursor)) => {
            let mut s = Session {
                subject: subject::user_subject(&claims.sub),
                out: Outbound::new(state.config.limits.outbound_frames, state.config.limits.outbound_bytes),
                events: state.events.subscribe(),
                generation: Generation::default(),
                socket,
                state: state.clone(),
                claims,
                ip,
                last: 0,
                warned: false,
                ping_due: Instant::now() + state.config.ping_interval,
                awaiting_pong: false,
                drain_deadline: None,
            };
            // Boxed: a socket waiting for hello should not carry the session's future.
            let end = Box::pin(s.serve(cursor)).await;
            socket = s.socket;
            end
        }
        Err(end) => end,
    };
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
        // A client that closed is owed its close frame back (RFC 6455 §5.5.1), which tungstenite
        // queued when it read the client's: without this flush the client sees 1006, abnormal.
        End::Gone => {
            let _ = tokio::time::timeout(Duration::from_secs(1), socket.flush()).await;
        }
    }
}

/// Sends `error` and closes with `code`, then waits for the client's close: for sessions that
/// end, and for sockets refused after the upgrade (a browser cannot read an upgrade's status).
pub async fn refuse(socket: &mut WebSocket, code: u16, error: &'static str, message: &str) {
    debug!(code, error, %message, "closing session");
    // A client that stopped reading would block these forever; give them a moment.
    let bye = async {
        socket.send(Message::Text(protocol::error(error, message).into())).await?;
        socket.send(Message::Close(Some(CloseFrame { code, reason: error.into() }))).await
    };
    if tokio::time::timeout(Duration::from_secs(1), bye).await.is_ok_and(|r| r.is_ok()) {
        linger(socket).await;
    }
}

/// After our close frame, waits (up to a second) for the client's close before dropping the
/// socket. Dropping it with unread input (the rest of an oversized frame, say) makes the kernel
/// send a reset, which can destroy the close frame before the client reads it.
async fn linger(socket: &mut WebSocket) {
    let wait = async {
        loop {
            match socket.recv().await {
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

/// Waits for `hello` and authenticates it (or the upgrade's header token).
async fn handshake(
    socket: &mut WebSocket,
    state: &AppState,
    header_claims: Option<Claims>,
) -> Result<(Claims, Option<String>), End> {
    let m = &state.metrics;
    let first = tokio::time::timeout(state.config.hello_timeout, next_text(socket)).await;
    let text = match first {
        Err(_) => {
            m.auth_failure("hello_timeout");
            return Err(End::Close {
                code: close::UNAUTHENTICATED,
                error: "unauthenticated",
                message: "no hello in time".into(),
            });
        }
        Ok(t) => t?,
    };
    let (token, cursor) = match ClientFrame::parse(&text).map_err(End::protocol)? {
        ClientFrame::Hello { token, cursor } => (token, cursor),
        _ => return Err(End::protocol("the first frame must be hello")),
    };
    let claims = match (token, header_claims) {
        (Some(t), _) => state.verify_user(&t),
        (None, Some(c)) => Ok(c),
        (None, None) => Err(AuthError::Missing),
    };
    let claims = claims.inspect_err(|e| m.auth_failure(e.code())).map_err(End::auth)?;
    m.handshakes.inc();
    Ok((claims, cursor))
}

/// The next text frame; pings and pongs are answered by the socket itself.
async fn next_text(socket: &mut WebSocket) -> Result<String, End> {
    loop {
        match socket.recv().await {
            None | Some(Ok(Message::Close(_))) => return Err(End::Gone),
            Some(Err(e)) => return Err(read_error(e)),
            Some(Ok(Message::Text(t))) => return Ok(t.as_str().to_owned()),
            Some(Ok(Message::Binary(_))) => {
                return Err(End::protocol("binary frames are not part of the protocol"));
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
        }
    }
}

/// A frame over the size limit is a protocol error (4008); anything else means the peer is gone.
fn read_error(e: axum::Error) -> End {
    use tokio_tungstenite::tungstenite::Error as WsError;
    match e.into_inner().downcast_ref::<WsError>() {
        Some(WsError::Capacity(c)) => End::protocol(format!("frame too large: {c}")),
        _ => End::Gone,
    }
}

struct Session {
    socket: WebSocket,
    state: Arc<AppState>,
    claims: Claims,
    ip: IpAddr,
    subject: String,
    out: Outbound,
    events: watch::Receiver<Generation>,
    generation: Generation,
    /// The newest cursor sent on this connection (or the baseline it started from).
    last: u64,
    warned: bool,
    ping_due: Instant,
    awaiting_pong: bool,
    drain_deadline: Option<Instant>,
}

/// What woke the session.
enum Wake {
    Drain,
    Timer,
    Events,
    Io(Io),
    Live(Entry),
}

impl Session {
    async fn serve(&mut self, cursor: Option<String>) -> End {
        match self.serve_inner(cursor).await {
            Ok(()) => End::Gone,
            Err(end) => end,
        }
    }

    /// Subscribes, sends `welcome`, and replays from the cursor (or fixes the starting one).
    async fn start(&mut self, cursor: Option<String>) -> Result<LiveSub, End> {
        let st = self.state.clone();
        if st.revocations.is_revoked(&self.claims) {
            st.metrics.auth_failure(AuthError::Revoked.code());
            return Err(End::auth(AuthError::Revoked));
        }
        // Subscribe before reading the stream: see the module comment.
        let live = st.live.subscribe(subject::live_subject(&self.claims.sub));
        self.generation = *self.events.borrow_and_update();
        let session_id = st.next_session_id();
        match cursor {
            None => {
                self.last = st.log.last_seq(&self.subject).await.map_err(End::internal)?;
                let welcome = protocol::welcome(&self.claims.sub, &session_id, self.claims.exp, Some(self.last));
                self.send_now(welcome).await?;
            }
            Some(c) => {
                self.send_now(protocol::welcome(&self.claims.sub, &session_id, self.claims.exp, None)).await?;
                match protocol::parse_cursor(&c) {
                    Some(c) => self.replay(c).await?,
                    None => self.reset("unknown cursor").await?,
                }
            }
        }
        Ok(live)
    }

    async fn serve_inner(&mut self, cursor: Option<String>) -> Result<(), End> {
        let st = self.state.clone();
        // Boxed: the start's requests are big futures, needed once; the loop's state is small.
        let live = Box::pin(self.start(cursor)).await?;
        loop {
            let deadline = self.next_deadline();
            let draining = self.drain_deadline.is_some();
            let (out, socket, events) = (&mut self.out, &mut self.socket, &mut self.events);
            let wake = tokio::select! {
                biased;
                _ = st.shutdown.cancelled(), if !draining => Wake::Drain,
                _ = tokio::time::sleep_until(deadline) => Wake::Timer,
                r = events.changed() => match r {
                    Ok(()) => Wake::Events,
                    Err(_) => Wake::Drain,
                },
                io = poll_fn(|cx| out.poll_io(socket, cx)) => Wake::Io(io),
                e = live.next() => Wake::Live(e),
            };
            match wake {
                Wake::Drain => self.start_drain()?,
                Wake::Timer => self.on_timer()?,
                Wake::Events => self.on_events().await?,
                Wake::Io(Io::WriteFailed) => return Err(End::Gone),
                Wake::Io(Io::Inbound(m)) => self.on_client(m)?,
                Wake::Live(e) => self.on_live(e).await?,
            }
        }
    }

    /// The earliest of: the next ping, the expiry warning, the expiry, the drain end, and the
    /// moment a stuck write counts as too slow.
    fn next_deadline(&self) -> Instant {
        let cfg = &self.state.config;
        let mut next = self.ping_due;
        let exp = instant_at(self.claims.exp);
        next = next.min(exp);
        if !self.warned {
            next = next.min(exp.checked_sub(cfg.expiry_warning).unwrap_or_else(Instant::now));
        }
        if let Some(d) = self.drain_deadline {
            next = next.min(d);
        }
        if self.out.pending() > 0 {
            next = next.min(self.out.progress_at + cfg.limits.write_timeout);
        }
        next
    }

    fn on_timer(&mut self) -> Result<(), End> {
        let st = self.state.clone();
        let cfg = &st.config;
        let now = Instant::now();
        if self.drain_deadline.is_some_and(|d| now >= d) {
            return Err(End::GoingAway);
        }
        if now_secs() >= self.claims.exp {
            self.state.metrics.auth_failure("expired_in_session");
            return Err(End::auth(AuthError::Expired));
        }
        if self.out.pending() > 0 && now >= self.out.progress_at + cfg.limits.write_timeout {
            return Err(End::too_slow("the client is not reading"));
        }
        if !self.warned && now_secs() + cfg.expiry_warning.as_secs() >= self.claims.exp {
            self.warned = true;
            self.queue(protocol::token_expiring(self.claims.exp))?;
        }
        if now >= self.ping_due {
            if self.awaiting_pong {
                self.state.metrics.ping_timeouts.inc();
                return Err(End::Gone);
            }
            self.awaiting_pong = true;
            self.out.push_message(Message::Ping(Default::default()));
            self.ping_due = now + cfg.ping_interval;
        }
        Ok(())
    }

    fn start_drain(&mut self) -> Result<(), End> {
        let period = self.state.config.drain_period;
        let after = rand::rng().random_range(0..period.as_millis().max(1) as u64);
        self.drain_deadline = Some(Instant::now() + period);
        self.queue(protocol::reconnect(after, "shutdown"))
    }

    async fn on_events(&mut self) -> Result<(), End> {
        let now = *self.events.borrow_and_update();
        let before = std::mem::replace(&mut self.generation, now);
        if now.revocations != before.revocations && self.state.revocations.is_revoked(&self.claims) {
            self.state.metrics.revoked_closes.inc();
            return Err(End::auth(AuthError::Revoked));
        }
        if now.nats_reconnects != before.nats_reconnects {
            // Whatever was stored while NATS was away is fetched from the stream.
            Box::pin(self.fill_gap(u64::MAX)).await?;
        }
        Ok(())
    }

    fn on_client(&mut self, msg: Option<Result<Message, axum::Error>>) -> Result<(), End> {
        let text = match msg {
            None | Some(Ok(Message::Close(_))) => return Err(End::Gone),
            Some(Err(e)) => return Err(read_error(e)),
            Some(Ok(Message::Pong(_) | Message::Ping(_))) => {
                self.awaiting_pong = false;
                return Ok(());
            }
            Some(Ok(Message::Binary(_))) => {
                return Err(End::protocol("binary frames are not part of the protocol"));
            }
            Some(Ok(Message::Text(t))) => t,
        };
        self.awaiting_pong = false;
        let st = &self.state;
        st.metrics.frames_in.inc();
        if !st.frame_limit.allow(self.ip) {
            st.metrics.rate_limited.inc();
            return Err(End::Close { code: close::TOO_SLOW, error: "rate_limited", message: "too many frames".into() });
        }
        match ClientFrame::parse(text.as_str()).map_err(End::protocol)? {
            ClientFrame::Hello { .. } => Err(End::protocol("hello was already received")),
            ClientFrame::Ack { .. } => Ok(()),
            ClientFrame::Refresh { token } => {
                let claims = st.verify_user(&token).map_err(|e| {
                    st.metrics.auth_failure(e.code());
                    End::auth(e)
                })?;
                if claims.sub != self.claims.sub {
                    st.metrics.auth_failure("refresh_other_user");
                    return Err(End::Close {
                        code: close::FORBIDDEN,
                        error: "forbidden",
                        message: "refresh token is for another user".into(),
                    });
                }
                st.metrics.refreshes.inc();
                self.claims = claims;
                self.warned = false;
                Ok(())
            }
        }
    }

    /// Sends everything after `cursor`, then `replayed`; `reset` when `cursor` is not (any
    /// longer) this user's notification in the stream.
    async fn replay(&mut self, cursor: u64) -> Result<(), End> {
        let st = self.state.clone();
        let batch = st.config.replay_batch.max(1);
        let started = std::time::Instant::now();
        let first = st.log.batch(&self.subject, cursor.max(1), batch).await.map_err(End::internal)?;
        // The stream drops a user's oldest first, so if the cursor's own message is still there,
        // nothing after it is missing. Cursor 0 (from `welcome`, before the user's first
        // notification) has no message of its own: everything the stream has is after it.
        if cursor > 0 && first.first().map(|e| e.seq) != Some(cursor) {
            return self.reset("cursor is older than the stream keeps, or unknown").await;
        }
        self.last = cursor;
        let mut count = 0u64;
        let mut entries = first;
        loop {
            let full = entries.len() >= batch;
            let from = self.last;
            // Fed as a batch and flushed once; awaited, so a slow reader slows its own replay.
            let write = async {
                for e in entries.iter().filter(|e| e.seq > from) {
                    let payload = std::str::from_utf8(&e.payload).unwrap_or("null");
                    self.socket.feed(Message::Text(protocol::notification(e.seq, true, payload).into())).await?;
                    self.last = e.seq;
                    count += 1;
                }
                self.socket.flush().await
            };
            match tokio::time::timeout(st.config.limits.write_timeout, write).await {
                Err(_) => return Err(End::too_slow("the client is not reading its replay")),
                Ok(Err(_)) => return Err(End::Gone),
                Ok(Ok(())) => {}
            }
            if !full {
                break;
            }
            entries = st.log.batch(&self.subject, self.last + 1, batch).await.map_err(End::internal)?;
        }
        st.metrics.frames_out.add(count);
        st.metrics.replays.inc();
        st.metrics.replay_sizes.observe(count as f64);
        st.metrics.replay_seconds.observe(started.elapsed().as_secs_f64());
        self.send_now(protocol::replayed(Some(self.last), count)).await
    }

    async fn reset(&mut self, reason: &str) -> Result<(), End> {
        self.state.metrics.resets.inc();
        self.last = self.state.log.last_seq(&self.subject).await.map_err(End::internal)?;
        self.send_now(protocol::reset(reason)).await
    }

    async fn on_live(&mut self, entry: Entry) -> Result<(), End> {
        if entry.seq <= self.last {
            return Ok(());
        }
        if entry.prev > self.last {
            self.state.metrics.gaps.inc();
            // Boxed like every rare, large step: the idle session future stays small.
            Box::pin(self.fill_gap(entry.seq)).await?;
        }
        self.push(&entry)
    }

    /// Queues what the stream holds for this user between `last` and `before`.
    async fn fill_gap(&mut self, before: u64) -> Result<(), End> {
        let st = self.state.clone();
        let batch = st.config.replay_batch.max(1);
        loop {
            let entries = st.log.batch(&self.subject, self.last + 1, batch).await.map_err(End::internal)?;
            let full = entries.len() >= batch;
            for e in entries.iter().filter(|e| e.seq < before) {
                self.push(e)?;
                st.metrics.gap_filled.inc();
            }
            let reached = entries.last().is_none_or(|e| e.seq >= before);
            if !full || reached {
                return Ok(());
            }
        }
    }

    fn push(&mut self, e: &Entry) -> Result<(), End> {
        let payload = std::str::from_utf8(&e.payload).unwrap_or("null");
        self.queue(protocol::notification(e.seq, false, payload))?;
        self.last = e.seq;
        if let Some(at) = e.accepted_at_ms {
            self.state.metrics.push_latency.observe((now_ms() - at).max(0) as f64 / 1000.0);
        }
        Ok(())
    }

    fn queue(&mut self, frame: String) -> Result<(), End> {
        self.out.push(frame).map_err(|_| End::too_slow("outbound queue full"))?;
        self.state.metrics.frames_out.inc();
        Ok(())
    }

    async fn send_now(&mut self, text: String) -> Result<(), End> {
        let send = self.socket.send(Message::Text(text.into()));
        match tokio::time::timeout(self.state.config.limits.write_timeout, send).await {
            Err(_) => Err(End::too_slow("the client is not reading")),
            Ok(Err(_)) => Err(End::Gone),
            Ok(Ok(())) => {
                self.state.metrics.frames_out.inc();
                Ok(())
            }
        }
    }
}
