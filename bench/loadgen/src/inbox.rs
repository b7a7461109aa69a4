//! What Herald stored: inbox items counted in the local store at the end of a scenario, one
//! strongly consistent `Query` (`Select: COUNT`) per user, as an operator would check that every
//! notification that was pushed is also in the user's inbox.

use anyhow::{Context, bail};
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue, Select};
use futures::{StreamExt, TryStreamExt, stream};

/// The inbox table's names, newest first (`<prefix>notifications` in docs/storage.md's model,
/// `<prefix>inbox` before it), so the bench reads whichever the runner made.
const TABLES: &[&str] = &["notifications", "inbox"];
/// Queries in flight at once.
const CONCURRENCY: usize = 16;

pub struct InboxCount {
    client: Client,
    table: String,
}

impl InboxCount {
    pub async fn new(client: Client, prefix: &str) -> anyhow::Result<Self> {
        let listed = client.list_tables().send().await.context("listing the store's tables")?;
        let names = listed.table_names();
        for t in TABLES {
            let table = format!("{prefix}{t}");
            if names.contains(&table) {
                return Ok(InboxCount { client, table });
            }
        }
        bail!("no inbox table ({prefix}{{{}}}) in the store: {names:?}", TABLES.join(","))
    }

    /// Items of users `u<g>` for `g` in `users` whose notification id starts with `id_prefix`.
    pub async fn count(&self, users: impl Iterator<Item = u64>, id_prefix: &str) -> anyhow::Result<u64> {
        let counts: Vec<u64> = stream::iter(users)
            .map(|g| self.count_user(format!("u{g}"), id_prefix))
            .buffer_unordered(CONCURRENCY)
            .try_collect()
            .await?;
        Ok(counts.iter().sum())
    }

    async fn count_user(&self, user: String, id_prefix: &str) -> anyhow::Result<u64> {
        let mut total = 0;
        let mut start = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("#u = :u AND begins_with(nid, :p)")
                .expression_attribute_names("#u", "user")
                .expression_attribute_values(":u", AttributeValue::S(user.clone()))
                .expression_attribute_values(":p", AttributeValue::S(id_prefix.to_owned()))
                .select(Select::Count)
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .with_context(|| format!("counting {user}'s items in {}", self.table))?;
            total += page.count as u64;
            match page.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => return Ok(total),
            }
        }
    }
}
