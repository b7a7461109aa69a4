//! The table names and their creation (local servers, tests; the cloud's tables are made by
//! `infra/`): `notifications` with its local secondary index `by_cursor`, `users`,
//! `preferences` and `team_members` (docs/storage.md).

use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, LocalSecondaryIndex, Projection, ProjectionType,
    ScalarAttributeType, TableStatus,
};
use herald_core::config::DynamoConfig;

use crate::Store;
use crate::errors::StoreError;
use crate::metrics::Op;

/// The local secondary index of `notifications` on `cursor`: newest-first pages of a user's
/// inbox with strongly consistent reads.
pub const BY_CURSOR: &str = "by_cursor";

/// The four table names, `<HERALD_TABLE_PREFIX>…`.
#[derive(Debug, Clone)]
pub struct Tables {
    pub notifications: String,
    pub users: String,
    pub preferences: String,
    pub team_members: String,
}

impl Tables {
    pub fn new(config: &DynamoConfig) -> Self {
        let p = &config.table_prefix;
        Tables {
            notifications: format!("{p}notifications"),
            users: format!("{p}users"),
            preferences: format!("{p}preferences"),
            team_members: format!("{p}team_members"),
        }
    }
}

/// One table's shape: keys (all strings) and the optional numeric LSI range key.
struct Shape<'a> {
    name: &'a str,
    hash: &'a str,
    range: Option<&'a str>,
    lsi_on: Option<(&'a str, &'a str)>,
}

impl Store {
    /// Creates the tables that are missing and waits until they are active.
    pub async fn ensure_tables(&self) -> Result<(), StoreError> {
        let t = &self.tables;
        let shapes = [
            Shape { name: &t.notifications, hash: "user", range: Some("nid"), lsi_on: Some((BY_CURSOR, "cursor")) },
            Shape { name: &t.users, hash: "user", range: None, lsi_on: None },
            Shape { name: &t.preferences, hash: "user", range: None, lsi_on: None },
            Shape { name: &t.team_members, hash: "team", range: Some("user"), lsi_on: None },
        ];
        for shape in shapes {
            self.ensure_table(shape).await?;
        }
        Ok(())
    }

    async fn ensure_table(&self, shape: Shape<'_>) -> Result<(), StoreError> {
        let client: &Client = &self.client;
        let name = shape.name;
        self.count(Op::Admin);
        let exists = match client.describe_table().table_name(name).send().await {
            Ok(_) => true,
            Err(e) if e.as_service_error().is_some_and(|e| e.is_resource_not_found_exception()) => false,
            Err(e) => return Err(StoreError::transient("dynamodb describe table", e)),
        };
        if !exists {
            let built = |e: aws_sdk_dynamodb::error::BuildError| StoreError::permanent("dynamodb table schema", e);
            let key = |n: &str, t| KeySchemaElement::builder().attribute_name(n).key_type(t).build().map_err(built);
            let attr =
                |n: &str, t| AttributeDefinition::builder().attribute_name(n).attribute_type(t).build().map_err(built);
            let mut create = client
                .create_table()
                .table_name(name)
                .billing_mode(BillingMode::PayPerRequest)
                .key_schema(key(shape.hash, KeyType::Hash)?)
                .attribute_definitions(attr(shape.hash, ScalarAttributeType::S)?);
            if let Some(range) = shape.range {
                create = create
                    .key_schema(key(range, KeyType::Range)?)
                    .attribute_definitions(attr(range, ScalarAttributeType::S)?);
            }
            if let Some((index, on)) = shape.lsi_on {
                create = create.attribute_definitions(attr(on, ScalarAttributeType::N)?).local_secondary_indexes(
                    LocalSecondaryIndex::builder()
                        .index_name(index)
                        .key_schema(key(shape.hash, KeyType::Hash)?)
                        .key_schema(key(on, KeyType::Range)?)
                        .projection(Projection::builder().projection_type(ProjectionType::All).build())
                        .build()
                        .map_err(built)?,
                );
            }
            self.count(Op::Admin);
            match create.send().await {
                Ok(_) => {}
                // Another process created it first: fine, wait for it below.
                Err(e) if e.as_service_error().is_some_and(|e| e.is_resource_in_use_exception()) => {}
                Err(e) => return Err(StoreError::transient("dynamodb create table", e)),
            }
        }
        // A new table may be CREATING for a while.
        for _ in 0..600 {
            self.count(Op::Admin);
            let d = client
                .describe_table()
                .table_name(name)
                .send()
                .await
                .map_err(|e| StoreError::transient("dynamodb describe table", e))?;
            if d.table.and_then(|t| t.table_status) == Some(TableStatus::Active) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(StoreError::transient("dynamodb create table", format!("{name} did not become active in 60 s")))
    }
}
