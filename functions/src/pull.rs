//! Opening a pull stream on a durable consumer, retried until it works or shutdown comes.

use std::time::Duration;

use async_nats::jetstream::consumer::{PullConsumer, pull};
use tokio_util::sync::CancellationToken;
use tracing::warn;

/// A stream of up to `batch` messages per pull, with heartbeats so a dead server is noticed;
/// `None` once `shutdown` is cancelled.
pub async fn open(
    consumer: &PullConsumer,
    batch: usize,
    shutdown: &CancellationToken,
    what: &str,
) -> Option<pull::Stream> {
    while !shutdown.is_cancelled() {
        match consumer
            .stream()
            .max_messages_per_batch(batch.max(1))
            .heartbeat(Duration::from_secs(5))
            .expires(Duration::from_secs(30))
            .messages()
            .await
        {
            Ok(m) => return Some(m),
            Err(e) => {
                warn!(error = %e, consumer = what, "pulling failed; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return None,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    }
    None
}
