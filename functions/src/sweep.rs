//! The runner's retention sweep: every `HERALD_SWEEP_INTERVAL_SECONDS`, the expired inbox items
//! of every user are removed with their counts kept exact (`herald_store`'s `sweep_all`), so the
//! inbox of a user who never comes back does not grow forever. Several runners may each sweep:
//! every removal is a conditional transaction, so a second sweeper finds nothing left to do.

use std::time::Duration;

use herald_store::Store;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Between two users of one sweep, so that a sweep never crowds out deliveries.
pub const PAUSE: Duration = Duration::from_millis(5);

/// Sweeps every `every` until `shutdown`; the first sweep comes one interval after start.
pub async fn run(store: Store, every: Duration, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.cancelled() => return,
        }
        tokio::select! {
            done = store.sweep_all(PAUSE) => match done {
                Ok(r) => info!(users = r.users, removed = r.removed, failed = r.failed, "retention sweep done"),
                Err(e) => warn!(error = %e, "retention sweep stopped; the next one starts over"),
            },
            _ = shutdown.cancelled() => return,
        }
    }
}
