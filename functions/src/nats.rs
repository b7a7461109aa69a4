//! The outbox on JetStream: per-user copies to `HERALD_USER`, dead letters to `HERALD_DLQ`.
//!
//! NATS failures (a timeout, no responders while a stream leader moves, a broken connection)
//! are all transient: requests are at most 64 KiB, so nothing we publish is refused for itself.

use async_nats::jetstream::{self, message::PublishMessage};
use bytes::Bytes;
use futures::FutureExt;
use futures::future::BoxFuture;
use herald_core::notification::{
    HDR_ACCEPTED_AT, HDR_DELIVERIES, HDR_ORIGINAL_SEQ, HDR_REASON, HDR_REASON_CODE, HDR_SOURCE,
};
use herald_core::{subject, user_msg_id};

use crate::ports::{DeadLetter, Failure, Outbox};

#[derive(Debug, Clone)]
pub struct JetStreamOutbox {
    js: jetstream::Context,
}

impl JetStreamOutbox {
    pub fn new(js: jetstream::Context) -> Self {
        JetStreamOutbox { js }
    }
}

impl Outbox for JetStreamOutbox {
    type Pending = BoxFuture<'static, Result<u64, Failure>>;

    async fn send_user(
        &self,
        user: &str,
        id: &str,
        payload: Bytes,
        accepted_at_ms: i64,
    ) -> Result<Self::Pending, Failure> {
        let publish = PublishMessage::build()
            .payload(payload)
            .message_id(user_msg_id(user, id))
            .header(HDR_ACCEPTED_AT, accepted_at_ms.to_string().as_str());
        let ack = self
            .js
            .send_publish(subject::user_subject(user), publish)
            .await
            .map_err(|e| Failure::transient("publish user copy", e))?;
        Ok(async move { ack.await.map(|a| a.sequence).map_err(|e| Failure::transient("publish user copy ack", e)) }
            .boxed())
    }

    async fn dead_letter(&self, letter: DeadLetter<'_>) -> Result<(), Failure> {
        // A source that is not one subject token still gets a findable dead letter.
        let source = if subject::is_valid_source(letter.source) { letter.source } else { "_invalid" };
        // Header values cannot hold line breaks; the reason is ours, but it quotes serde.
        let reason: String = letter.reason.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
        let publish = PublishMessage::build()
            .payload(Bytes::copy_from_slice(letter.body))
            // A request is dead-lettered once, whoever does it (the function, or the runner
            // turning an advisory into a dead letter), inside the DLQ's duplicate window.
            .message_id(format!("in-{}", letter.original_seq))
            .header(HDR_REASON_CODE, letter.code)
            .header(HDR_DELIVERIES, letter.deliveries.to_string().as_str())
            .header(HDR_REASON, reason.as_str())
            .header(HDR_SOURCE, subject::token(letter.source).as_str())
            .header(HDR_ORIGINAL_SEQ, letter.original_seq.to_string().as_str());
        self.js
            .send_publish(subject::dlq_subject(source), publish)
            .await
            .map_err(|e| Failure::transient("publish dead letter", e))?
            .await
            .map_err(|e| Failure::transient("publish dead letter ack", e))?;
        Ok(())
    }
}
