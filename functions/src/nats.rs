//! The outbox on JetStream: per-user copies to `HERALD_USER`, dead letters to `HERALD_DLQ`.
//!
//! Copies are sent one after the other on the process's connection, so they are stored in the
//! order they were sent; their acks are awaited in that same order by one task, which turns each
//! sequence into a [`Cursor`] with the stream's epoch (its creation time). The epoch is read at
//! start and again whenever an ack's sequence goes backwards (the stream was recreated: a new
//! stream starts at 1) or the stream is reported missing.
//!
//! NATS failures (a timeout, no responders while a stream leader moves, a broken connection)
//! are all transient: requests are at most 64 KiB, so nothing we publish is refused for itself.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use async_nats::jetstream::{self, context::PublishAckFuture, message::PublishMessage};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use futures::FutureExt;
use futures::future::BoxFuture;
use herald_core::notification::{
    HDR_ACCEPTED_AT, HDR_DELIVERIES, HDR_MUTED, HDR_ORIGINAL_SEQ, HDR_REASON, HDR_REASON_CODE, HDR_REDRIVE_OF,
    HDR_SOURCE,
};
use herald_core::state::ReadEvent;
use herald_core::subject::USER_STREAM;
use herald_core::{Cursor, subject, user_msg_id};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::sync::{Mutex, mpsc, oneshot};
use tracing::{info, warn};

use crate::ports::{Acked, Count, DeadLetter, Failure, Outbox, UserCopy};

/// The steps of this outbox, as named in its [`Failure`]s: a failure of one is NATS's (see
/// [`crate::settle::retry_delay`]).
pub const STEPS: &[&str] = &[
    "HERALD_USER info",
    "publish user copy",
    "publish user copy ack",
    "find user copy",
    "publish dead letter",
    "publish dead letter ack",
    "announce unread",
];

/// Copies sent whose ack is not yet awaited; a sender waits when it is full.
const ACKS_QUEUED: usize = 8192;
/// At most this many of a user's messages are read when looking for a copy (the stream keeps
/// `HERALD_USER_MAX_PER_USER`, 1,000 by default).
const MAX_SCAN: usize = 20_000;

/// How long a copy's ack may take, counted from its send. async-nats starts its own timeout
/// only when the ack is awaited, and acks are awaited one after the other: after a connection
/// was lost with N copies in flight, their timeouts would run one after the other (N × 5 s; the
/// chaos suite saw a request held two minutes).
const ACK_TIMEOUT: Duration = Duration::from_secs(5);

type AckJob = (PublishAckFuture, tokio::time::Instant, oneshot::Sender<Result<Acked, Failure>>);

#[derive(Debug, Clone)]
pub struct JetStreamOutbox {
    js: jetstream::Context,
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    /// Held while sending, so the order of the ack queue is the order on the connection.
    acks: Mutex<mpsc::Sender<AckJob>>,
    info: Arc<StreamInfo>,
}

/// What the outbox knows of `HERALD_USER`; 0 means not read yet.
#[derive(Debug, Default)]
struct StreamInfo {
    epoch: AtomicU64,
    window_ms: AtomicU64,
}

impl StreamInfo {
    async fn refresh(&self, js: &jetstream::Context) -> Result<u64, Failure> {
        let mut stream = js.get_stream(USER_STREAM).await.map_err(|e| Failure::transient("HERALD_USER info", e))?;
        let info = stream.info().await.map_err(|e| Failure::transient("HERALD_USER info", e))?;
        let epoch = info.created.unix_timestamp().max(1) as u64;
        let old = self.epoch.swap(epoch, Relaxed);
        if old != 0 && old != epoch {
            info!(old, epoch, "HERALD_USER was recreated: cursors carry its new epoch");
        }
        self.window_ms.store(info.config.duplicate_window.as_millis() as u64, Relaxed);
        Ok(epoch)
    }
}

impl JetStreamOutbox {
    /// Starts the task that awaits acks (it ends when the last clone is dropped). Call
    /// [`JetStreamOutbox::load`] before publishing copies.
    pub fn new(js: jetstream::Context) -> Self {
        let (tx, rx) = mpsc::channel(ACKS_QUEUED);
        let info = Arc::new(StreamInfo::default());
        tokio::spawn(await_acks(js.clone(), info.clone(), rx));
        JetStreamOutbox { js, shared: Arc::new(Shared { acks: Mutex::new(tx), info }) }
    }

