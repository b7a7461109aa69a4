//! The inbox port on DynamoDB: the `herald-store` crate (docs/storage.md), with its errors
//! mapped into [`Failure`]s of the same kind.
//!
//! `DynamoInbox` is the store itself (the name the benchmarks and tests use): membership and
//! preferences are managed through its methods (`add_member`, `add_members`, `remove_member`,
//! `is_member`, `list_members`, `list_members_page`, `set_muted_kinds`, `muted_kinds`).

use std::collections::{HashMap, HashSet};

pub use herald_store::Store as DynamoInbox;
pub use herald_store::client;
use herald_store::{InsertReport, NewItem, Store};

use crate::ports::{Count, Failure, Inbox};

impl Inbox for Store {
    async fn team_members(&self, team: &str) -> Result<Vec<String>, Failure> {
        Ok(self.list_members(team).await?)
    }

    async fn in_team(&self, team: &str, user: &str) -> Result<bool, Failure> {
        Ok(self.is_member(team, user).await?)
    }

    async fn muted_kinds(&self, users: &[&str]) -> Result<HashMap<String, Vec<String>>, Failure> {
        Ok(Store::muted_kinds_of(self, users).await?)
    }

    async fn existing(&self, copies: &[(&str, &str)]) -> Result<HashSet<(String, String)>, Failure> {
        Ok(Store::existing(self, copies).await?)
    }

    async fn insert(&self, items: &[NewItem<'_>]) -> Result<InsertReport, Failure> {
        Ok(Store::insert(self, items).await?)
    }

    async fn unread_counts(&self, users: &[&str]) -> Result<HashMap<String, Count>, Failure> {
        Ok(Store::unread_counts(self, users).await?)
    }
}
