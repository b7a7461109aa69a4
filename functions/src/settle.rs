//! What becomes of one delivery of a request: shared by the runner and the Lambda handler, so
//! both retry, give up and dead-letter alike.
//!
//! A transient failure is retried with a growing delay until the consumer's `max_deliver`; on
//! the last delivery, and at once for a permanent failure, the request is dead-lettered with the
//! error as its reason and then terminated. Should even that fail (NATS down on the last
//! delivery, or the process killed), the server's MAX_DELIVERIES advisory is the safety net
//! (see [`crate::deadletters`]).

use std::time::Duration;

use crate::deliver::{Event, Outcome, Report, deliver};
use crate::metrics::Stages;
use crate::order::Pass;
use crate::ports::{DeadLetter, Failure, Inbox, Outbox};

/// The reason sent with `+TERM` for a request that is already on the dead-letter stream; the
/// advisory of that termination is then skipped, so nothing is dead-lettered twice.
pub const TERM_DEAD_LETTERED: &str = "herald: dead-lettered";

/// How long past its nak delay a failed request keeps its place for its users' copies (see
/// [`crate::order`]): enough for the redelivery to come back to this process.
pub const HOLD_GRACE: Duration = Duration::from_secs(5);

/// Reason code of a request that failed transiently on every delivery.
pub const CODE_MAX_DELIVERIES: &str = "max_deliveries";
/// Reason code of a request the store refused for itself.
pub const CODE_PERMANENT: &str = "permanent_error";

#[derive(Debug)]
pub enum Settle {
    /// Stored and published: ack.
    Delivered(Report),
    /// On the dead-letter stream with `code`: terminate, with [`TERM_DEAD_LETTERED`].
    DeadLettered { code: String },
    /// Not done yet: nak with `delay`.
    Retry { delay: Duration, error: Failure },
}

/// One delivery (`event.delivered` counting from 1; `max_deliver` <= 0 means unbounded),
/// bounded by `deadline`: a handler that hangs is stopped there and retried.
#[allow(clippy::too_many_arguments)]
pub async fn settle<I: Inbox, O: Outbox>(
    inbox: &I,
    outbox: &O,
    fanout_concurrency: usize,
    event: Event<'_>,
    max_deliver: i64,
    deadline: Duration,
    pass: &Pass,
    stages: &Stages,
) -> Settle {
    let delivered = event.delivered;
    let work = deliver(inbox, outbox, fanout_concurrency, event, pass, stages);
    let outcome = match tokio::time::timeout(deadline, work).await {
        Ok(outcome) => outcome,
        Err(_) => Err(Failure::transient(
            "handler deadline",
            format!("not done within {deadline:?} (HERALD_HANDLER_DEADLINE_SECONDS)"),
        )),
    };
    let error = match outcome {
        Ok(Outcome::Delivered(report)) => return Settle::Delivered(report),
        Ok(Outcome::DeadLettered(reason)) => {
            return Settle::DeadLettered { code: reason.code().to_owned() };
        }
        Err(e) => e,
    };
    let last = max_deliver > 0 && delivered >= max_deliver as u64;
    if error.is_transient() && !last {
        return Settle::Retry { delay: retry_delay(&error, delivered), error };
    }
    let (code, reason) = if error.is_transient() {
        (CODE_MAX_DELIVERIES, format!("no success after {delivered} deliveries; last error: {}", error.chain()))
    } else {
        (CODE_PERMANENT, error.chain())
    };
    let letter = DeadLetter {
        source: event.source,
        body: event.body,
        original_seq: event.stream_seq,
        code,
        reason: &reason,
        deliveries: delivered,
        accepted_at_ms: Some((event.accepted_at.unix_timestamp_nanos() / 1_000_000) as i64),
    };
    match outbox.dead_letter(letter).await {
        Ok(()) => Settle::DeadLettered { code: code.to_owned() },
        // Retried; past max_deliver the advisory takes over.
        Err(e) => Settle::Retry { delay: retry_delay(&e, delivered), error: e },
    }
}

/// The first deliveries of a request that failed on NATS come at most this far apart: a stream
/// leader's election or a node's restart heals in seconds, and a growing backoff would keep the
/// request waiting long after (the chaos suite saw 30 s).
const NATS_RETRY_CAP: Duration = Duration::from_secs(1);
/// Deliveries with the capped delay (about 6 s of NATS trouble); later ones back off as usual,
/// so a long outage still takes minutes of retries before the request is dead-lettered.
const NATS_QUICK_DELIVERIES: u64 = 8;

/// The delay before the next delivery after `error` on delivery `delivered`.
pub fn retry_delay(error: &Failure, delivered: u64) -> Duration {
    if crate::nats::STEPS.contains(&error.what) && delivered <= NATS_QUICK_DELIVERIES {
        backoff(delivered).min(NATS_RETRY_CAP)
    } else {
        backoff(delivered)
    }
}

/// Delay before the next delivery of a message that failed transiently: 250 ms doubling up to
/// 30 s, so an outage costs few retries and a blip costs little time.
pub fn backoff(delivered: u64) -> Duration {
    let exp = (delivered.max(1) - 1).min(7) as u32;
    Duration::from_millis(250 * 2u64.pow(exp)).min(Duration::from_secs(30))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_then_caps() {
        assert_eq!(backoff(1), Duration::from_millis(250));
        assert_eq!(backoff(2), Duration::from_millis(500));
        assert_eq!(backoff(100), Duration::from_secs(30));
    }

    #[test]
    fn nats_failures_are_retried_quickly_for_a_while_then_back_off() {
        let nats = || Failure::transient("publish user copy ack", "no responders");
        let store = || Failure::transient("dynamodb insert", "throttled");
        assert_eq!(retry_delay(&nats(), 1), Duration::from_millis(250));
        assert_eq!(retry_delay(&nats(), 5), Duration::from_secs(1));
        assert_eq!(retry_delay(&nats(), 8), Duration::from_secs(1));
        assert_eq!(retry_delay(&nats(), 9), Duration::from_secs(30));
        assert_eq!(retry_delay(&store(), 5), Duration::from_secs(4));
    }
}
