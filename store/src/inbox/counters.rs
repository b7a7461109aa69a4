//! A user's counters (`users` row) and the removal of expired items.
//!
//! Expiry (`HERALD_INBOX_TTL_DAYS`): an item's `expires_at` grows with its cursor, so a user's
//! oldest items (ascending on `by_cursor`) are the first to expire. Before the count is read,
//! one small query looks at the oldest items; the expired ones are deleted, each in the same
//! transaction as the decrement of `unread` when it was effectively unread, conditional on the
//! user's `version` (so a concurrent mark or read-all makes it retry). The count read right
//! after is therefore exact, and a user's reads pay one extra query, not a scan.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{AttributeValue, Delete, TransactWriteItem, Update};

use super::{RowState, num};
use crate::errors::{StoreError, classify};
use crate::metrics::Op;
use crate::tables::BY_CURSOR;
use crate::{Store, backoff, n, s};

/// The `users` row (all zero / absent for a user with nothing yet).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub unread: i64,
    pub ins: u64,
    /// `None`: the row has no version yet.
    pub version: Option<u64>,
    /// The read-all watermark (a cursor's sort key).
    pub read_all: Option<u128>,
    pub rv_all: u64,
}

impl Counters {
    pub fn version(&self) -> u64 {
        self.version.unwrap_or(0)
    }

    /// The user's change number: every change of `unread` adds one to `ins` (a counted insert)
    /// or to `version` (a mark, a read-all, a sweep), so a count read with a higher number is
    /// the newer one. Gateways drop an `unread` that arrives after a newer one.
    pub fn rev(&self) -> u64 {
        self.ins + self.version()
    }
}

/// A user's unread count and the change number it was read at ([`Counters::rev`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Count {
    pub unread: u64,
    pub rev: u64,
}

impl From<&Counters> for Count {
    fn from(c: &Counters) -> Self {
        Count { unread: c.unread.max(0) as u64, rev: c.rev() }
    }
}

/// Expired items removed per transaction (DynamoDB allows 100 actions; one is the counter).
const SWEEP_BATCH: i32 = 99;
/// Attempts of an optimistic update before giving up (transient).
pub(crate) const ATTEMPTS: u32 = 8;

