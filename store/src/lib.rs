//! Herald's record of truth in DynamoDB: the inbox (one item per recipient and notification,
//! written once with its cursor), each user's counters, preferences and team membership.
//!
//! The data model is `docs/storage.md`. The functions insert through [`Store::insert`]; the
//! gateway reads and changes read state through the same [`Store`]. Every method sends plain
//! DynamoDB requests through `aws-sdk-dynamodb` (the cloud, or a local DynamoDB-API server),
//! counts each in [`RequestCounts`], and reports failures as a [`StoreError`] that says whether
//! retrying can help.
//!
//! Modules by role: [`client`] (SDK configuration), [`tables`] (names, creation), [`errors`]
//! (classification), [`teams`], [`preferences`], [`insert`] (existence checks and the insert
//! transaction), [`metrics`] (request counts).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes, WriteRequest};
use herald_core::config::DynamoConfig;

pub mod client;
pub mod errors;
pub mod inbox;
pub mod insert;
pub mod metrics;
pub mod preferences;
pub mod tables;
pub mod teams;

pub use client::{client, sdk_config};
pub use errors::{ErrorKind, StoreError, classify};
pub use insert::{InsertReport, NewItem, Stored};
pub use metrics::{Op, RequestCounts};
pub use tables::Tables;
pub use teams::MembersPage;

/// How long an inbox item is kept by default (`HERALD_INBOX_TTL_DAYS`).
pub const DEFAULT_TTL: Duration = Duration::from_secs(90 * 24 * 3600);

/// DynamoDB's limit of keys per BatchGetItem.
const BATCH_GET_MAX: usize = 100;
/// DynamoDB's limit of requests per BatchWriteItem.
const BATCH_WRITE_MAX: usize = 25;
/// Rounds of retrying what DynamoDB left unprocessed (it does so under throttling).
const UNPROCESSED_ROUNDS: u32 = 10;

/// The store: a cheap handle, `Clone` shares the client and the request counts.
#[derive(Debug, Clone)]
pub struct Store {
    client: Client,
    tables: Tables,
    ttl: Duration,
    counts: Arc<RequestCounts>,
    /// Members per query of a whole team: [`teams::LOCAL_MEMBERS_PAGE`] on a local server,
    /// unlimited (1 MB pages) on DynamoDB.
    members_page: Option<i32>,
}

impl Store {
    /// A store over `client` with the table names of `config` and the default retention.
    pub fn new(client: Client, config: &DynamoConfig) -> Self {
        let members_page = config.endpoint.is_some().then_some(teams::LOCAL_MEMBERS_PAGE);
        Store { client, tables: Tables::new(config), ttl: DEFAULT_TTL, counts: Arc::default(), members_page }
    }

    /// Builds the client from `config` (see [`client::client`]), then the store.
    pub async fn connect(config: &DynamoConfig) -> Self {
        Store::new(client::client(config).await, config)
    }

    /// The same store with items kept for `ttl` (their `expires_at`).
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn tables(&self) -> &Tables {
        &self.tables
    }

    /// Requests sent so far by this store and its clones.
    pub fn requests(&self) -> &RequestCounts {
        &self.counts
    }

    fn count(&self, op: Op) {
        self.counts.count(op);
    }

    /// Writes `requests` to `table`, 25 per request, retrying what the service left unprocessed.
    async fn batch_write(&self, table: &str, requests: Vec<WriteRequest>) -> Result<(), StoreError> {
        for chunk in requests.chunks(BATCH_WRITE_MAX) {
            let mut pending = HashMap::from([(table.to_owned(), chunk.to_vec())]);
            for round in 0.. {
                self.count(Op::BatchWrite);
                let out = self
                    .client
                    .batch_write_item()
                    .set_request_items(Some(pending))
                    .send()
                    .await
                    .map_err(|e| classify("dynamodb batch write", e))?;
                match out.unprocessed_items {
                    Some(left) if !left.is_empty() && round < UNPROCESSED_ROUNDS => {
                        pending = left;
                        tokio::time::sleep(backoff(round)).await;
                    }
                    Some(left) if !left.is_empty() => {
                        return Err(StoreError::transient("dynamodb batch write", "items left unprocessed"));
                    }
                    _ => break,
                }
            }
        }
        Ok(())
    }

    /// Reads the items with `keys` from `table` (consistent), 100 keys per request, retrying
    /// what the service left unprocessed. `projection` names the attributes wanted (`#a`-style
    /// names resolved by `names`).
    async fn batch_get(
        &self,
        op: &'static str,
        table: &str,
        keys: Vec<HashMap<String, AttributeValue>>,
        projection: &str,
        names: &[(&str, &str)],
    ) -> Result<Vec<HashMap<String, AttributeValue>>, StoreError> {
        let mut items = Vec::new();
        for chunk in keys.chunks(BATCH_GET_MAX) {
            let mut ka = KeysAndAttributes::builder()
                .consistent_read(true)
                .projection_expression(projection)
                .set_keys(Some(chunk.to_vec()));
            for (n, v) in names {
                ka = ka.expression_attribute_names(*n, *v);
            }
            let ka = ka.build().map_err(|e| StoreError::permanent(op, e))?;
            let mut pending = HashMap::from([(table.to_owned(), ka)]);
            for round in 0.. {
                self.count(Op::BatchGet);
                let out = self
                    .client
                    .batch_get_item()
                    .set_request_items(Some(pending))
                    .send()
                    .await
                    .map_err(|e| classify(op, e))?;
                if let Some(mut r) = out.responses
                    && let Some(got) = r.remove(table)
                {
                    items.extend(got);
                }
                match out.unprocessed_keys {
                    Some(left) if !left.is_empty() && round < UNPROCESSED_ROUNDS => {
                        pending = left;
                        tokio::time::sleep(backoff(round)).await;
                    }
                    Some(left) if !left.is_empty() => {
                        return Err(StoreError::transient(op, "keys left unprocessed"));
                    }
                    _ => break,
                }
            }
        }
        Ok(items)
    }
}

/// 50 ms doubling, capped at 1.6 s: for what DynamoDB left unprocessed or a conflicting
/// transaction.
fn backoff(round: u32) -> Duration {
    Duration::from_millis(50 << round.min(5))
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}

fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn get_s<'a>(item: &'a HashMap<String, AttributeValue>, name: &str) -> Option<&'a String> {
    item.get(name).and_then(|v| v.as_s().ok())
}
