//! The inbox in DynamoDB: one item per (user, notification id), written once, never overwritten.
//!
//! Tables: `<prefix>inbox` (`user` S hash, `nid` S range), `<prefix>team_members` (`team` S
//! hash, `user` S range) and `<prefix>preferences` (`user` S hash, `muted_kinds` a list of S).
//! DynamoDB is the record of truth; JetStream only buffers delivery.
//!
//! Every SDK error is classified here, once: throttling, server errors, timeouts, connection
//! failures and a table not (yet) there are transient; anything else the service refuses
//! (validation, an item too large) is permanent and dead-letters the request.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, KeysAndAttributes, PutRequest,
    ScalarAttributeType, TableStatus, WriteRequest,
};
use herald_core::config::DynamoConfig;

use crate::ports::{Failure, Inbox, InboxItem, Stored};

/// Builds a client once per process (see [`crate::aws::sdk_config`] for local endpoints).
pub async fn client(config: &DynamoConfig) -> Client {
    Client::new(&crate::aws::sdk_config(&config.region, config.endpoint.as_deref()).await)
}

#[derive(Debug, Clone)]
pub struct DynamoInbox {
    client: Client,
    inbox: String,
    members: String,
    preferences: String,
}

impl DynamoInbox {
    pub fn new(client: Client, config: &DynamoConfig) -> Self {
        DynamoInbox {
            client,
            inbox: config.inbox_table(),
            members: config.members_table(),
            preferences: config.preferences_table(),
        }
    }

    /// Creates the tables that are missing and waits until they are active.
    pub async fn ensure_tables(&self) -> Result<(), Failure> {
        ensure_table(&self.client, &self.inbox, "user", Some("nid")).await?;
        ensure_table(&self.client, &self.members, "team", Some("user")).await?;
        ensure_table(&self.client, &self.preferences, "user", None).await
    }

    /// Adds a user to a team (the admin API and tests use it). Adding twice is harmless.
    pub async fn add_member(&self, team: &str, user: &str) -> Result<(), Failure> {
        self.client
            .put_item()
            .table_name(&self.members)
            .item("team", s(team))
            .item("user", s(user))
            .send()
            .await
            .map_err(|e| classify("dynamodb put member", e))?;
        Ok(())
    }

    /// Adds many users to a team, 25 per request (DynamoDB's batch limit), retrying what the
    /// service left unprocessed.
    pub async fn add_members(&self, team: &str, users: &[String]) -> Result<(), Failure> {
        let requests = users.iter().map(|u| {
            WriteRequest::builder()
                .put_request(
                    PutRequest::builder()
                        .item("team", s(team))
                        .item("user", s(u))
                        .build()
                        .expect("team and user are set"),
                )
                .build()
        });
        self.batch_write(&self.members, requests.collect()).await
    }

    /// Removes a user from a team. Removing a non-member is harmless.
    pub async fn remove_member(&self, team: &str, user: &str) -> Result<(), Failure> {
        self.client
            .delete_item()
            .table_name(&self.members)
            .key("team", s(team))
            .key("user", s(user))
            .send()
            .await
            .map_err(|e| classify("dynamodb delete member", e))?;
        Ok(())
    }

    /// Every member of a team, in user-id order.
    pub async fn list_members(&self, team: &str) -> Result<Vec<String>, Failure> {
        self.team_members(team).await
    }

    /// Replaces a user's muted kinds.
    pub async fn set_muted_kinds(&self, user: &str, kinds: &[String]) -> Result<(), Failure> {
        let list = kinds.iter().map(|k| s(k)).collect();
        self.client
            .put_item()
            .table_name(&self.preferences)
            .item("user", s(user))
            .item("muted_kinds", AttributeValue::L(list))
            .send()
            .await
            .map_err(|e| classify("dynamodb put preferences", e))?;
        Ok(())
    }

