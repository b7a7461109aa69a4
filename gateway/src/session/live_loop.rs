//! The session's loop once it has started: live entries, the client's frames, the timers
//! (pings, token expiry, a stuck write, the interest's settling), revocations, NATS reconnects,
//! a recreated stream, and the drain.

use std::future::poll_fn;
use std::time::Duration;

use crate::ws::{self, Message};
use rand::Rng;
use tokio::time::Instant;

use super::handshake::read_error;
use super::{End, Session, now_secs};
use crate::auth::AuthError;
use crate::live::Live;
use crate::outbound::Io;
use crate::protocol::{self, ClientFrame, close};
use crate::read_events::Note;

/// What woke the session.
enum Wake {
    Timer,
    Events,
    Io(Io),
    Live(Live),
    /// A `read` or `unread` frame of a change made on some device.
    Read(std::sync::Arc<str>),
}

/// The instant at which a Unix time (seconds) comes.
fn instant_at(unix_secs: u64) -> Instant {
    let now = now_secs();
    Instant::now() + Duration::from_secs(unix_secs.saturating_sub(now))
}

impl Session {
    pub(super) async fn serve_inner(&mut self, cursor: Option<String>) -> Result<(), End> {
        let st = self.state.clone();
        // Registered first: a change made while replaying is queued for after it.
        let reads = st.api.read_hub.register(&self.claims.sub, self.unread_rev.clone());
        // Boxed: the start's requests are big futures, needed once; the loop's state is small.
        let live = Box::pin(self.start(cursor)).await?;
        // A drain begun before the start looked at the events: no change will announce it.
        if self.generation.draining {
            self.start_drain()?;
        }
        loop {
            let deadline = self.next_deadline();
            let (out, socket) = (&mut self.out, &mut self.socket);
            // Process-wide events (the drain among them) come through the read-state mailbox, so
            // the loop waits on the timer, the mailbox, the socket and the live subscription.
            let wake = tokio::select! {
                biased;
                _ = tokio::time::sleep_until(deadline) => Wake::Timer,
                // The socket before the mailbox: each frame queued is written before the next
                // is taken (a burst of counts must not fill the outbound queue of a reader).
                io = poll_fn(|cx| out.poll_io(socket, cx)) => Wake::Io(io),
                note = reads.next() => match note {
                    Note::Events => Wake::Events,
                    Note::Frame(f) => Wake::Read(f),
                },
                e = live.next() => Wake::Live(e),
            };
            match wake {
                Wake::Timer => self.on_timer().await?,
                Wake::Events => self.on_events().await?,
                Wake::Io(Io::WriteFailed) => return Err(End::Gone),
                Wake::Io(Io::Inbound(m)) => self.on_client(m)?,
                Wake::Live(Live::Entry(e)) => self.on_live(e).await?,
                Wake::Read(frame) => self.queue(frame.to_string())?,
                Wake::Live(Live::Overflow(dropped)) => {
                    st.metrics.overflows.inc();
                    // Boxed like every rare, large step: the idle session future stays small.
                    Box::pin(self.catch_up(dropped, false)).await?;
                }
            }
        }
    }

    /// The earliest of: the next ping, the expiry warning, the expiry, the drain end, the
    /// settle look, and the moment a stuck write counts as too slow.
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
        if let Some(s) = self.settle_at {
            next = next.min(s);
        }
        if self.out.pending() > 0 {
            next = next.min(self.out.progress_at + cfg.limits.write_timeout);
        }
        next
    }

    async fn on_timer(&mut self) -> Result<(), End> {
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
        if self.settle_at.is_some_and(|s| now >= s) {
            self.settle_at = None;
            Box::pin(self.settle()).await?;
        }
        Ok(())
    }

    fn start_drain(&mut self) -> Result<(), End> {
        if self.drain_deadline.is_some() {
            return Ok(());
        }
        let period = self.state.config.drain_period;
        let after = rand::rng().random_range(0..period.as_millis().max(1) as u64);
        self.drain_deadline = Some(Instant::now() + period);
        self.queue(protocol::reconnect(after, "shutdown"))
    }

    async fn on_events(&mut self) -> Result<(), End> {
        let now = self.state.events.current();
        let before = std::mem::replace(&mut self.generation, now);
        if now.draining && !before.draining {
            self.start_drain()?;
        }
        if now.revocations != before.revocations && self.state.revocations.is_revoked(&self.claims) {
            self.state.metrics.revoked_closes.inc();
            return Err(End::auth(AuthError::Revoked));
        }
        if now.epoch != before.epoch && now.epoch != self.epoch {
            // A recreated stream: every cursor of the old one is meaningless; start over.
            self.epoch = now.epoch;
            return Box::pin(self.reset("the notification stream was recreated")).await;
        }
        if now.nats_reconnects != before.nats_reconnects {
            // Whatever was stored while the live connection was away is read from the stream.
            Box::pin(self.catch_up_to_newest()).await?;
        }
        Ok(())
    }

    /// One frame from the client against its IP's frame limit (4029 past it).
    fn count_frame(&self) -> Result<(), End> {
        let st = &self.state;
        st.metrics.frames_in.inc();
        if !st.frame_limit.allow(self.ip) {
            st.metrics.rate_limited.inc();
            return Err(End::Close { code: close::TOO_SLOW, error: "rate_limited", message: "too many frames".into() });
        }
        Ok(())
    }

    fn on_client(&mut self, msg: Option<Result<Message, ws::Error>>) -> Result<(), End> {
        let text = match msg {
            None | Some(Ok(Message::Close(_))) => return Err(End::Gone),
            Some(Err(e)) => return Err(read_error(e)),
            // A ping costs a pong, so it counts toward the frame limit like text; a pong answers
            // our own ping and does not (a thousand clients behind one NAT answer ours).
            Some(Ok(Message::Ping(_))) => {
                self.awaiting_pong = false;
                return self.count_frame();
            }
            Some(Ok(Message::Pong(_))) => {
                self.awaiting_pong = false;
                return Ok(());
            }
            Some(Ok(Message::Binary(_))) => {
                return Err(End::protocol("binary frames are not part of the protocol"));
            }
            Some(Ok(Message::Text(t))) => t,
        };
        self.awaiting_pong = false;
        self.count_frame()?;
        let st = &self.state;
        match ClientFrame::parse(&text).map_err(End::protocol)? {
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

    async fn on_live(&mut self, entry: crate::log::Entry) -> Result<(), End> {
        if entry.seq <= self.last {
            return Ok(());
        }
        if entry.prev > self.last {
            self.state.metrics.gaps.inc();
            // The previous entry exists (the stream said so): read up to it, whatever a
            // lagging replica answers. Boxed like every rare, large step.
            Box::pin(self.catch_up(entry.prev, false)).await?;
            if entry.seq <= self.last {
                return Ok(());
            }
        }
        self.push(&entry)
    }
}
