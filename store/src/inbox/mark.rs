//! Changing read state: one item (read, unread, archive) or all of them (read-all), each a
//! constant number of requests whatever the size of the inbox, with `unread` changed in the same
//! transaction as the state it counts (docs/storage.md, "Every write keeps `unread` exact").

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes, TransactWriteItem, Update};

use super::counters::{ATTEMPTS, Count, Counters, counters_of, is_cancelled};
use super::{RowState, now_secs};
use crate::errors::{StoreError, classify};
use crate::metrics::Op;
use crate::tables::BY_CURSOR;
use crate::{Store, backoff, n, s};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Read,
    Unread,
    /// Archived, and therefore read.
    Archive,
}

/// The item's state after a change, and the user's unread count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Marked {
    pub read: bool,
    pub unread: u64,
    /// The user's change number with that count ([`super::counters::Counters::rev`]).
    pub rev: u64,
    /// Whether the effective read state changed (then devices are told).
    pub changed: bool,
}

impl Store {
    /// Applies `change` to the user's notification `id`; `None` when the user has no such
    /// (unexpired) notification. Two requests: one read of the row and the counters, and one
    /// transaction (both again after a conflicting change).
    pub async fn mark(&self, user: &str, id: &str, change: Change) -> Result<Option<Marked>, StoreError> {
        for attempt in 0..ATTEMPTS {
            let (row, counters) = self.row_and_counters(user, id).await?;
            let Some(row) = row.filter(|r| !r.expired(now_secs())) else { return Ok(None) };
            let was_read = row.is_read(&counters);
            let read = change != Change::Unread;
            let archive = change == Change::Archive && !row.archived;
            if was_read == read && !archive {
                let count = Count::from(&counters);
                return Ok(Some(Marked { read, unread: count.unread, rev: count.rev, changed: false }));
            }
            let v = counters.version() + 1;
            let mut set = "SET #r = :r, rv = :v".to_owned();
            if archive {
                set.push_str(", archived = :t");
            }
            let item = Update::builder()
                .table_name(&self.tables.notifications)
                .key("user", s(user))
                .key("nid", s(id))
                .update_expression(set)
                .condition_expression("attribute_exists(nid)")
                .expression_attribute_names("#r", "read")
                .expression_attribute_values(":r", AttributeValue::Bool(read))
                .expression_attribute_values(":v", n(v));
            let item = if archive { item.expression_attribute_values(":t", AttributeValue::Bool(true)) } else { item };
            let item = item.build().map_err(|e| StoreError::permanent("dynamodb mark", e))?;
            let delta = match (was_read, read) {
                (false, true) => -1,
                (true, false) => 1,
                _ => 0,
            };
            let actions = vec![
                TransactWriteItem::builder().update(item).build(),
                self.version_bump(user, &counters, delta, true)?,
            ];
            self.count(Op::TransactWrite);
            match self.client.transact_write_items().set_transact_items(Some(actions)).send().await {
                Ok(_) => {
                    // Exact: the transaction held on `version` and `ins` as read.
                    let unread = (counters.unread + delta).max(0) as u64;
                    return Ok(Some(Marked { read, unread, rev: counters.rev() + 1, changed: was_read != read }));
                }
                Err(e) if is_cancelled(&e) => tokio::time::sleep(backoff(attempt)).await,
                Err(e) => return Err(classify("dynamodb mark", e)),
            }
        }
        Err(StoreError::transient("dynamodb mark", "kept conflicting with other changes"))
    }

