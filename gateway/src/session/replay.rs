//! Reading the user's notifications from `HERALD_USER` into the socket: the start (welcome and
//! replay or reset) and every catch-up after it.
//!
//! Three rules keep this exact on a cluster:
//! - The live subscription is in force on our server (PING/PONG after the SUB) before the
//!   stream is read, so what is stored later arrives live or is found by the read. Other nodes
//!   learn of the interest later (~0.5 s): a message stored on one of them meanwhile is
//!   dropped there, so once `interest_settle` has passed the session looks at the user's newest
//!   sequence again ([`Session::settle`]).
//! - A read never stops short of a sequence known to exist: the leader's newest (taken before
//!   the read), a gap's previous sequence, a dropped entry's. A Direct Get may be answered by a
//!   lagging replica; a short answer is asked again, then read from the leader.
//! - Catch-ups write straight to the socket after the outbound queue, in batches awaited under
//!   the write timeout, so a long gap slows its own client instead of overflowing the queue;
//!   and the stream reads of all sessions together are bounded (`catchup_concurrency`), so a
//!   reconnect of 15,000 sessions queues instead of failing.

use std::time::Duration;

use crate::ws::Message;
use futures::SinkExt;
use herald_core::subject;

use super::{End, Session};
use crate::auth::AuthError;
use crate::live::LiveSub;
use crate::log::{Entry, LogError};
use crate::protocol;
use crate::state::AppState;

/// Direct Get answers short of a known sequence asked again before going to the leader.
const STALE_RETRIES: u32 = 3;
/// What a message of a batch may cost besides its payload (its headers, as the server counts).
const BATCH_OVERHEAD: usize = 256;
/// The largest message a batch can hold: a whole request (64 KiB) and its headers.
const MAX_ENTRY_BYTES: usize = herald_core::MAX_REQUEST_BYTES + 4096;
/// Attempts at one stream read that failed or timed out before the session gives up (1011).
const READ_ATTEMPTS: u32 = 3;

impl Session {
    /// Subscribes, waits until our server has the interest, sends `welcome`, and replays from
    /// the cursor (or fixes the starting one).
    pub(super) async fn start(&mut self, cursor: Option<String>) -> Result<LiveSub, End> {
        let st = self.state.clone();
        // Read before the revocation check: a revocation after it is a change this session's
        // mailbox hears of (it is registered), one before it is seen by the check.
        self.generation = st.events.current();
        if st.revocations.is_revoked(&self.claims) {
            st.metrics.auth_failure(AuthError::Revoked.code());
            return Err(End::auth(AuthError::Revoked));
        }
        let live = st.live.subscribe(subject::live_subject(&self.claims.sub));
        // While the live connection is down this does not resolve; its reconnect makes every
        // session catch up, so going on after the deadline loses nothing.
        let _ = tokio::time::timeout(st.config.live_ping_deadline, live.in_force()).await;
        self.epoch = self.generation.epoch;
        self.settle_at = Some(tokio::time::Instant::now() + st.config.interest_settle);
        let session_id = st.next_session_id();
        match cursor {
            None => {
                self.last = self.newest().await?;
                let c = self.cursor(self.last);
                self.send_now(protocol::welcome(&self.claims.sub, &session_id, self.claims.exp, Some(c))).await?;
                self.send_unread().await?;
            }
            Some(c) => {
                self.send_now(protocol::welcome(&self.claims.sub, &session_id, self.claims.exp, None)).await?;
                self.send_unread().await?;
                // Boxed: a start without a cursor (the most common) keeps no room for a replay
                // while it waits for its reads.
                match protocol::parse_cursor(&c) {
                    Some(c) if c.belongs_to(self.epoch) => Box::pin(self.replay(c.seq)).await?,
                    Some(_) => Box::pin(self.reset("cursor is from an earlier notification stream")).await?,
                    None => Box::pin(self.reset("unknown cursor")).await?,
                }
            }
        }
        Ok(live)
    }

