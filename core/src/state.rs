//! A change of a user's read state or unread count, as published on `herald.state.<token>`
//! (core NATS) for every gateway that has a device of that user: by a gateway after a change
//! made through its inbox API, and by the functions after they store new unread copies.

use serde::{Deserialize, Serialize};

/// One change: the `read` and `unread` frames a device gets for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadEvent {
    /// The ids whose state changed (`["*"]` after read-all); empty when only the count changed.
    pub ids: Vec<String>,
    pub read: bool,
    /// The user's unread count, read from the store after the change.
    pub unread: u64,
    /// The user's change number with that count (one more for every change of the count):
    /// of two counts the one with the higher number is the newer, whatever order they arrive
    /// in. Absent from events of gateways that predate it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rev: Option<u64>,
}

impl ReadEvent {
    /// Only the count changed (new notifications were stored).
    pub fn count(unread: u64, rev: u64) -> Self {
        ReadEvent { ids: Vec::new(), read: false, unread, rev: Some(rev) }
    }
}