    /// Reads `HERALD_USER`'s epoch and duplicate window.
    pub async fn load(&self) -> Result<(), Failure> {
        self.shared.info.refresh(&self.js).await.map(|_| ())
    }
}

/// Awaits acks in send order. A sequence that is not above the previous one (duplicates
/// aside, which answer with the original's) means the stream was recreated.
async fn await_acks(js: jetstream::Context, info: Arc<StreamInfo>, mut rx: mpsc::Receiver<AckJob>) {
    let mut last = 0u64;
    while let Some((ack, deadline, reply)) = rx.recv().await {
        let Ok(acked) = tokio::time::timeout_at(deadline, ack.into_future()).await else {
            let _ = reply.send(Err(Failure::transient("publish user copy ack", "no ack within 5 s of the send")));
            continue;
        };
        let out = match acked {
            Ok(a) => {
                let backwards = !a.duplicate && a.sequence <= last;
                if !a.duplicate {
                    last = a.sequence;
                }
                let epoch = match info.epoch.load(Relaxed) {
                    e if e == 0 || backwards => info.refresh(&js).await,
                    e => Ok(e),
                };
                epoch.map(|e| Acked { cursor: Cursor::new(e, a.sequence), at: OffsetDateTime::now_utc() })
            }
            Err(e) => {
                if matches!(e.kind(), jetstream::context::PublishErrorKind::StreamNotFound) {
                    // Re-read once it is back; until then every publish fails anyway.
                    info.epoch.store(0, Relaxed);
                }
                Err(Failure::transient("publish user copy ack", e))
            }
        };
        let _ = reply.send(out);
    }
}

impl Outbox for JetStreamOutbox {
    type Pending = BoxFuture<'static, Result<Acked, Failure>>;

    async fn send_user(&self, copy: UserCopy<'_>) -> Result<Self::Pending, Failure> {
        let mut publish = PublishMessage::build()
            .payload(copy.payload)
            .message_id(user_msg_id(copy.user, copy.id))
            .header(HDR_ACCEPTED_AT, copy.accepted_at_ms.to_string().as_str());
        if copy.muted {
            publish = publish.header(HDR_MUTED, "1");
        }
        let (reply, answer) = oneshot::channel();
        {
            let acks = self.shared.acks.lock().await;
            let ack = self
                .js
                .send_publish(subject::user_subject(copy.user), publish)
                .await
                .map_err(|e| Failure::transient("publish user copy", e))?;
            acks.send((ack, tokio::time::Instant::now() + ACK_TIMEOUT, reply))
                .await
                .map_err(|_| Failure::transient("publish user copy", "the ack task ended"))?;
        }
        Ok(async move { answer.await.map_err(|_| Failure::transient("publish user copy ack", "the ack task ended"))? }
            .boxed())
    }

    async fn find_user_copy(&self, user: &str, id: &str, since: OffsetDateTime) -> Result<Option<Cursor>, Failure> {
        let subject = subject::user_subject(user);
        let want = user_msg_id(user, id);
        let api = format!("$JS.API.STREAM.MSG.GET.{USER_STREAM}");
        let since = since.format(&Rfc3339).map_err(|e| Failure::permanent("find user copy", e))?;
        let mut request = serde_json::json!({ "next_by_subj": subject, "start_time": since });
        for _ in 0..MAX_SCAN {
            let answer = self
                .js
                .client()
                .request(api.clone(), Bytes::from(request.to_string()))
                .await
                .map_err(|e| Failure::transient("find user copy", e))?;
            let v: serde_json::Value =
                serde_json::from_slice(&answer.payload).map_err(|e| Failure::transient("find user copy", e))?;
            if let Some(err) = v.get("error") {
                if err.get("code").and_then(|c| c.as_u64()) == Some(404)
                    && err.get("err_code").and_then(|c| c.as_u64()) == Some(10037)
                {
                    return Ok(None); // no (more) message of the user
                }
                self.shared.info.epoch.store(0, Relaxed);
                return Err(Failure::transient("find user copy", err.to_string()));
            }
            let message = &v["message"];
            let seq = message["seq"].as_u64().ok_or_else(|| Failure::transient("find user copy", "no seq"))?;
            let headers = message["hdrs"].as_str().and_then(|h| STANDARD.decode(h).ok()).unwrap_or_default();
            if msg_id(&headers).is_some_and(|m| m == want) {
                let epoch = match self.shared.info.epoch.load(Relaxed) {
                    0 => self.shared.info.refresh(&self.js).await?,
                    e => e,
                };
                return Ok(Some(Cursor::new(epoch, seq)));
            }
            request = serde_json::json!({ "seq": seq + 1, "next_by_subj": subject });
        }
        warn!(user, id, "gave up looking for a copy after {MAX_SCAN} messages");
        Err(Failure::transient("find user copy", "too many messages to look through"))
    }

