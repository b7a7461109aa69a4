//! The session's view of read state: `unread` after `welcome` and `replayed`, replayed
//! notifications with their current `read` (one batch read of the store per replay batch, not
//! a request per notification), and the `read` / `unread` frames of changes made on any device.
//!
//! The store is the truth but not on the delivery path: if it does not answer, the session
//! goes on without these (the client's next inbox fetch or `unread` corrects it).

use std::collections::HashMap;

use tracing::warn;

use super::{End, Session};
use crate::log::Entry;
use crate::protocol;

impl Session {
    /// Sends the user's unread count now.
    pub(super) async fn send_unread(&mut self) -> Result<(), End> {
        // In turn with the stream reads (`catchup_concurrency`), and boxed: 15,000 sessions
        // starting at once would otherwise each hold a store request's large future (tens of
        // KB) at the same time, and the allocator keeps that peak as resident memory.
        let count = {
            let _permit = self.state.catchups.acquire().await.map_err(End::internal)?;
            Box::pin(self.state.api.store.unread_count(&self.claims.sub)).await
        };
        match count {
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
        let reads: HashMap<String, bool> = match self.state.api.store.read_states(&self.claims.sub, &ids).await {
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
