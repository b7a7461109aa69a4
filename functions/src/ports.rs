//! What a function needs from the world, as traits: the inbox store and the NATS outbox.
//!
//! Implementations live in [`crate::dynamo`] and [`crate::nats`]; unit tests use in-memory fakes.

use std::future::Future;

use bytes::Bytes;
use herald_core::{InvalidRequest, Notification};

/// A failure worth retrying: the store or NATS was unavailable, throttled or timed out.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {source}")]
pub struct Transient {
    pub what: &'static str,
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

impl Transient {
    pub fn new(
        what: &'static str,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Transient {
            what,
            source: source.into(),
        }
    }
}

/// What a conditional write of a recipient's copy found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// Written now: this is the first handling for this recipient.
    New,
    /// Already there from an earlier delivery; `cursor` is set once it was published.
    Exists { cursor: Option<u64> },
}

/// One recipient's copy, as the inbox keeps it.
#[derive(Debug, Clone, Copy)]
pub struct InboxItem<'a> {
    pub user: &'a str,
    pub notification: &'a Notification,
    pub source: &'a str,
    pub accepted_at_ms: i64,
}

pub trait Inbox: Send + Sync {
    /// Writes the item unless one exists for (user, id); never overwrites (read state survives
    /// redelivery).
    fn put_new(
        &self,
        item: InboxItem<'_>,
    ) -> impl Future<Output = Result<Stored, Transient>> + Send;

    /// Records the per-user cursor once the publish was acknowledged.
    fn set_cursor(
        &self,
        user: &str,
        id: &str,
        cursor: u64,
    ) -> impl Future<Output = Result<(), Transient>> + Send;

    /// Every member of a team, read through all pages.
    fn team_members(
        &self,
        team: &str,
    ) -> impl Future<Output = Result<Vec<String>, Transient>> + Send;
}

/// A request that did not validate, with what is known of its origin.
#[derive(Debug, Clone)]
pub struct DeadLetter<'a> {
    pub source: &'a str,
    pub body: &'a [u8],
    pub original_seq: u64,
    pub reason: &'a InvalidRequest,
}

pub trait Outbox: Send + Sync {
    /// Resolves to the stream sequence (the cursor) once the server stored the copy, or to the
    /// original one for a duplicate.
    type Pending: Future<Output = Result<u64, Transient>> + Send + 'static;

    /// Sends a user's copy to `HERALD_USER` with `Nats-Msg-Id` = user + id, without waiting for
    /// the server: copies sent in order on one connection are stored in that order.
    fn send_user(
        &self,
        user: &str,
        id: &str,
        payload: Bytes,
        accepted_at_ms: i64,
    ) -> impl Future<Output = Result<Self::Pending, Transient>> + Send;

    /// Keeps an invalid request, with its reason, on `herald.dlq.<source>`.
    fn dead_letter(
        &self,
        letter: DeadLetter<'_>,
    ) -> impl Future<Output = Result<(), Transient>> + Send;
}
