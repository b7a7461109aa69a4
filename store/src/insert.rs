//! Writing a recipient's copy: once, with its cursor, together with the user's counters.
//!
//! Each copy is one `Put` on `notifications` conditional on the item not existing (a redelivery
//! never overwrites read state), and, unless it is stored read, an `Update` of `users` (`ADD
//! unread 1, ins 1`) conditional on the copy not being covered by a read-all watermark, in one
//! `TransactWriteItems` request, so the count can never drift from the items (docs/storage.md).
//! Several recipients share one request (up to DynamoDB's 100 actions); when a condition fails
//! the service cancels the whole request and says which action failed, so the others are sent
//! again without it:
//!
//! - the item exists: that copy is done (an earlier delivery wrote it);
//! - the watermark covers it: the copy is written again as read, without a counter change;
//! - a conflicting transaction or throttling: sent again after a short wait.

use std::collections::{HashMap, HashSet};

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem, Update};
use herald_core::{Cursor, Notification};

use crate::errors::{StoreError, classify};
use crate::metrics::Op;
use crate::{Store, backoff, get_s, n, s};

/// DynamoDB's limit of actions per `TransactWriteItems`.
const MAX_ACTIONS: usize = 100;
/// Rounds of re-sending what a cancelled transaction left undone before giving up (transient).
const MAX_ROUNDS: u32 = 10;

/// One recipient's copy, ready to store: it has been published, so it has its cursor.
#[derive(Debug, Clone, Copy)]
pub struct NewItem<'a> {
    pub user: &'a str,
    pub notification: &'a Notification,
    /// The producing service.
    pub source: &'a str,
    /// When `HERALD_IN` accepted the request, Unix milliseconds.
    pub accepted_at_ms: i64,
    /// The copy's place in `HERALD_USER` (`Cursor::sort_key` is stored).
    pub cursor: Cursor,
    /// The user had muted the kind: stored read, not counted, never pushed or replayed.
    pub muted: bool,
}

/// What became of one copy given to [`Store::insert`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// Written now, counted unread: the user's count changed.
    Unread,
    /// Written now as read (muted, or covered by a read-all).
    Read,
    /// Already there (an earlier delivery): nothing changed.
    Existed,
}

/// What [`Store::insert`] did: one outcome per item given, in their order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InsertReport {
    pub outcomes: Vec<Stored>,
}

impl InsertReport {
    /// How many copies had `outcome`.
    pub fn count(&self, outcome: Stored) -> usize {
        self.outcomes.iter().filter(|o| **o == outcome).count()
    }

    /// The places of the copies counted unread (their users' counts changed).
    pub fn counted(&self) -> impl Iterator<Item = usize> + '_ {
        self.outcomes.iter().enumerate().filter(|(_, o)| **o == Stored::Unread).map(|(i, _)| i)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// `Put` (unread) + the counter `Update`.
    Counted,
    /// `Put` alone, as read.
    Read,
}

impl Mode {
    fn actions(self) -> usize {
        match self {
            Mode::Counted => 2,
            Mode::Read => 1,
        }
    }
}

/// The fate of one action of a cancelled transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reason {
    Ok,
    ConditionFailed,
    /// Conflict, throttling: try again.
    Retry,
    /// Validation, item too large: never succeeds.
    Refused,
}

impl Store {
    /// Those of `copies` (user, notification id) that already have an item (consistent reads,
    /// BatchGetItem, 100 per request).
    pub async fn existing(&self, copies: &[(&str, &str)]) -> Result<HashSet<(String, String)>, StoreError> {
        let mut seen = HashSet::new();
        let keys: Vec<_> = copies
            .iter()
            .filter(|c| seen.insert(**c))
            .map(|(u, id)| HashMap::from([("user".to_owned(), s(u)), ("nid".to_owned(), s(id))]))
            .collect();
        let items = self
            .batch_get("dynamodb get notifications", &self.tables.notifications, keys, "#u, nid", &[("#u", "user")])
            .await?;
        Ok(items.iter().filter_map(|i| Some((get_s(i, "user")?.clone(), get_s(i, "nid")?.clone()))).collect())
    }

