//! One WebSocket session: `hello`, `welcome`, replay from the cursor, then live delivery.
//!
//! Seam without gap or copy: the live subscription is made before anything is read from the
//! stream, so every notification stored after that point arrives live (buffered meanwhile).
//! `last` is the newest cursor sent; a live message at or below it is a copy and is skipped, and
//! one whose `Nats-Last-Sequence` is above it reveals a gap that is filled from the stream first.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::Subscriber;
use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures::StreamExt;
use herald_core::subject;
use rand::Rng;
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::auth::{AuthError, Claims};
use crate::log::{Entry, LogError, live_entry};
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
    /// Shutdown: `reconnect` was sent.
    GoingAway,
}

impl End {
    fn auth(e: AuthError) -> Self {
        End::Close {
            code: close::UNAUTHENTICATED,
            error: "unauthenticated",
            message: e.to_string(),
        }
    }
    fn protocol(message: impl Into<String>) -> Self {
        End::Close {
            code: close::PROTOCOL,
            error: "protocol",
            message: message.into(),
        }
    }
    fn internal(e: LogError) -> Self {
        End::Close {
            code: close::INTERNAL,
            error: "internal",
            message: e.to_string(),
        }
    }
}

struct Session {
    socket: WebSocket,
    state: Arc<AppState>,
    user: String,
    subject: String,
    /// The newest cursor sent on this connection (or the baseline it started from).
    last: u64,
    expires_at: u64,
    warned: bool,
}

pub async fn run(mut socket: WebSocket, state: Arc<AppState>, header_claims: Option<Claims>) {
    let m = &state.metrics;
    m.connections.inc();
    let end = match handshake(&mut socket, &state, header_claims).await {
        Ok((claims, cursor)) => {
            let mut s = Session {
                subject: subject::user_subject(&claims.sub),
                user: claims.sub,
                socket,
                state: state.clone(),
                last: 0,
                expires_at: claims.exp,
                warned: false,
            };
            let end = s.serve(cursor).await;
            socket = s.socket;
            end
        }
        Err(end) => end,
    };
    match end {
        End::Gone | End::GoingAway => {}
        End::Close {
            code,
            error,
            message,
        } => {
            debug!(code, error, %message, "closing session");
            let _ = socket
                .send(Message::Text(protocol::error(error, &message).into()))
                .await;
            let _ = socket
                .send(Message::Close(Some(CloseFrame {
                    code,
                    reason: error.into(),
                })))
                .await;
        }
    }
    m.connections.dec();
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
        (Some(t), _) => state.verifier.verify(&t),
        (None, Some(c)) => Ok(c),
        (None, None) => Err(AuthError::Missing),
    };
    let claims = claims
        .inspect_err(|e| m.auth_failure(e.code()))
        .map_err(End::auth)?;
    m.handshakes.inc();
    Ok((claims, cursor))
}

