//! The inbox as its user sees it: pages newest first, the unread count, read / unread /
//! archive / read-all, and the removal of expired items, with `unread` kept exact by the rules
//! of docs/storage.md (effective read state, a per-user read-all watermark, optimistic
//! concurrency on `users.version`).
//!
//! Modules: [`counters`] (the `users` row and the expiry sweep), [`list`] (pages),
//! [`mark`] (one item's state, read-all), [`state`] (batch read state for replays).

pub mod counters;
pub mod list;
pub mod mark;
pub mod state;
pub mod sweep;

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use herald_core::{Cursor, Notification};

use crate::get_s;

pub use counters::Counters;
pub use list::{Filter, Page};
pub use mark::{Change, Marked};

/// One item of a user's inbox, with its effective read state.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub cursor: Cursor,
    pub notification: Notification,
    pub archived: bool,
}

/// What an item row says about its read state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct RowState {
    pub cursor: u128,
    /// Explicit `read`; absent = false.
    pub read: bool,
    /// The version at which `read` was set explicitly.
    pub rv: Option<u64>,
    pub archived: bool,
    pub expires_at: Option<i64>,
}

impl RowState {
    pub fn of(item: &HashMap<String, AttributeValue>) -> Self {
        RowState {
            cursor: num(item, "cursor").unwrap_or(0),
            read: bool_of(item, "read"),
            rv: num(item, "rv"),
            archived: bool_of(item, "archived"),
            expires_at: num(item, "expires_at"),
        }
    }

    /// The effective read state (docs/storage.md, "Effective read state").
    pub fn is_read(&self, c: &Counters) -> bool {
        match self.rv {
            Some(rv) if rv > c.rv_all => self.read,
            _ if c.read_all.is_some_and(|w| self.cursor <= w) => true,
            _ => self.read,
        }
    }

    pub fn expired(&self, now: i64) -> bool {
        self.expires_at.is_some_and(|e| e <= now)
    }
}

/// Decodes a `notifications` row (`None` when it lacks what every row has).
pub(crate) fn item_of(row: &HashMap<String, AttributeValue>, counters: &Counters) -> Option<Item> {
    let state = RowState::of(row);
    let data = get_s(row, "data").and_then(|d| serde_json::from_str(d).ok());
    Some(Item {
        cursor: Cursor::from_sort_key(state.cursor),
        archived: state.archived,
        notification: Notification {
            id: get_s(row, "nid")?.clone(),
            kind: get_s(row, "kind")?.clone(),
            title: get_s(row, "title")?.clone(),
            body: get_s(row, "body").cloned(),
            data,
            created_at: get_s(row, "created_at").cloned().unwrap_or_default(),
            read: state.is_read(counters),
        },
    })
}

pub(crate) fn num<T: std::str::FromStr>(item: &HashMap<String, AttributeValue>, name: &str) -> Option<T> {
    item.get(name).and_then(|v| v.as_n().ok()).and_then(|n| n.parse().ok())
}

fn bool_of(item: &HashMap<String, AttributeValue>, name: &str) -> bool {
    item.get(name).and_then(|v| v.as_bool().ok()).copied().unwrap_or(false)
}

pub(crate) fn now_secs() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}
