//! The current read state of many notifications at once: what a replay needs to send each
//! notification with its `read` as it is now, for a constant number of requests per batch.

use std::collections::{HashMap, HashSet};

use super::RowState;
use crate::errors::StoreError;
use crate::{Store, get_s, s};

impl Store {
    /// The effective read state of the user's notifications `ids` (those not stored, or not the
    /// user's, are absent), and the counters it was computed with. One GetItem, and one
    /// BatchGetItem per 100 ids.
    pub async fn read_states(
        &self,
        user: &str,
        ids: &[&str],
    ) -> Result<(HashMap<String, bool>, super::Counters), StoreError> {
        let mut seen = HashSet::new();
        let keys: Vec<_> = ids
            .iter()
            .filter(|id| seen.insert(**id))
            .map(|id| HashMap::from([("user".to_owned(), s(user)), ("nid".to_owned(), s(id))]))
            .collect();
        let counters = self.counters(user).await?;
        if keys.is_empty() {
            return Ok((HashMap::new(), counters));
        }
        let rows = self
            .batch_get(
                "dynamodb get read state",
                &self.tables.notifications,
                keys,
                "nid, #r, rv, archived, expires_at, #c",
                &[("#r", "read"), ("#c", "cursor")],
            )
            .await?;
        let states =
            rows.iter().filter_map(|r| Some((get_s(r, "nid")?.clone(), RowState::of(r).is_read(&counters)))).collect();
        Ok((states, counters))
    }
}
