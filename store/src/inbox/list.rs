//! Pages of a user's inbox, newest first, on the local secondary index `by_cursor` with
//! strongly consistent reads.
//!
//! `before` is exclusive and `next` is the cursor of a page's last item, so a page boundary is a
//! fixed point in the cursor order: items stored later have larger cursors and land above the
//! first page, never between two pages (no gap, no repeat). Filters on stored attributes
//! (`kind`, archived, expiry) run in DynamoDB; the effective read state (which needs the user's
//! watermark) is applied here; either way the query goes on until the page is full or the
//! user's items end.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use herald_core::Cursor;

use super::{Item, item_of};
use crate::errors::{StoreError, classify};
use crate::metrics::Op;
use crate::tables::BY_CURSOR;
use crate::{Store, n, s};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Only effectively unread items.
    pub unread: bool,
    /// Only this kind.
    pub kind: Option<String>,
    /// Only archived items (otherwise archived ones are left out).
    pub archived: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub items: Vec<Item>,
    /// The `before` of the following page; `None` on the last.
    pub next: Option<Cursor>,
}

/// Items read per query request (DynamoDB's `Limit` counts items read before filtering).
const QUERY_BATCH: i32 = 100;

impl Store {
    /// Up to `limit` items of `user` with cursors below `before` (all when `None`), newest
    /// first, matching `filter`.
    pub async fn list(
        &self,
        user: &str,
        limit: usize,
        before: Option<Cursor>,
        filter: &Filter,
    ) -> Result<Page, StoreError> {
        let limit = limit.max(1);
        let counters = self.sweep_expired(user).await?;
        let now = super::now_secs();
        let mut items: Vec<Item> = Vec::with_capacity(limit + 1);
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        // One more than asked, so `next` is `None` exactly on the last page.
        while items.len() <= limit {
            let mut q = self
                .client
                .query()
                .table_name(&self.tables.notifications)
                .index_name(BY_CURSOR)
                .expression_attribute_names("#u", "user")
                .expression_attribute_values(":u", s(user))
                .expression_attribute_values(":now", n(now))
                .expression_attribute_values(":t", AttributeValue::Bool(true))
                .scan_index_forward(false)
                .consistent_read(true)
                .limit(QUERY_BATCH)
                .set_exclusive_start_key(start.take());
            q = match before {
                Some(b) => q
                    .key_condition_expression("#u = :u AND #c < :b")
                    .expression_attribute_names("#c", "cursor")
                    .expression_attribute_values(":b", n(b.sort_key())),
                None => q.key_condition_expression("#u = :u"),
            };
            let mut conditions = vec!["(attribute_not_exists(expires_at) OR expires_at > :now)".to_owned()];
            conditions.push(if filter.archived {
                "archived = :t".to_owned()
            } else {
                "(attribute_not_exists(archived) OR archived <> :t)".to_owned()
            });
            if let Some(kind) = &filter.kind {
                conditions.push("#k = :k".to_owned());
                q = q.expression_attribute_names("#k", "kind").expression_attribute_values(":k", s(kind));
            }
            q = q.filter_expression(conditions.join(" AND "));
            self.count(Op::Query);
            let out = q.send().await.map_err(|e| classify("dynamodb query inbox", e))?;
            for row in out.items() {
                if let Some(item) = item_of(row, &counters)
                    && !(filter.unread && item.notification.read)
                {
                    items.push(item);
                }
            }
            match out.last_evaluated_key.filter(|k| !k.is_empty()) {
                Some(k) => start = Some(k),
                None => break,
            }
        }
        let next = (items.len() > limit).then(|| items[limit - 1].cursor);
        items.truncate(limit);
        Ok(Page { items, next })
    }
}