    /// Sends everything after `cursor`, then `replayed`; `reset` when `cursor` is not (any
    /// longer) this user's notification in the stream.
    async fn replay(&mut self, cursor: u64) -> Result<(), End> {
        let st = self.state.clone();
        let started = std::time::Instant::now();
        let newest = self.newest().await?;
        if cursor > newest {
            return self.reset("unknown cursor").await;
        }
        // The stream drops a user's oldest first: if the cursor's own message is still there,
        // nothing after it is missing. Cursor 0 has no message of its own: the user's first
        // is gone when the user has as many as the stream keeps per user.
        if cursor == 0 {
            let cap = st.max_per_user.load(std::sync::atomic::Ordering::Relaxed);
            if cap > 0 && newest > 0 && self.count().await? >= cap as u64 {
                return self.reset("the stream no longer holds the user's first notifications").await;
            }
        } else if !self.holds(cursor).await? {
            return self.reset("cursor is older than the stream keeps, or unknown").await;
        }
        self.last = cursor;
        let count = self.catch_up_from(newest, true).await?;
        st.metrics.replays.inc();
        st.metrics.replay_sizes.observe(count as f64);
        st.metrics.replay_seconds.observe(started.elapsed().as_secs_f64());
        self.send_now(protocol::replayed(Some(self.cursor(self.last)), count)).await?;
        self.send_unread().await
    }

    /// `reset`, then everything the stream still holds for the user, then `replayed`: the
    /// client loses only what is truly gone (and reloads it from the inbox).
    pub(super) async fn reset(&mut self, reason: &str) -> Result<(), End> {
        self.state.metrics.resets.inc();
        self.flush_queue().await?;
        self.send_now(protocol::reset(reason)).await?;
        let newest = self.newest().await?;
        self.last = 0;
        let count = self.catch_up_from(newest, true).await?;
        self.send_now(protocol::replayed(Some(self.cursor(self.last)), count)).await?;
        self.send_unread().await
    }

    /// Whether the stream holds `seq` as one of this user's notifications.
    async fn holds(&mut self, seq: u64) -> Result<bool, End> {
        let first = self.read_batch(seq, 1).await?;
        match first.first() {
            Some(e) => Ok(e.seq == seq),
            // Nothing at or after a sequence at or below the leader's newest: a lagging
            // replica, or the user's messages are gone. The leader knows which.
            None => Ok(self.read_leader(seq).await?.is_some_and(|e| e.seq == seq)),
        }
    }

    /// Once the interest has reached every node: what was stored on another node before it
    /// did was dropped there, and is read now.
    pub(super) async fn settle(&mut self) -> Result<(), End> {
        let before = self.last;
        self.catch_up_to_newest().await?;
        if self.last > before {
            self.state.metrics.settle_catchups.inc();
        }
        Ok(())
    }

    /// Catches up to the newest sequence the leader has for the user.
    pub(super) async fn catch_up_to_newest(&mut self) -> Result<(), End> {
        let newest = self.newest().await?;
        if newest > self.last {
            // Boxed: rare (every session looks once, when its interest has settled), and large.
            Box::pin(self.catch_up(newest, false)).await?;
        }
        Ok(())
    }

    /// Sends what the stream holds for this user after `last`, at least up to `target` (a
    /// sequence known to exist), as live notifications.
    pub(super) async fn catch_up(&mut self, target: u64, replay: bool) -> Result<u64, End> {
        let n = self.catch_up_from(target, replay).await?;
        if !replay {
            self.state.metrics.gap_filled.add(n);
        }
        Ok(n)
    }

    async fn catch_up_from(&mut self, target: u64, replay: bool) -> Result<u64, End> {
        let batch = self.state.config.replay_batch.max(1);
        let mut sent = 0;
        let mut short = 0u32;
        loop {
            if short > STALE_RETRIES {
                // The replicas keep answering short: the leader has everything acknowledged.
                match self.read_leader(self.last + 1).await? {
                    Some(e) => sent += self.write(&[e], replay).await?,
                    None => return Ok(sent), // gone (purged) since: nothing left to send
                }
                if self.last >= target {
                    return Ok(sent);
                }
                continue;
            }
            // At the tip there is nothing to read back: such reconnects are never limited.
            if replay && self.last < target {
                self.check_replay_budget()?;
            }
            let entries = self.read_batch(self.last + 1, batch).await?;
            // Stopped by the count, or perhaps by the bytes (the next message could not fit):
            // either way more may follow at once, which is no stale read.
            let bytes: usize = entries.iter().map(|e| e.payload.len() + BATCH_OVERHEAD).sum();
            if replay {
                self.state.replay_limit.charge(self.claims.sub.clone(), bytes as f64);
            }
            let full = entries.len() >= batch
                || (!entries.is_empty() && bytes + MAX_ENTRY_BYTES > self.state.config.replay_batch_bytes.max(1));
            sent += self.write(&entries, replay).await?;
            if full {
                continue;
            }
            if self.last >= target {
                return Ok(sent);
            }
            self.state.metrics.stale_reads.inc();
            short += 1;
            tokio::time::sleep(Duration::from_millis(20 * u64::from(short))).await;
        }
    }