    /// A user's muted kinds (none when the user never set any).
    pub async fn muted_kinds(&self, user: &str) -> Result<Vec<String>, Failure> {
        let got = self
            .client
            .get_item()
            .table_name(&self.preferences)
            .key("user", s(user))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| classify("dynamodb get preferences", e))?;
        Ok(got.item.as_ref().map(kinds_of).unwrap_or_default())
    }

    async fn batch_write(&self, table: &str, requests: Vec<WriteRequest>) -> Result<(), Failure> {
        for chunk in requests.chunks(25) {
            let mut pending = HashMap::from([(table.to_owned(), chunk.to_vec())]);
            for attempt in 0u32.. {
                let out = self
                    .client
                    .batch_write_item()
                    .set_request_items(Some(pending))
                    .send()
                    .await
                    .map_err(|e| classify("dynamodb batch write", e))?;
                match out.unprocessed_items {
                    Some(left) if !left.is_empty() && attempt < 10 => {
                        pending = left;
                        tokio::time::sleep(Duration::from_millis(50 << attempt.min(5))).await;
                    }
                    Some(left) if !left.is_empty() => {
                        return Err(Failure::transient(
                            "dynamodb batch write",
                            "items left unprocessed after 10 attempts",
                        ));
                    }
                    _ => break,
                }
            }
        }
        Ok(())
    }
}

/// The kinds in a preferences item; a string set is read too, for items written by hand.
fn kinds_of(item: &HashMap<String, AttributeValue>) -> Vec<String> {
    match item.get("muted_kinds") {
        Some(AttributeValue::L(l)) => l.iter().filter_map(|v| v.as_s().ok().cloned()).collect(),
        Some(AttributeValue::Ss(ss)) => ss.clone(),
        _ => Vec::new(),
    }
}

/// Error codes worth retrying: DynamoDB's throttling and server-side codes, and a table that
/// is missing (being created or restored; if it stays missing, the bounded deliveries end the
/// request on the dead-letter stream, from where it can be re-driven once the table is back).
const TRANSIENT_CODES: &[&str] = &[
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "RequestLimitExceeded",
    "InternalServerError",
    "InternalFailure",
    "ServiceUnavailable",
    "LimitExceededException",
    "TransactionInProgressException",
    "TransactionConflictException",
    "ResourceNotFoundException",
];

/// Classifies an SDK error as transient or permanent (see the module docs).
pub fn classify<E, R>(what: &'static str, e: SdkError<E, R>) -> Failure
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    let permanent = match &e {
        SdkError::ServiceError(ctx) => {
            let code = ctx.err().code().unwrap_or("");
            !TRANSIENT_CODES.contains(&code)
        }
        // A request the SDK could not even build will not build next time either.
        SdkError::ConstructionFailure(_) => true,
        // Timeouts, connection failures, unreadable responses: the network or the server.
        _ => false,
    };
    if permanent { Failure::permanent(what, e) } else { Failure::transient(what, e) }
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}

impl Inbox for DynamoInbox {
    async fn put_new(&self, item: InboxItem<'_>) -> Result<Stored, Failure> {
        let n = item.notification;
        let mut put = self
            .client
            .put_item()
            .table_name(&self.inbox)
            .item("user", s(item.user))
            .item("nid", s(&n.id))
            .item("kind", s(&n.kind))
            .item("title", s(&n.title))
            .item("created_at", s(&n.created_at))
            .item("accepted_at", AttributeValue::N(item.accepted_at_ms.to_string()))
            .item("source", s(item.source))
            .item("read", AttributeValue::Bool(false))
            .item("muted", AttributeValue::Bool(item.muted))
            .condition_expression("attribute_not_exists(#u)")
            .expression_attribute_names("#u", "user");
        if let Some(body) = &n.body {
            put = put.item("body", s(body));
        }
        if let Some(data) = &n.data {
            put = put.item("data", s(&data.to_string()));
        }
        match put.send().await {
            Ok(_) => Ok(Stored::New),
            Err(e) if e.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => {
                let got = self
                    .client
                    .get_item()
                    .table_name(&self.inbox)
                    .key("user", s(item.user))
                    .key("nid", s(&n.id))
                    .consistent_read(true)
                    .projection_expression("#c")
                    .expression_attribute_names("#c", "cursor")
                    .send()
                    .await
                    .map_err(|e| classify("dynamodb get", e))?;
                let cursor =
                    got.item.and_then(|i| i.get("cursor").and_then(|c| c.as_n().ok()).and_then(|c| c.parse().ok()));
                Ok(Stored::Exists { cursor })
            }
            Err(e) => Err(classify("dynamodb put", e)),
        }
    }

    async fn set_cursor(&self, user: &str, id: &str, cursor: u64) -> Result<(), Failure> {
        self.client
            .update_item()
            .table_name(&self.inbox)
            .key("user", s(user))
            .key("nid", s(id))
            .update_expression("SET #c = :c")
            .expression_attribute_names("#c", "cursor")
            .expression_attribute_values(":c", AttributeValue::N(cursor.to_string()))
            .send()
            .await
            .map_err(|e| classify("dynamodb update", e))?;
        Ok(())
    }

