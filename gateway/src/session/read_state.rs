//! The session's view of read state: `unread` after `welcome` and `replayed`, replayed
//! notifications with their current `read` (one batch read of the store per replay batch, not
//! a request per notification), and the `read` / `unread` frames of changes made on any device.
//!
//! The store is the truth but not on the delivery path: if it does not answer within
//! `replay_timeout`, the session goes on without these (the client's next inbox fetch or
//! `unread` corrects it).

use std::collections::HashMap;

use tracing::warn;

use super::{End, Session};
use crate::log::Entry;
use crate::protocol;
use crate::state::AppState;

impl Session {
    /// Sends the user's unread count now.
    pub(super) async fn send_unread(&mut self) -> Result<(), End> {
        match store_read(&self.state, || self.state.api.store.unread_count(&self.claims.sub)).await {
            Ok(count) => {
                self.unread_rev.fetch_max(count.rev, std::sync::atomic::Ordering::AcqRel);
                self.send_now(protocol::unread(count.unread)).await
            }
            Err(e) => {
                warn!(error = %e, "unread count unavailable; not sent");
                Ok(())
            }
        }
    }

    /// For each of `entries`, its payload with `read: true` when the notification has been read
    /// since it was stored (`None`: send as stored).
    pub(super) async fn current_reads(&mut self, entries: &[Entry]) -> Vec<Option<String>> {
        let parsed: Vec<Option<serde_json::Value>> = entries
            .iter()
            .map(|e| if e.muted { None } else { serde_json::from_slice::<serde_json::Value>(&e.payload).ok() })
            .collect();
        let ids: Vec<&str> = parsed.iter().flatten().filter_map(|v| v["id"].as_str()).collect();
        if ids.is_empty() {
            return vec![None; entries.len()];
        }
        let reads: HashMap<String, bool> =
            match store_read(&self.state, || self.state.api.store.read_states(&self.claims.sub, &ids)).await {
                Ok((reads, _)) => reads,
                Err(e) => {
                    warn!(error = %e, "read state unavailable; replaying as stored");
                    return vec![None; entries.len()];
                }
            };
        parsed
            .into_iter()
            .map(|v| {
                let mut v = v?;
                let read = *reads.get(v["id"].as_str()?)?;
                (v["read"] != read).then(|| {
                    v["read"] = read.into();
                    v.to_string()
                })
            })
            .collect()
    }
}

/// One store read of a session: in turn with every session's (`store_reads`, so 15,000 starting
/// at once do not hold 15,000 AWS SDK request futures, several KB each, whose peak the allocator
/// keeps as resident memory), made only once its turn has come and boxed (a session waiting its
/// turn holds a closure, not the request's future), and bounded by `replay_timeout` (a store
/// that hangs must not stop a session's start or its replay).
async fn store_read<T, F>(state: &AppState, read: impl FnOnce() -> F) -> Result<T, String>
where
    F: Future<Output = Result<T, herald_store::StoreError>>,
{
    let _permit = state.store_reads.acquire().await.map_err(|e| e.to_string())?;
    match tokio::time::timeout(state.config.replay_timeout, Box::pin(read())).await {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(_) => Err(format!("the store did not answer within {:?}", state.config.replay_timeout)),
    }
}
