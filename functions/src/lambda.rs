//! The `deliver` function as a Lambda handler over a [`Batch`]: the same [`crate::settle`] code
//! the runner calls, per record, with publishes kept in record (stream) order.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use futures::future::join_all;
use herald_core::subject::source_of;
use time::OffsetDateTime;
use tracing::{info, warn};

use crate::Config;
use crate::batch::{Batch, BatchResponse, ItemFailure};
use crate::deliver::Event;
use crate::metrics::Stages;
use crate::order::Gate;
use crate::ports::{Inbox, Outbox};
use crate::settle::{HOLD_GRACE, Settle, settle};

/// Handles every record of `batch` concurrently; returns the records to retry. `gate` lives as
/// long as the process (a warm Lambda keeps it across invocations).
pub async fn handle_batch<I: Inbox, O: Outbox>(
    inbox: &I,
    outbox: &O,
    config: &Config,
    gate: &Gate,
    batch: &Batch,
) -> BatchResponse {
    let stages = Stages::default();
    let stages = &stages;
    let work = batch.records.iter().map(|record| {
        // Taken here, in record order, so publishes keep the stream's order.
        let pass = gate.enter(record.seq);
        async move {
            let Ok(body) = STANDARD.decode(&record.data) else {
                // Only a broken bridge sends this; retrying lets the deliveries bound it, and
                // the dead-letter stream then keeps the original.
                warn!(seq = record.seq, "a record whose data is not base64");
                return Some(record.seq);
            };
            let accepted_at = OffsetDateTime::from_unix_timestamp_nanos(record.published_ms as i128 * 1_000_000)
                .unwrap_or(OffsetDateTime::UNIX_EPOCH);
            let event = Event {
                source: source_of(&record.subject).unwrap_or(""),
                body: &body,
                accepted_at,
                stream_seq: record.seq,
                delivered: record.delivered.max(1),
                redrive_since: record.redrive_since_ms.map(|ms| {
                    OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
                        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
                }),
            };
            let settled = settle(
                inbox,
                outbox,
                config.fanout_concurrency,
                event,
                batch.max_deliver,
                config.handler_deadline,
                &pass,
                stages,
            )
            .await;
            match settled {
                Settle::Delivered(_) => None,
                Settle::DeadLettered { code } => {
                    info!(seq = record.seq, code, "dead-lettered");
                    None
                }
                Settle::Retry { error, delay } => {
                    warn!(seq = record.seq, error = %error.chain(), "transient failure");
                    pass.hold(delay + HOLD_GRACE);
                    Some(record.seq)
                }
            }
        }
    });
    BatchResponse {
        batch_item_failures: join_all(work)
            .await
            .into_iter()
            .flatten()
            .map(|seq| ItemFailure { item_identifier: seq.to_string() })
            .collect(),
    }
}