impl Store {
    /// The user's counters, read consistently (one request).
    pub async fn counters(&self, user: &str) -> Result<Counters, StoreError> {
        self.count(Op::Get);
        let got = self
            .client
            .get_item()
            .table_name(&self.tables.users)
            .key("user", s(user))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| classify("dynamodb get counters", e))?;
        Ok(got.item.as_ref().map(counters_of).unwrap_or_default())
    }

    /// The unread counts (and change numbers) of `users` as their rows say (consistent reads, BatchGetItem, 100 per
    /// request; no expiry sweep): what the functions announce after storing new copies. A user
    /// without a row has 0.
    pub async fn unread_counts(&self, users: &[&str]) -> Result<HashMap<String, Count>, StoreError> {
        let mut out: HashMap<String, Count> = users.iter().map(|u| ((*u).to_owned(), Count::default())).collect();
        let keys: Vec<_> = out.keys().map(|u| HashMap::from([("user".to_owned(), s(u))])).collect();
        let projection = "#u, unread, ins, version";
        let rows =
            self.batch_get("dynamodb get counters", &self.tables.users, keys, projection, &[("#u", "user")]).await?;
        for row in &rows {
            if let Some(user) = crate::get_s(row, "user") {
                out.insert(user.clone(), Count::from(&counters_of(row)));
            }
        }
        Ok(out)
    }

    /// The exact unread count: expired items are removed first (see the module docs). Two
    /// requests when nothing has expired.
    pub async fn unread_count(&self, user: &str) -> Result<Count, StoreError> {
        Ok(Count::from(&self.sweep_expired(user).await?))
    }

    /// Removes the user's expired items, adjusting `unread`; returns the counters after.
    pub async fn sweep_expired(&self, user: &str) -> Result<Counters, StoreError> {
        Ok(self.sweep_user(user).await?.0)
    }

    /// [`Self::sweep_expired`], also saying how many items it removed.
    pub(crate) async fn sweep_user(&self, user: &str) -> Result<(Counters, u64), StoreError> {
        let (mut attempt, mut removed) = (0, 0);
        loop {
            let now = super::now_secs();
            let (counters, oldest) = tokio::try_join!(self.counters(user), self.oldest(user))?;
            let expired: Vec<(String, RowState)> = oldest.into_iter().filter(|(_, r)| r.expired(now)).collect();
            if expired.is_empty() {
                return Ok((counters, removed));
            }
            let unread = expired.iter().filter(|(_, r)| !r.is_read(&counters)).count() as i64;
            let mut actions = Vec::with_capacity(expired.len() + 1);
            for (nid, _) in &expired {
                let delete = Delete::builder()
                    .table_name(&self.tables.notifications)
                    .key("user", s(user))
                    .key("nid", s(nid))
                    .condition_expression("attribute_exists(nid)")
                    .build()
                    .map_err(|e| StoreError::permanent("dynamodb sweep", e))?;
                actions.push(TransactWriteItem::builder().delete(delete).build());
            }
            actions.push(self.version_bump(user, &counters, -unread, false)?);
            self.count(Op::TransactWrite);
            match self.client.transact_write_items().set_transact_items(Some(actions)).send().await {
                // More may have expired: look again (only conflicts count as attempts, so a
                // user with thousands of expired items is swept to the end).
                Ok(_) => removed += expired.len() as u64,
                Err(e) if is_cancelled(&e) && attempt + 1 < ATTEMPTS => {
                    tokio::time::sleep(backoff(attempt)).await;
                    attempt += 1;
                }
                Err(e) if is_cancelled(&e) => {
                    return Err(StoreError::transient("dynamodb sweep", "kept conflicting with other changes"));
                }
                Err(e) => return Err(classify("dynamodb sweep", e)),
            }
        }
    }

    /// The user's oldest items (ids and read state), oldest first.
    async fn oldest(&self, user: &str) -> Result<Vec<(String, RowState)>, StoreError> {
        self.count(Op::Query);
        let out = self
            .client
            .query()
            .table_name(&self.tables.notifications)
            .index_name(BY_CURSOR)
            .key_condition_expression("#u = :u")
            .expression_attribute_names("#u", "user")
            .expression_attribute_names("#r", "read")
            .expression_attribute_values(":u", s(user))
            .projection_expression("nid, #r, rv, archived, expires_at, #c")
            .expression_attribute_names("#c", "cursor")
            .scan_index_forward(true)
            .consistent_read(true)
            .limit(SWEEP_BATCH)
            .send()
            .await
            .map_err(|e| classify("dynamodb query oldest", e))?;
        Ok(out.items().iter().filter_map(|i| Some((i.get("nid")?.as_s().ok()?.clone(), RowState::of(i)))).collect())
    }

    /// `Update users SET version = v+1 ADD unread :delta` on `version = v` (or no version yet),
    /// and with `exact_ins` on `ins` too: a counted insert in between then makes the change
    /// retry, so the count and change number computed from `counters` are the stored ones.
    pub(crate) fn version_bump(
        &self,
        user: &str,
        counters: &Counters,
        delta: i64,
        exact_ins: bool,
    ) -> Result<TransactWriteItem, StoreError> {
        let mut update = Update::builder()
            .table_name(&self.tables.users)
            .key("user", s(user))
            .update_expression("SET version = :nv ADD unread :d")
            .expression_attribute_values(":nv", n(counters.version() + 1))
            .expression_attribute_values(":d", n(delta));
        let mut cond = match counters.version {
            Some(v) => {
                update = update.expression_attribute_values(":v", n(v));
                "version = :v".to_owned()
            }
            None => "attribute_not_exists(version)".to_owned(),
        };
        if exact_ins {
            if counters.ins > 0 {
                cond.push_str(" AND ins = :ins");
                update = update.expression_attribute_values(":ins", n(counters.ins));
            } else {
                cond.push_str(" AND (attribute_not_exists(ins) OR ins = :zero)");
                update = update.expression_attribute_values(":zero", n(0));
            }
        }
        update = update.condition_expression(cond);
        let update = update.build().map_err(|e| StoreError::permanent("dynamodb counters", e))?;
        Ok(TransactWriteItem::builder().update(update).build())
    }
}

pub(crate) fn counters_of(row: &HashMap<String, AttributeValue>) -> Counters {
    Counters {
        unread: num(row, "unread").unwrap_or(0),
        ins: num(row, "ins").unwrap_or(0),
        version: num(row, "version"),
        read_all: num(row, "read_all"),
        rv_all: num(row, "rv_all").unwrap_or(0),
    }
}

/// A transaction the service cancelled (a condition failed, or it met another): retry.
pub(crate) fn is_cancelled<E, R>(e: &aws_sdk_dynamodb::error::SdkError<E, R>) -> bool
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata,
{
    e.as_service_error()
        .and_then(|se| se.code())
        .is_some_and(|c| matches!(c, "TransactionCanceledException" | "TransactionConflictException"))
}