    /// A replay (or reset) reads on only while its user owes nothing (`Limits::
    /// replay_bytes_per_user_per_sec`); else 4029, and the client resumes from its cursor.
    fn check_replay_budget(&self) -> Result<(), End> {
        let Err(wait) = self.state.replay_limit.check_debt(self.claims.sub.clone()) else { return Ok(()) };
        self.state.metrics.replays_limited.inc();
        Err(End::Close {
            code: protocol::close::TOO_SLOW,
            error: "too_many_replays",
            message: format!(
                "this user's reconnects have read back too much at once; reconnect with your cursor in {} s",
                wait.as_secs().max(1)
            ),
        })
    }

    /// Writes the entries after `last` straight to the socket (after whatever is queued), as
    /// one flushed batch under the write timeout; muted copies only move `last`.
    async fn write(&mut self, entries: &[Entry], replay: bool) -> Result<u64, End> {
        if !entries.iter().any(|e| e.seq > self.last) {
            return Ok(0);
        }
        // A replayed notification carries its read state as it is now, not as it was stored.
        let reads = if replay { self.current_reads(entries).await } else { Vec::new() };
        self.flush_queue().await?;
        let (epoch, mut last, mut sent) = (self.epoch, self.last, 0u64);
        let socket = &mut self.socket;
        let write = async {
            for (i, e) in entries.iter().enumerate() {
                if e.seq <= last {
                    continue;
                }
                if !e.muted {
                    let payload = match reads.get(i) {
                        Some(Some(p)) => p.as_str(),
                        _ => std::str::from_utf8(&e.payload).unwrap_or("null"),
                    };
                    let frame = protocol::notification(herald_core::Cursor::new(epoch, e.seq), replay, payload);
                    socket.feed(Message::Text(frame)).await?;
                    sent += 1;
                }
                last = e.seq;
            }
            socket.flush().await
        };
        match tokio::time::timeout(self.state.config.limits.write_timeout, write).await {
            Err(_) => return Err(End::too_slow("the client is not reading what it missed")),
            Ok(Err(_)) => return Err(End::Gone),
            Ok(Ok(())) => {}
        }
        self.last = last;
        self.state.metrics.frames_out.add(sent);
        Ok(sent)
    }

    /// The newest sequence of the user, from the leader.
    async fn newest(&mut self) -> Result<u64, End> {
        let (st, subject) = (self.state.clone(), subject::user_subject(&self.claims.sub));
        bounded(&st, || st.log.last_seq(&subject)).await
    }

    async fn count(&mut self) -> Result<u64, End> {
        let (st, subject) = (self.state.clone(), subject::user_subject(&self.claims.sub));
        bounded(&st, || st.log.count(&subject)).await
    }

    async fn read_batch(&mut self, from: u64, batch: usize) -> Result<Vec<Entry>, End> {
        let (st, subject) = (self.state.clone(), subject::user_subject(&self.claims.sub));
        let max_bytes = st.config.replay_batch_bytes.max(1);
        bounded(&st, || st.log.batch(&subject, from, batch, max_bytes)).await
    }

    async fn read_leader(&mut self, from: u64) -> Result<Option<Entry>, End> {
        let (st, subject) = (self.state.clone(), subject::user_subject(&self.claims.sub));
        bounded(&st, || st.log.next_leader(&subject, from)).await
    }
}

/// One stream read, in turn with every session's (see `catchup_concurrency`), tried again
/// when it fails (a leader election, a reconnect) before the session gives up with 1011.
async fn bounded<T, F, Fut>(state: &AppState, mut read: F) -> Result<T, End>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, LogError>>,
{
    let mut attempt = 0;
    loop {
        let result = {
            let _permit = state.catchups.acquire().await.map_err(End::internal)?;
            // Boxed, and made only once the turn has come: a session waiting its turn holds a
            // closure, not the NATS request's future.
            Box::pin(read()).await
        };
        match result {
            Ok(v) => return Ok(v),
            Err(e) if attempt + 1 >= READ_ATTEMPTS => return Err(End::internal(e)),
            Err(_) => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(250 * u64::from(attempt))).await;
            }
        }
    }
}