/// The next text frame; pings and pongs are answered by the socket itself.
async fn next_text(socket: &mut WebSocket) -> Result<String, End> {
    loop {
        match socket.recv().await {
            None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return Err(End::Gone),
            Some(Ok(Message::Text(t))) => return Ok(t.as_str().to_owned()),
            Some(Ok(Message::Binary(_))) => {
                return Err(End::protocol("binary frames are not part of the protocol"));
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
        }
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Session {
    async fn serve(&mut self, cursor: Option<String>) -> End {
        match self.serve_inner(cursor).await {
            Ok(()) => End::Gone,
            Err(end) => end,
        }
    }

    async fn serve_inner(&mut self, cursor: Option<String>) -> Result<(), End> {
        let st = self.state.clone();
        // Subscribe before reading the stream: see the module comment.
        let mut live: Subscriber = st
            .client
            .subscribe(subject::live_subject(&self.user))
            .await
            .map_err(|e| End::Close {
                code: close::INTERNAL,
                error: "internal",
                message: e.to_string(),
            })?;
        let session_id = st.next_session_id();
        self.send(protocol::welcome(&self.user, &session_id, self.expires_at))
            .await?;

        match cursor {
            None => {
                self.last = st
                    .log
                    .last_seq(&self.subject)
                    .await
                    .map_err(End::internal)?;
            }
            Some(c) => match protocol::parse_cursor(&c) {
                Some(c) => self.replay(c).await?,
                None => self.reset("unknown cursor").await?,
            },
        }

        let mut ping_check = tokio::time::interval(Duration::from_secs(1));
        loop {
            let expiry = self.expires_at;
            tokio::select! {
                biased;
                _ = st.shutdown.cancelled() => {
                    let after = rand::rng().random_range(0..st.config.drain_period.as_millis().max(1) as u64);
                    let _ = self.send(protocol::reconnect(after, "shutdown")).await;
                    let _ = self.socket.send(Message::Close(Some(CloseFrame {
                        code: close::GOING_AWAY,
                        reason: "shutdown".into(),
                    }))).await;
                    return Err(End::GoingAway);
                }
                msg = self.socket.recv() => self.on_client(msg).await?,
                msg = live.next() => match msg {
                    Some(msg) => self.on_live(msg).await?,
                    None => return Err(End::Close {
                        code: close::GOING_AWAY, error: "going_away", message: "subscription ended".into(),
                    }),
                },
                _ = ping_check.tick() => self.check_expiry(expiry).await?,
            }
        }
    }

    async fn on_client(&mut self, msg: Option<Result<Message, axum::Error>>) -> Result<(), End> {
        let text = match msg {
            None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return Err(End::Gone),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => return Ok(()),
            Some(Ok(Message::Binary(_))) => {
                return Err(End::protocol("binary frames are not part of the protocol"));
            }
            Some(Ok(Message::Text(t))) => t,
        };
        self.state.metrics.frames_in.inc();
        match ClientFrame::parse(text.as_str()).map_err(End::protocol)? {
            ClientFrame::Hello { .. } => Err(End::protocol("hello was already received")),
            ClientFrame::Ack { .. } => Ok(()),
            ClientFrame::Refresh { token } => {
                let claims = self.state.verifier.verify(&token).map_err(|e| {
                    self.state.metrics.auth_failure(e.code());
                    End::auth(e)
                })?;
                if claims.sub != self.user {
                    return Err(End::Close {
                        code: close::FORBIDDEN,
                        error: "forbidden",
                        message: "refresh token is for another user".into(),
                    });
                }
                self.expires_at = claims.exp;
                self.warned = false;
                Ok(())
            }
        }
    }

    async fn check_expiry(&mut self, expires_at: u64) -> Result<(), End> {
        let now = now_secs();
        if now >= expires_at {
            self.state.metrics.auth_failure("expired_in_session");
            return Err(End::auth(AuthError::Expired));
        }
        if !self.warned && now + self.state.config.expiry_warning.as_secs() >= expires_at {
            self.warned = true;
            self.send(protocol::token_expiring(expires_at)).await?;
        }
        Ok(())
    }

    /// Sends everything after `cursor`, then `replayed`; `reset` when `cursor` is not (any
    /// longer) this user's notification in the stream.
    async fn replay(&mut self, cursor: u64) -> Result<(), End> {
        let st = self.state.clone();
        let batch = st.config.replay_batch.max(1);
        let started = Instant::now();
        let first = st
            .log
            .batch(&self.subject, cursor, batch)
            .await
            .map_err(End::internal)?;
        // The stream drops a user's oldest first, so if the cursor's own message is still there,
        // nothing after it is missing.
        if first.first().map(|e| e.seq) != Some(cursor) {
            return self
                .reset("cursor is older than the stream keeps, or unknown")
                .await;
        }
        self.last = cursor;
        let mut count = 0u64;
        let mut entries = first;
        loop {
            let full = entries.len() >= batch;
            let from = self.last;
            for e in entries.iter().filter(|e| e.seq > from) {
                self.push(e, true).await?;
                count += 1;
            }
            if !full {
                break;
            }
            entries = st
                .log
                .batch(&self.subject, self.last + 1, batch)
                .await
                .map_err(End::internal)?;
        }
        st.metrics.replays.inc();
        st.metrics.replay_sizes.observe(count as f64);
        st.metrics
            .replay_seconds
            .observe(started.elapsed().as_secs_f64());
        self.send(protocol::replayed(Some(self.last), count)).await
    }

    async fn reset(&mut self, reason: &str) -> Result<(), End> {
        self.state.metrics.resets.inc();
        self.last = self
            .state
            .log
            .last_seq(&self.subject)
            .await
            .map_err(End::internal)?;
        self.send(protocol::reset(reason)).await
    }

    async fn on_live(&mut self, msg: async_nats::Message) -> Result<(), End> {
        let Some(entry) = live_entry(msg) else {
            warn!("a live message without Nats-Sequence; ignoring it");
            return Ok(());
        };
        if entry.seq <= self.last {
            return Ok(());
        }
        if entry.prev > self.last {
            self.fill_gap(entry.seq).await?;
        }
        self.push(&entry, false).await
    }

    /// Sends what the stream holds for this user between `last` and `before`.
    async fn fill_gap(&mut self, before: u64) -> Result<(), End> {
        let st = self.state.clone();
        let batch = st.config.replay_batch.max(1);
        st.metrics.gaps.inc();
        loop {
            let entries = st
                .log
                .batch(&self.subject, self.last + 1, batch)
                .await
                .map_err(End::internal)?;
            let full = entries.len() >= batch;
            for e in entries.iter().filter(|e| e.seq < before) {
                self.push(e, false).await?;
                st.metrics.gap_filled.inc();
            }
            let reached = entries.last().is_none_or(|e| e.seq >= before);
            if !full || reached {
                return Ok(());
            }
        }
    }

    async fn push(&mut self, e: &Entry, replay: bool) -> Result<(), End> {
        let payload = std::str::from_utf8(&e.payload).unwrap_or("null");
        self.send(protocol::notification(e.seq, replay, payload))
            .await?;
        self.last = e.seq;
        if !replay && let Some(at) = e.accepted_at_ms {
            self.state
                .metrics
                .push_latency
                .observe((now_ms() - at).max(0) as f64 / 1000.0);
        }
        Ok(())
    }

    async fn send(&mut self, text: String) -> Result<(), End> {
        self.socket
            .send(Message::Text(text.into()))
            .await
            .map_err(|_| End::Gone)?;
        self.state.metrics.frames_out.inc();
        Ok(())
    }
}
