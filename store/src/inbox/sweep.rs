//! The retention sweep over every user: expired items of users who never come back are removed
//! too (a user who reads their inbox has theirs removed then; see `counters`).
//!
//! A paged `Scan` of `users` (keys only), then each user's oldest items, as a read does; the
//! count stays exact because every removal goes with its counter change in one transaction. The
//! cost is one Scan page per 100 users plus two small reads per user, so it runs rarely (the
//! runner's `HERALD_SWEEP_INTERVAL_SECONDS`, or `herald-functions sweep` from a scheduler).

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;

use crate::errors::{StoreError, classify};
use crate::metrics::Op;
use crate::{Store, get_s};

/// Users per Scan page.
const PAGE: i32 = 100;

/// What one sweep did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweepReport {
    pub users: u64,
    pub removed: u64,
    /// Users whose sweep failed (a conflict that kept coming back, a throttled request): left
    /// for the next sweep, or their next read.
    pub failed: u64,
}

impl Store {
    /// Removes the expired items of every user, waiting `pause` between users so that a sweep
    /// never crowds out deliveries. A failing Scan page ends the sweep with an error; a failing
    /// user is counted and skipped.
    pub async fn sweep_all(&self, pause: Duration) -> Result<SweepReport, StoreError> {
        let mut report = SweepReport::default();
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        loop {
            self.count(Op::Scan);
            let page = self
                .client
                .scan()
                .table_name(&self.tables.users)
                .projection_expression("#u")
                .expression_attribute_names("#u", "user")
                .limit(PAGE)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| classify("dynamodb scan users", e))?;
            for row in page.items() {
                let Some(user) = get_s(row, "user") else { continue };
                report.users += 1;
                match self.sweep_user(user).await {
                    Ok((_, removed)) => report.removed += removed,
                    Err(e) => {
                        tracing::warn!(error = %e, "sweeping a user's expired items failed; left for later");
                        report.failed += 1;
                    }
                }
                if !pause.is_zero() {
                    tokio::time::sleep(pause).await;
                }
            }
            match page.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => return Ok(report),
            }
        }
    }
}