    /// Stores each copy unless its item exists (see the module docs); one `TransactWriteItems`
    /// per up to 50 recipients when no condition fails. Copies may belong to different
    /// notifications; two copies for one user go in different transactions (a transaction
    /// may touch a user's counters once).
    pub async fn insert(&self, items: &[NewItem<'_>]) -> Result<InsertReport, StoreError> {
        let mut outcomes: Vec<Option<Stored>> = vec![None; items.len()];
        let mut todo: Vec<(usize, Mode)> =
            items.iter().enumerate().map(|(i, it)| (i, if it.muted { Mode::Read } else { Mode::Counted })).collect();
        for round in 0.. {
            if todo.is_empty() {
                let outcomes = outcomes.into_iter().map(|o| o.expect("every copy has an outcome")).collect();
                return Ok(InsertReport { outcomes });
            }
            if round >= MAX_ROUNDS {
                return Err(StoreError::transient("dynamodb insert", "transactions kept being cancelled"));
            }
            let mut again = Vec::new();
            let mut wait = false;
            for group in groups(&todo, |i| items[i].user) {
                match self.transact(items, group).await? {
                    None => {
                        for &(i, mode) in group {
                            outcomes[i] = Some(match mode {
                                Mode::Counted => Stored::Unread,
                                Mode::Read => Stored::Read,
                            });
                        }
                    }
                    Some(reasons) if reasons.len() == group.iter().map(|(_, m)| m.actions()).sum::<usize>() => {
                        let mut at = 0;
                        for &(i, mode) in group {
                            let put = reasons[at];
                            let update = if mode == Mode::Counted { reasons[at + 1] } else { Reason::Ok };
                            at += mode.actions();
                            if put == Reason::Refused || update == Reason::Refused {
                                return Err(StoreError::permanent(
                                    "dynamodb insert",
                                    format!("the store refused the item of {:?}", items[i].user),
                                ));
                            }
                            if put == Reason::ConditionFailed {
                                outcomes[i] = Some(Stored::Existed);
                            } else if update == Reason::ConditionFailed {
                                again.push((i, Mode::Read));
                            } else {
                                wait |= put == Reason::Retry || update == Reason::Retry;
                                again.push((i, mode));
                            }
                        }
                    }
                    // No usable reasons: find the culprit alone.
                    Some(_) if group.len() > 1 => again.extend(group.iter().map(|&(i, m)| (i, m))),
                    Some(_) => {
                        return Err(StoreError::transient("dynamodb insert", "transaction cancelled without reasons"));
                    }
                }
            }
            if wait {
                tokio::time::sleep(backoff(round)).await;
            }
            todo = again;
        }
        unreachable!("the loop returns")
    }

    /// One transaction for `group`: `None` when it committed, the reason of each action when
    /// the service cancelled it.
    async fn transact(
        &self,
        items: &[NewItem<'_>],
        group: &[(usize, Mode)],
    ) -> Result<Option<Vec<Reason>>, StoreError> {
        let mut actions = Vec::with_capacity(group.len() * 2);
        for &(i, mode) in group {
            let item = &items[i];
            actions.push(self.put_action(item, mode)?);
            if mode == Mode::Counted {
                actions.push(self.count_action(item)?);
            }
        }
        self.count(Op::TransactWrite);
        match self.client.transact_write_items().set_transact_items(Some(actions)).send().await {
            Ok(_) => Ok(None),
            Err(SdkError::ServiceError(ctx))
                if matches!(ctx.err(), TransactWriteItemsError::TransactionCanceledException(_)) =>
            {
                let TransactWriteItemsError::TransactionCanceledException(e) = ctx.err() else { unreachable!() };
                Ok(Some(
                    e.cancellation_reasons()
                        .iter()
                        .map(|r| match r.code().unwrap_or("None") {
                            "None" | "" => Reason::Ok,
                            "ConditionalCheckFailed" => Reason::ConditionFailed,
                            "ValidationError" | "ItemCollectionSizeLimitExceeded" => Reason::Refused,
                            _ => Reason::Retry,
                        })
                        .collect(),
                ))
            }
            Err(e) => Err(classify("dynamodb insert", e)),
        }
    }

    fn put_action(&self, item: &NewItem<'_>, mode: Mode) -> Result<TransactWriteItem, StoreError> {
        let no = &item.notification;
        let mut fields: HashMap<String, AttributeValue> = HashMap::from([
            ("user".to_owned(), s(item.user)),
            ("nid".to_owned(), s(&no.id)),
            ("cursor".to_owned(), n(item.cursor.sort_key())),
            ("kind".to_owned(), s(&no.kind)),
            ("title".to_owned(), s(&no.title)),
            ("created_at".to_owned(), s(&no.created_at)),
            ("source".to_owned(), s(item.source)),
            ("accepted_at".to_owned(), n(item.accepted_at_ms)),
            ("muted".to_owned(), AttributeValue::Bool(item.muted)),
            ("read".to_owned(), AttributeValue::Bool(mode == Mode::Read)),
            ("expires_at".to_owned(), n(item.accepted_at_ms.max(0) / 1000 + self.ttl.as_secs() as i64)),
        ]);
        if let Some(body) = &no.body {
            fields.insert("body".to_owned(), s(body));
        }
        if let Some(data) = &no.data {
            fields.insert("data".to_owned(), s(&data.to_string()));
        }
        let put = Put::builder()
            .table_name(&self.tables.notifications)
            .set_item(Some(fields))
            .condition_expression("attribute_not_exists(nid)")
            .build()
            .map_err(|e| StoreError::permanent("dynamodb insert", e))?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    fn count_action(&self, item: &NewItem<'_>) -> Result<TransactWriteItem, StoreError> {
        let update = Update::builder()
            .table_name(&self.tables.users)
            .key("user", s(item.user))
            .update_expression("ADD unread :one, ins :one")
            .condition_expression("attribute_not_exists(read_all) OR read_all < :c")
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":c", n(item.cursor.sort_key()))
            .build()
            .map_err(|e| StoreError::permanent("dynamodb insert", e))?;
        Ok(TransactWriteItem::builder().update(update).build())
    }
}

/// Splits `todo` into runs of at most [`MAX_ACTIONS`] actions, each user (`user_of` a copy's
/// place) at most once per run.
fn groups<'u>(todo: &[(usize, Mode)], user_of: impl Fn(usize) -> &'u str) -> Vec<&[(usize, Mode)]> {
    let mut out = Vec::new();
    let (mut start, mut actions) = (0, 0);
    let mut users = HashSet::new();
    for (k, &(i, mode)) in todo.iter().enumerate() {
        let user = user_of(i);
        if actions + mode.actions() > MAX_ACTIONS || users.contains(user) {
            out.push(&todo[start..k]);
            (start, actions) = (k, 0);
            users.clear();
        }
        users.insert(user);
        actions += mode.actions();
    }
    if start < todo.len() {
        out.push(&todo[start..]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_stay_within_the_action_limit() {
        let users: Vec<String> = (0..120).map(|i| format!("u{i}")).collect();
        let todo: Vec<_> = (0..120).map(|i| (i, if i % 3 == 0 { Mode::Read } else { Mode::Counted })).collect();
        let gs = groups(&todo, |i| &users[i]);
        assert!(gs.iter().all(|g| g.iter().map(|(_, m)| m.actions()).sum::<usize>() <= MAX_ACTIONS));
        assert_eq!(gs.iter().map(|g| g.len()).sum::<usize>(), 120);
        assert!(groups(&[], |i| &users[i]).is_empty());
    }

    #[test]
    fn a_user_is_touched_once_per_transaction() {
        // Copies of three notifications to the same two users, as several requests batched.
        let users = ["a", "b", "a", "b", "a", "c"];
        let todo: Vec<_> = (0..users.len()).map(|i| (i, Mode::Counted)).collect();
        let gs = groups(&todo, |i| users[i]);
        for g in &gs {
            let mut seen = HashSet::new();
            assert!(g.iter().all(|&(i, _)| seen.insert(users[i])), "a user twice in {g:?}");
        }
        assert_eq!(gs.iter().map(|g| g.len()).sum::<usize>(), users.len());
        assert_eq!(gs.len(), 3);
    }
}