    /// Marks everything the user has read with one write: the watermark moves to the newest
    /// item, `rv_all` to the new version (so older explicit states yield to it), `unread` to 0.
    /// Conditional on `version` and `ins`: a change or an insert counted in between retries.
    /// Requests: the counters, the newest cursor, one update — whatever the inbox holds.
    /// Returns the user's change number after it ([`super::counters::Counters::rev`]).
    pub async fn read_all(&self, user: &str) -> Result<u64, StoreError> {
        for attempt in 0..ATTEMPTS {
            let (counters, newest) = tokio::try_join!(self.counters(user), self.newest_cursor(user))?;
            let Some(newest) = newest else { return Ok(counters.rev()) };
            if counters.unread == 0 && counters.read_all.is_some_and(|w| w >= newest) {
                return Ok(counters.rev());
            }
            let v = counters.version() + 1;
            let mut update = self
                .client
                .update_item()
                .table_name(&self.tables.users)
                .key("user", s(user))
                .update_expression("SET unread = :z, read_all = :w, rv_all = :v, version = :v")
                .expression_attribute_values(":z", n(0))
                .expression_attribute_values(":w", n(newest))
                .expression_attribute_values(":v", n(v));
            let mut cond = Vec::new();
            match counters.version {
                Some(old) => {
                    cond.push("version = :old");
                    update = update.expression_attribute_values(":old", n(old));
                }
                None => cond.push("attribute_not_exists(version)"),
            }
            if counters.ins > 0 {
                cond.push("ins = :ins");
                update = update.expression_attribute_values(":ins", n(counters.ins));
            } else {
                cond.push("(attribute_not_exists(ins) OR ins = :zero)");
                update = update.expression_attribute_values(":zero", n(0));
            }
            self.count(Op::Update);
            match update.condition_expression(cond.join(" AND ")).send().await {
                Ok(_) => return Ok(counters.rev() + 1),
                Err(e) if e.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => {
                    tokio::time::sleep(backoff(attempt)).await
                }
                Err(e) => return Err(classify("dynamodb read all", e)),
            }
        }
        Err(StoreError::transient("dynamodb read all", "kept conflicting with other changes"))
    }

    /// The newest cursor (sort key) of the user's items.
    async fn newest_cursor(&self, user: &str) -> Result<Option<u128>, StoreError> {
        self.count(Op::Query);
        let out = self
            .client
            .query()
            .table_name(&self.tables.notifications)
            .index_name(BY_CURSOR)
            .key_condition_expression("#u = :u")
            .expression_attribute_names("#u", "user")
            .expression_attribute_names("#c", "cursor")
            .expression_attribute_values(":u", s(user))
            .projection_expression("#c")
            .scan_index_forward(false)
            .consistent_read(true)
            .limit(1)
            .send()
            .await
            .map_err(|e| classify("dynamodb query newest", e))?;
        Ok(out.items().first().and_then(|i| super::num(i, "cursor")))
    }

    /// One item's row state and the user's counters, in one consistent BatchGetItem.
    async fn row_and_counters(&self, user: &str, id: &str) -> Result<(Option<RowState>, Counters), StoreError> {
        let keys =
            |k: HashMap<String, AttributeValue>| KeysAndAttributes::builder().consistent_read(true).keys(k).build();
        let item_key = HashMap::from([("user".to_owned(), s(user)), ("nid".to_owned(), s(id))]);
        let user_key = HashMap::from([("user".to_owned(), s(user))]);
        let mut pending = HashMap::from([
            (self.tables.notifications.clone(), keys(item_key).map_err(|e| StoreError::permanent("dynamodb mark", e))?),
            (self.tables.users.clone(), keys(user_key).map_err(|e| StoreError::permanent("dynamodb mark", e))?),
        ]);
        let (mut row, mut counters) = (None, Counters::default());
        for round in 0..10 {
            self.count(Op::BatchGet);
            let out = self
                .client
                .batch_get_item()
                .set_request_items(Some(pending))
                .send()
                .await
                .map_err(|e| classify("dynamodb get item state", e))?;
            let mut responses = out.responses.unwrap_or_default();
            if let Some(r) = responses.remove(&self.tables.notifications).and_then(|mut v| v.pop()) {
                row = Some(RowState::of(&r));
            }
            if let Some(r) = responses.remove(&self.tables.users).and_then(|mut v| v.pop()) {
                counters = counters_of(&r);
            }
            match out.unprocessed_keys.filter(|k| !k.is_empty()) {
                Some(left) => {
                    pending = left;
                    tokio::time::sleep(backoff(round)).await;
                }
                None => return Ok((row, counters)),
            }
        }
        Err(StoreError::transient("dynamodb get item state", "keys left unprocessed"))
    }
}
