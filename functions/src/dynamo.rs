//! The inbox in DynamoDB: one item per (user, notification id), written once, never overwritten.
//!
//! Tables: `<prefix>inbox` (`user` S hash, `nid` S range) and `<prefix>team_members` (`team` S
//! hash, `user` S range). DynamoDB is the record of truth; JetStream only buffers delivery.

use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::{Credentials, Region};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
    ScalarAttributeType, TableStatus,
};
use herald_core::config::DynamoConfig;

use crate::ports::{Inbox, InboxItem, Stored, Transient};

/// Builds a client once per process. A local endpoint gets fixed test credentials, since a
/// laptop has none and the local server does not check them.
pub async fn client(config: &DynamoConfig) -> Client {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(Region::new(config.region.clone()));
    if let Some(endpoint) = &config.endpoint {
        loader = loader
            .endpoint_url(endpoint)
            .credentials_provider(Credentials::new(
                "local",
                "local",
                None,
                None,
                "herald-local",
            ));
    }
    Client::new(&loader.load().await)
}

#[derive(Debug, Clone)]
pub struct DynamoInbox {
    client: Client,
    inbox: String,
    members: String,
}

impl DynamoInbox {
    pub fn new(client: Client, config: &DynamoConfig) -> Self {
        DynamoInbox {
            client,
            inbox: config.inbox_table(),
            members: config.members_table(),
        }
    }

    /// Creates the tables that are missing and waits until they are active.
    pub async fn ensure_tables(&self) -> Result<(), Transient> {
        ensure_table(&self.client, &self.inbox, "user", "nid").await?;
        ensure_table(&self.client, &self.members, "team", "user").await
    }

    /// Adds a user to a team (the admin API and tests use it).
    pub async fn add_member(&self, team: &str, user: &str) -> Result<(), Transient> {
        self.client
            .put_item()
            .table_name(&self.members)
            .item("team", s(team))
            .item("user", s(user))
            .send()
            .await
            .map_err(|e| Transient::new("dynamodb put member", e))?;
        Ok(())
    }
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}

impl Inbox for DynamoInbox {
    async fn put_new(&self, item: InboxItem<'_>) -> Result<Stored, Transient> {
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
            .item(
                "accepted_at",
                AttributeValue::N(item.accepted_at_ms.to_string()),
            )
            .item("source", s(item.source))
            .item("read", AttributeValue::Bool(false))
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
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
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
                    .map_err(|e| Transient::new("dynamodb get", e))?;
                let cursor = got.item.and_then(|i| {
                    i.get("cursor")
                        .and_then(|c| c.as_n().ok())
                        .and_then(|c| c.parse().ok())
                });
                Ok(Stored::Exists { cursor })
            }
            Err(e) => Err(Transient::new("dynamodb put", e)),
        }
    }

    async fn set_cursor(&self, user: &str, id: &str, cursor: u64) -> Result<(), Transient> {
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
            .map_err(|e| Transient::new("dynamodb update", e))?;
        Ok(())
    }

    async fn team_members(&self, team: &str) -> Result<Vec<String>, Transient> {
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
                .map_err(|e| Transient::new("dynamodb query members", e))?;
            members.extend(
                page.items()
                    .iter()
                    .filter_map(|i| i.get("user").and_then(|u| u.as_s().ok()).cloned()),
            );
            match page.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => return Ok(members),
            }
        }
    }
}

async fn ensure_table(
    client: &Client,
    name: &str,
    hash: &str,
    range: &str,
) -> Result<(), Transient> {
    let exists = match client.describe_table().table_name(name).send().await {
        Ok(_) => true,
        Err(e)
            if e.as_service_error()
                .is_some_and(|e| e.is_resource_not_found_exception()) =>
        {
            false
        }
        Err(e) => return Err(Transient::new("dynamodb describe table", e)),
    };
    if !exists {
        let key = |n: &str, t| {
            KeySchemaElement::builder()
                .attribute_name(n)
                .key_type(t)
                .build()
        };
        let attr = |n: &str| {
            AttributeDefinition::builder()
                .attribute_name(n)
                .attribute_type(ScalarAttributeType::S)
                .build()
        };
        let created = client
            .create_table()
            .table_name(name)
            .billing_mode(BillingMode::PayPerRequest)
            .key_schema(key(hash, KeyType::Hash).map_err(|e| Transient::new("key schema", e))?)
            .key_schema(key(range, KeyType::Range).map_err(|e| Transient::new("key schema", e))?)
            .attribute_definitions(attr(hash).map_err(|e| Transient::new("attribute", e))?)
            .attribute_definitions(attr(range).map_err(|e| Transient::new("attribute", e))?)
            .send()
            .await;
        match created {
            Ok(_) => {}
            // Another process created it first: fine, wait for it below.
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_resource_in_use_exception()) => {}
            Err(e) => return Err(Transient::new("dynamodb create table", e)),
        }
    }
    // A new table is CREATING for a while (about 0.5 s on the local server).
    for _ in 0..600 {
        let d = client
            .describe_table()
            .table_name(name)
            .send()
            .await
            .map_err(|e| Transient::new("dynamodb describe table", e))?;
        if d.table.and_then(|t| t.table_status) == Some(TableStatus::Active) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(Transient::new(
        "dynamodb create table",
        format!("{name} did not become active in 60 s"),
    ))
}
