//! Team membership: `team_members` (`team` hash, `user` range). Adding or removing twice is
//! harmless; listing pages through members in user-id order.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{PutRequest, WriteRequest};

use crate::errors::{StoreError, classify};
use crate::metrics::Op;
use crate::{Store, get_s, s};

/// Members per query when a whole team is read from a local server (an endpoint is set). One
/// that serves a request at a time (dynoxide: a 10,000-member query holds it for ~50 ms) lets
/// other requests in between pages. DynamoDB serves requests at once and returns ~25,000 members
/// per 1 MB page, so there a team is read in as few round trips as it takes.
pub const LOCAL_MEMBERS_PAGE: i32 = 1_000;

/// One page of a team's members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MembersPage {
    pub members: Vec<String>,
    /// The `after` of the following page; `None` on the last.
    pub next: Option<String>,
}

impl Store {
    /// Adds a user to a team.
    pub async fn add_member(&self, team: &str, user: &str) -> Result<(), StoreError> {
        self.count(Op::Put);
        self.client
            .put_item()
            .table_name(&self.tables.team_members)
            .item("team", s(team))
            .item("user", s(user))
            .send()
            .await
            .map_err(|e| classify("dynamodb put member", e))?;
        Ok(())
    }

    /// Adds many users to a team, 25 per request (DynamoDB's batch limit).
    pub async fn add_members(&self, team: &str, users: &[String]) -> Result<(), StoreError> {
        let mut requests = Vec::with_capacity(users.len());
        for u in users {
            let put = PutRequest::builder()
                .item("team", s(team))
                .item("user", s(u))
                .build()
                .map_err(|e| StoreError::permanent("dynamodb put member", e))?;
            requests.push(WriteRequest::builder().put_request(put).build());
        }
        self.batch_write(&self.tables.team_members, requests).await
    }

    /// Removes a user from a team.
    pub async fn remove_member(&self, team: &str, user: &str) -> Result<(), StoreError> {
        self.count(Op::Delete);
        self.client
            .delete_item()
            .table_name(&self.tables.team_members)
            .key("team", s(team))
            .key("user", s(user))
            .send()
            .await
            .map_err(|e| classify("dynamodb delete member", e))?;
        Ok(())
    }

    /// Whether `user` is in `team` now (a consistent read).
    pub async fn is_member(&self, team: &str, user: &str) -> Result<bool, StoreError> {
        self.count(Op::Get);
        let got = self
            .client
            .get_item()
            .table_name(&self.tables.team_members)
            .key("team", s(team))
            .key("user", s(user))
            .projection_expression("#u")
            .expression_attribute_names("#u", "user")
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| classify("dynamodb get member", e))?;
        Ok(got.item().is_some())
    }

    /// At most `limit` members of `team` whose id sorts after `after` (from the first when
    /// `None`), in user-id order; `next` is set only when more follow.
    pub async fn list_members_page(
        &self,
        team: &str,
        limit: usize,
        after: Option<&str>,
    ) -> Result<MembersPage, StoreError> {
        let limit = limit.max(1);
        let mut members = Vec::with_capacity(limit + 1);
        let mut start = after.map(|a| HashMap::from([("team".to_owned(), s(team)), ("user".to_owned(), s(a))]));
        // One more than asked, so `next` is `None` exactly on the last page.
        while members.len() <= limit {
            let want = (limit + 1 - members.len()).min(i32::MAX as usize) as i32;
            let (page, last) = self.query_members(team, Some(want), start).await?;
            members.extend(page);
            match last {
                Some(k) => start = Some(k),
                None => break,
            }
        }
        let next = (members.len() > limit).then(|| members[limit - 1].clone());
        members.truncate(limit);
        Ok(MembersPage { members, next })
    }

    /// Every member of a team, in user-id order, read through all pages (of
    /// [`LOCAL_MEMBERS_PAGE`] on a local server).
    pub async fn list_members(&self, team: &str) -> Result<Vec<String>, StoreError> {
        let mut members = Vec::new();
        let mut start = None;
        loop {
            let (page, last) = self.query_members(team, self.members_page, start).await?;
            members.extend(page);
            match last {
                Some(k) => start = Some(k),
                None => return Ok(members),
            }
        }
    }

    #[allow(clippy::type_complexity)]
    async fn query_members(
        &self,
        team: &str,
        limit: Option<i32>,
        start: Option<HashMap<String, aws_sdk_dynamodb::types::AttributeValue>>,
    ) -> Result<(Vec<String>, Option<HashMap<String, aws_sdk_dynamodb::types::AttributeValue>>), StoreError> {
        self.count(Op::Query);
        let page = self
            .client
            .query()
            .table_name(&self.tables.team_members)
            .key_condition_expression("team = :t")
            .expression_attribute_values(":t", s(team))
            .projection_expression("#u")
            .expression_attribute_names("#u", "user")
            .consistent_read(true)
            .set_limit(limit)
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(|e| classify("dynamodb query members", e))?;
        let users = page.items().iter().filter_map(|i| get_s(i, "user").cloned()).collect();
        Ok((users, page.last_evaluated_key.filter(|k| !k.is_empty())))
    }
}
