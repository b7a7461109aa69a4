//! Re-drive: sends dead letters back to `herald.in.<source>` after a fix, and removes them from
//! `HERALD_DLQ` once `HERALD_IN` has stored the copy.
//!
//! The copy keeps the original body, so the notification keeps its `id`, and everything the
//! first attempts stored stays one notification per recipient (the conditional inbox write and
//! the per-user `Nats-Msg-Id` see to it). Its `Nats-Msg-Id` is not the bare id: inside
//! `HERALD_IN`'s duplicate window that would be dropped as a duplicate of the original, and the
//! re-drive would silently do nothing. It is `redrive-<dlq seq>.<id token>`: unique per dead
//! letter, so a re-drive is always handled, yet a re-drive retried after a crash (published, not
//! yet removed) is deduplicated. Only the dead letters present when the command starts are
//! re-driven, so a request that fails again is not looped.

use std::time::Duration;

use async_nats::jetstream::{
    self,
    consumer::{AckPolicy, DeliverPolicy, pull},
    message::PublishMessage,
};
use futures::StreamExt;
use herald_core::notification::{HDR_ACCEPTED_AT, HDR_ORIGINAL_SEQ, HDR_REDRIVE_OF, HDR_SOURCE};
use herald_core::subject::{self, DLQ_PREFIX, DLQ_STREAM};

/// Which dead letters to re-drive; `None` matches all.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub source: Option<String>,
    /// The `HERALD_IN` sequence of the original request.
    pub original_seq: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redriven {
    pub dlq_seq: u64,
    pub original_seq: Option<u64>,
    pub source: String,
    /// The `HERALD_IN` sequence of the re-driven copy.
    pub new_seq: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum RedriveError {
    #[error("reading the dead-letter stream: {0}")]
    Read(String),
    #[error("re-publishing dead letter {dlq_seq}: {message}")]
    Publish { dlq_seq: u64, message: String },
    #[error("removing dead letter {dlq_seq}: {message}")]
    Remove { dlq_seq: u64, message: String },
}

/// Re-drives the matching dead letters; returns what was re-driven, oldest first. Dead letters
/// whose source is unknown (`_invalid`, `_unknown`) stay where they are.
pub async fn redrive(js: &jetstream::Context, filter: &Filter) -> Result<Vec<Redriven>, RedriveError> {
    redrive_with_progress(js, filter, |_| {}).await
}

/// [`redrive`], calling `progress` after each dead letter is re-driven (for a progress line).
pub async fn redrive_with_progress(
    js: &jetstream::Context,
    filter: &Filter,
    mut progress: impl FnMut(&Redriven),
) -> Result<Vec<Redriven>, RedriveError> {
    let read = |e: &dyn std::fmt::Display| RedriveError::Read(e.to_string());
    let mut dlq = js.get_stream(DLQ_STREAM).await.map_err(|e| read(&e))?;
    let last = dlq.info().await.map_err(|e| read(&e))?.state.last_sequence;
    let filter_subject = match &filter.source {
        Some(s) => subject::dlq_subject(s),
        None => format!("{DLQ_PREFIX}>"),
    };
    let consumer = dlq
        .create_consumer(pull::Config {
            deliver_policy: DeliverPolicy::All,
            ack_policy: AckPolicy::None,
            filter_subject,
            inactive_threshold: Duration::from_secs(60),
            ..Default::default()
        })
        .await
        .map_err(|e| read(&e))?;
    let mut done = Vec::new();
    'pages: loop {
        let mut page = consumer
            .fetch()
            .max_messages(256)
            .expires(Duration::from_millis(500))
            .messages()
            .await
            .map_err(|e| read(&e))?;
        let mut any = false;
        while let Some(m) = page.next().await {
            let m = m.map_err(|e| read(&e))?;
            any = true;
            let info = m.info().map_err(|e| read(&e))?;
            let dlq_seq = info.stream_sequence;
            if dlq_seq > last {
                break 'pages;
            }
            let header = |name: &str| m.headers.as_ref().and_then(|h| h.get(name)).map(|v| v.as_str().to_owned());
            let original_seq = header(HDR_ORIGINAL_SEQ).and_then(|s| s.parse().ok());
            if filter.original_seq.is_some() && filter.original_seq != original_seq {
                continue;
            }
            let Some(source) = m.subject.strip_prefix(DLQ_PREFIX).map(str::to_owned) else {
                continue;
            };
            if source.starts_with('_') || !subject::is_valid_source(&source) {
                continue;
            }
            let id = serde_json::from_slice::<serde_json::Value>(&m.payload)
                .ok()
                .and_then(|v| v.get("id").and_then(|i| i.as_str()).map(subject::token))
                .unwrap_or_default();
            let mut publish = PublishMessage::build()
                .payload(m.payload.clone())
                .message_id(format!("redrive-{dlq_seq}.{id}"))
                .header(HDR_SOURCE, source.as_str());
            if let Some(seq) = original_seq {
                publish = publish.header(HDR_REDRIVE_OF, seq.to_string().as_str());
            }
            // When the original was accepted: copies published since then are found, not sent again.
            if let Some(at) = header(HDR_ACCEPTED_AT) {
                publish = publish.header(HDR_ACCEPTED_AT, at.as_str());
            }
            let publish_err = |e: &dyn std::fmt::Display| RedriveError::Publish { dlq_seq, message: e.to_string() };
            let ack = js
                .send_publish(subject::in_subject(&source), publish)
                .await
                .map_err(|e| publish_err(&e))?
                .await
                .map_err(|e| publish_err(&e))?;
            dlq.delete_message(dlq_seq).await.map_err(|e| RedriveError::Remove { dlq_seq, message: e.to_string() })?;
            let r = Redriven { dlq_seq, original_seq, source, new_seq: ack.sequence };
            progress(&r);
            done.push(r);
        }
        if !any {
            break;
        }
    }
    Ok(done)
}
