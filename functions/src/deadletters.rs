//! Turns captured JetStream advisories into dead letters, so that every request that ends
//! without success is on `HERALD_DLQ` with its original body, source and reason.
//!
//! The advisories name only the `HERALD_IN` sequence; the original is read back from the stream
//! by that sequence. A request the function already dead-lettered was terminated with
//! [`TERM_DEAD_LETTERED`] and is skipped; should its advisory slip through anyway, the dead
//! letter's `Nats-Msg-Id` (`in-<seq>`) makes the DLQ drop the copy. Advisories of consumers
//! other than ours (an operator's probe, say) are not dead letters and are skipped.

use std::time::Duration;

use async_nats::jetstream::{
    self, AckKind,
    consumer::{AckPolicy, DeliverPolicy, pull},
    stream::LastRawMessageErrorKind,
};
use futures::StreamExt;
use herald_core::subject::{ADVISORY_STREAM, IN_STREAM, source_of};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::ports::{DeadLetter, Outbox};
use crate::settle::{CODE_MAX_DELIVERIES, TERM_DEAD_LETTERED};

/// Reason code of a request a consumer terminated without dead-lettering it.
pub const CODE_TERMINATED: &str = "terminated";

/// The fields we use of `io.nats.jetstream.advisory.v1.max_deliver` and `.terminated`.
#[derive(Debug, Deserialize)]
pub struct Advisory {
    #[serde(rename = "type")]
    pub kind: String,
    pub stream: String,
    pub consumer: String,
    pub stream_seq: u64,
    #[serde(default)]
    pub deliveries: u64,
    #[serde(default)]
    pub reason: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum DeadLetterError {
    #[error("the advisory stream: {0}")]
    Stream(String),
    #[error("the advisory consumer: {0}")]
    Consumer(String),
}

/// What an advisory means for us: `None` when it is not ours to dead-letter.
pub fn letter_for(advisory: &Advisory, consumer: &str) -> Option<(&'static str, String)> {
    if advisory.stream != IN_STREAM || advisory.consumer != consumer {
        return None;
    }
    if advisory.kind.ends_with(".terminated") {
        let reason = advisory.reason.as_deref().unwrap_or("");
        if reason.starts_with(TERM_DEAD_LETTERED) {
            return None;
        }
        return Some((
            CODE_TERMINATED,
            format!(
                "terminated by consumer {consumer} after {} deliveries: {}",
                advisory.deliveries,
                if reason.is_empty() { "no reason given" } else { reason }
            ),
        ));
    }
    if advisory.kind.ends_with(".max_deliver") {
        return Some((
            CODE_MAX_DELIVERIES,
            format!(
                "delivered {} times without success; the last delivery was not answered \
                 (its handler timed out or stopped)",
                advisory.deliveries
            ),
        ));
    }
    None
}

/// Runs until `shutdown`, on the durable consumer `durable` of `HERALD_ADVISORIES` (shared by
/// every runner and bridge, so each advisory is handled once).
pub async fn run<O: Outbox>(
    js: jetstream::Context,
    consumer: String,
    durable: String,
    outbox: O,
    shutdown: CancellationToken,
) -> Result<(), DeadLetterError> {
    let advisories = js.get_stream(ADVISORY_STREAM).await.map_err(|e| DeadLetterError::Stream(e.to_string()))?;
    let requests = js.get_stream(IN_STREAM).await.map_err(|e| DeadLetterError::Stream(e.to_string()))?;
    let pull = advisories
        .create_consumer(pull::Config {
            durable_name: Some(durable.clone()),
            description: Some("herald: advisories to dead letters".to_owned()),
            deliver_policy: DeliverPolicy::All,
            ack_policy: AckPolicy::Explicit,
            ack_wait: Duration::from_secs(30),
            max_ack_pending: 64,
            ..Default::default()
        })
        .await
        .map_err(|e| DeadLetterError::Consumer(e.to_string()))?;
    while !shutdown.is_cancelled() {
        let Some(mut messages) = crate::pull::open(&pull, 16, &shutdown, "advisories").await else { break };
        loop {
            let next = tokio::select! {
                _ = shutdown.cancelled() => break,
                m = messages.next() => m,
            };
            let message = match next {
                Some(Ok(m)) => m,
                Some(Err(_)) => continue,
                None => break,
            };
            let ack = match handle(&requests, &consumer, &outbox, &message.payload).await {
                Ok(()) => message.double_ack().await,
                Err(e) => {
                    warn!(error = %e, "turning an advisory into a dead letter failed; retrying");
                    message.ack_with(AckKind::Nak(Some(Duration::from_secs(1)))).await
                }
            };
            if let Err(e) = ack {
                warn!(error = %e, "acking an advisory failed; it comes again");
            }
        }
    }
    Ok(())
}

async fn handle<O: Outbox>(
    requests: &jetstream::stream::Stream,
    consumer: &str,
    outbox: &O,
    payload: &[u8],
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let Ok(advisory) = serde_json::from_slice::<Advisory>(payload) else {
        // Not an advisory we know: nothing to dead-letter, and retrying will not change it.
        return Ok(());
    };
    let Some((code, mut reason)) = letter_for(&advisory, consumer) else {
        return Ok(());
    };
    let (subject, body, accepted_at_ms) = match requests.get_raw_message(advisory.stream_seq).await {
        Ok(m) => (m.subject.to_string(), m.payload, Some((m.time.unix_timestamp_nanos() / 1_000_000) as i64)),
        Err(e) if matches!(e.kind(), LastRawMessageErrorKind::NoMessageFound) => {
            reason.push_str(" (the original is no longer in HERALD_IN)");
            (String::new(), Default::default(), None)
        }
        Err(e) => return Err(e.into()),
    };
    let source = source_of(&subject).unwrap_or("_unknown");
    info!(seq = advisory.stream_seq, source, code, "dead-lettering from an advisory");
    outbox
        .dead_letter(DeadLetter {
            source,
            body: &body,
            original_seq: advisory.stream_seq,
            code,
            reason: &reason,
            deliveries: advisory.deliveries,
            accepted_at_ms,
        })
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn advisory(kind: &str, consumer: &str, reason: Option<&str>) -> Advisory {
        Advisory {
            kind: format!("io.nats.jetstream.advisory.v1.{kind}"),
            stream: IN_STREAM.to_owned(),
            consumer: consumer.to_owned(),
            stream_seq: 7,
            deliveries: 3,
            reason: reason.map(str::to_owned),
        }
    }

    #[test]
    fn only_our_consumers_give_ups_become_dead_letters_once() {
        assert_eq!(
            letter_for(&advisory("max_deliver", "deliver", None), "deliver").map(|l| l.0),
            Some(CODE_MAX_DELIVERIES)
        );
        assert_eq!(
            letter_for(&advisory("terminated", "deliver", Some("bad")), "deliver").map(|l| l.0),
            Some(CODE_TERMINATED)
        );
        let already = format!("{TERM_DEAD_LETTERED}: malformed");
        assert!(letter_for(&advisory("terminated", "deliver", Some(&already)), "deliver").is_none());
        assert!(letter_for(&advisory("max_deliver", "probe", None), "deliver").is_none());
    }
}
