//! Preferences: `preferences` (`user` → `muted_kinds`, a list of kinds that are stored but
//! neither pushed nor replayed, and not counted unread).

use std::collections::{HashMap, HashSet};

use aws_sdk_dynamodb::types::AttributeValue;

use crate::errors::{StoreError, classify};
use crate::metrics::Op;
use crate::{Store, get_s, s};

impl Store {
    /// Replaces a user's muted kinds.
    pub async fn set_muted_kinds(&self, user: &str, kinds: &[String]) -> Result<(), StoreError> {
        self.count(Op::Put);
        self.client
            .put_item()
            .table_name(&self.tables.preferences)
            .item("user", s(user))
            .item("muted_kinds", AttributeValue::L(kinds.iter().map(|k| s(k)).collect()))
            .send()
            .await
            .map_err(|e| classify("dynamodb put preferences", e))?;
        Ok(())
    }

    /// A user's muted kinds (none when the user never set any).
    pub async fn muted_kinds(&self, user: &str) -> Result<Vec<String>, StoreError> {
        self.count(Op::Get);
        let got = self
            .client
            .get_item()
            .table_name(&self.tables.preferences)
            .key("user", s(user))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| classify("dynamodb get preferences", e))?;
        Ok(got.item.as_ref().map(kinds_of).unwrap_or_default())
    }

    /// The muted kinds of each of `users` who muted any (BatchGetItem, 100 users per request).
    pub async fn muted_kinds_of(&self, users: &[&str]) -> Result<HashMap<String, Vec<String>>, StoreError> {
        let mut seen = HashSet::new();
        let keys: Vec<_> =
            users.iter().filter(|u| seen.insert(**u)).map(|u| HashMap::from([("user".to_owned(), s(u))])).collect();
        let items = self
            .batch_get("dynamodb get preferences", &self.tables.preferences, keys, "#u, muted_kinds", &[("#u", "user")])
            .await?;
        Ok(items
            .iter()
            .filter_map(|i| Some((get_s(i, "user")?.clone(), kinds_of(i))))
            .filter(|(_, kinds)| !kinds.is_empty())
            .collect())
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