    async fn team_members(&self, team: &str) -> Result<Vec<String>, Failure> {
        let mut members = Vec::new();
        let mut start = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.members)
                .key_condition_expression("team = :t")
                .expression_attribute_values(":t", s(team))
                .projection_expression("#u")
                .expression_attribute_names("#u", "user")
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| classify("dynamodb query members", e))?;
            members.extend(page.items().iter().filter_map(|i| i.get("user").and_then(|u| u.as_s().ok()).cloned()));
            match page.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => return Ok(members),
            }
        }
    }

    async fn muted(&self, users: &[String], kind: &str) -> Result<HashSet<String>, Failure> {
        let mut muted = HashSet::new();
        // 100 keys per request is DynamoDB's BatchGetItem limit.
        for chunk in users.chunks(100) {
            let mut keys = KeysAndAttributes::builder()
                .consistent_read(true)
                .projection_expression("#u, muted_kinds")
                .expression_attribute_names("#u", "user");
            let mut seen = HashSet::new();
            for u in chunk {
                if seen.insert(u) {
                    keys = keys.keys(HashMap::from([("user".to_owned(), s(u))]));
                }
            }
            let mut pending = HashMap::from([(
                self.preferences.clone(),
                keys.build().map_err(|e| Failure::permanent("preferences keys", e))?,
            )]);
            for attempt in 0u32.. {
                let out = self
                    .client
                    .batch_get_item()
                    .set_request_items(Some(pending))
                    .send()
                    .await
                    .map_err(|e| classify("dynamodb get preferences", e))?;
                for item in out.responses.as_ref().and_then(|r| r.get(&self.preferences)).into_iter().flatten() {
                    if kinds_of(item).iter().any(|k| k == kind)
                        && let Some(u) = item.get("user").and_then(|u| u.as_s().ok())
                    {
                        muted.insert(u.clone());
                    }
                }
                match out.unprocessed_keys {
                    Some(left) if !left.is_empty() && attempt < 10 => {
                        pending = left;
                        tokio::time::sleep(Duration::from_millis(50 << attempt.min(5))).await;
                    }
                    Some(left) if !left.is_empty() => {
                        return Err(Failure::transient(
                            "dynamodb get preferences",
                            "keys left unprocessed after 10 attempts",
                        ));
                    }
                    _ => break,
                }
            }
        }
        Ok(muted)
    }
}

async fn ensure_table(client: &Client, name: &str, hash: &str, range: Option<&str>) -> Result<(), Failure> {
    let exists = match client.describe_table().table_name(name).send().await {
        Ok(_) => true,
        Err(e) if e.as_service_error().is_some_and(|e| e.is_resource_not_found_exception()) => false,
        Err(e) => return Err(Failure::transient("dynamodb describe table", e)),
    };
    if !exists {
        let key = |n: &str, t| KeySchemaElement::builder().attribute_name(n).key_type(t).build();
        let attr =
            |n: &str| AttributeDefinition::builder().attribute_name(n).attribute_type(ScalarAttributeType::S).build();
        let mut create = client
            .create_table()
            .table_name(name)
            .billing_mode(BillingMode::PayPerRequest)
            .key_schema(key(hash, KeyType::Hash).map_err(|e| Failure::permanent("key schema", e))?)
            .attribute_definitions(attr(hash).map_err(|e| Failure::permanent("attribute", e))?);
        if let Some(range) = range {
            create = create
                .key_schema(key(range, KeyType::Range).map_err(|e| Failure::permanent("key schema", e))?)
                .attribute_definitions(attr(range).map_err(|e| Failure::permanent("attribute", e))?);
        }
        let created = create.send().await;
        match created {
            Ok(_) => {}
            // Another process created it first: fine, wait for it below.
            Err(e) if e.as_service_error().is_some_and(|e| e.is_resource_in_use_exception()) => {}
            Err(e) => return Err(Failure::transient("dynamodb create table", e)),
        }
    }
    // A new table is CREATING for a while (about 0.5 s on the local server).
    for _ in 0..600 {
        let d = client
            .describe_table()
            .table_name(name)
            .send()
            .await
            .map_err(|e| Failure::transient("dynamodb describe table", e))?;
        if d.table.and_then(|t| t.table_status) == Some(TableStatus::Active) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(Failure::transient("dynamodb create table", format!("{name} did not become active in 60 s")))
}