    fn duplicate_window(&self) -> Duration {
        Duration::from_millis(self.shared.info.window_ms.load(Relaxed))
    }

    async fn dead_letter(&self, letter: DeadLetter<'_>) -> Result<(), Failure> {
        // A source that is not one subject token still gets a findable dead letter.
        let source = if subject::is_valid_source(letter.source) { letter.source } else { "_invalid" };
        // Header values cannot hold line breaks; the reason is ours, but it quotes serde.
        let reason: String = letter.reason.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
        let mut publish = PublishMessage::build()
            .payload(Bytes::copy_from_slice(letter.body))
            // A request is dead-lettered once, whoever does it (the function, or the runner
            // turning an advisory into a dead letter), inside the DLQ's duplicate window.
            .message_id(format!("in-{}", letter.original_seq))
            .header(HDR_REASON_CODE, letter.code)
            .header(HDR_DELIVERIES, letter.deliveries.to_string().as_str())
            .header(HDR_REASON, reason.as_str())
            .header(HDR_SOURCE, subject::token(letter.source).as_str())
            .header(HDR_ORIGINAL_SEQ, letter.original_seq.to_string().as_str());
        if let Some(at) = letter.accepted_at_ms {
            publish = publish.header(HDR_ACCEPTED_AT, at.to_string().as_str());
        }
        self.js
            .send_publish(subject::dlq_subject(source), publish)
            .await
            .map_err(|e| Failure::transient("publish dead letter", e))?
            .await
            .map_err(|e| Failure::transient("publish dead letter ack", e))?;
        Ok(())
    }

    async fn announce_unread(&self, user: &str, count: Count) -> Result<(), Failure> {
        let event = ReadEvent::count(count.unread, count.rev);
        let body = serde_json::to_vec(&event).map_err(|e| Failure::permanent("announce unread", e))?;
        self.js
            .client()
            .publish(subject::state_subject(user), body.into())
            .await
            .map_err(|e| Failure::transient("announce unread", e))
    }
}

/// On a re-driven request (it carries `Herald-Redrive-Of`): when its copies may first have been
/// published, the original's acceptance (`Herald-Accepted-At`, ms), or the Unix epoch when the
/// dead letter did not say.
pub fn redrive_since(headers: Option<&async_nats::HeaderMap>) -> Option<OffsetDateTime> {
    let headers = headers?;
    headers.get(HDR_REDRIVE_OF)?;
    let ms = headers.get(HDR_ACCEPTED_AT).and_then(|v| v.as_str().parse::<i64>().ok()).unwrap_or(0);
    Some(OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000).unwrap_or(OffsetDateTime::UNIX_EPOCH))
}

/// The `Nats-Msg-Id` in a raw header block (`NATS/1.0\r\nName: value\r\n…`).
fn msg_id(headers: &[u8]) -> Option<&str> {
    std::str::from_utf8(headers).ok()?.lines().skip(1).find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim().eq_ignore_ascii_case("Nats-Msg-Id").then(|| value.trim())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_msg_id_among_raw_headers() {
        let raw = b"NATS/1.0\r\nHerald-Accepted-At: 5\r\nNats-Msg-Id: dXNlcg.aWQ\r\n\r\n";
        assert_eq!(msg_id(raw), Some("dXNlcg.aWQ"));
        assert_eq!(msg_id(b"NATS/1.0\r\n\r\n"), None);
    }

    #[test]
    fn every_failure_of_this_outbox_is_named_in_steps() {
        let source = include_str!("nats.rs");
        let needle = concat!("Failure::transient", "(\"");
        for part in source.split(needle).skip(1) {
            let what = &part[..part.find('"').expect("a closing quote")];
            assert!(STEPS.contains(&what), "{what:?} is missing from STEPS");
        }
    }
}
