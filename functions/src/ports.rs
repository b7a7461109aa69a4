//! What a function needs from the world, as traits: the inbox store and the NATS outbox.
//!
//! Implementations: [`crate::dynamo`] (the `herald-store` crate) and [`crate::nats`]; unit tests use
//! in-memory fakes.

use std::collections::{HashMap, HashSet};
use std::future::Future;

use std::time::Duration;

use bytes::Bytes;
use herald_core::{Cursor, InvalidRequest};
use time::OffsetDateTime;

/// Whether retrying can help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The store or NATS was unavailable, throttled, timed out or unreachable: retry later.
    Transient,
    /// The request itself was refused (a validation error, a malformed item): retrying the same
    /// message cannot succeed, so it goes to the dead-letter stream with the reason.
    Permanent,
}

/// A step of a function that did not succeed; nothing it did is lost, since every step is
/// idempotent.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {source}")]
pub struct Failure {
    pub what: &'static str,
    pub kind: FailureKind,
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

impl Failure {
    pub fn transient(what: &'static str, source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Failure { what, kind: FailureKind::Transient, source: source.into() }
    }

    pub fn permanent(what: &'static str, source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Failure { what, kind: FailureKind::Permanent, source: source.into() }
    }

    /// The same failure for another caller of a shared call (the cause kept as its text).
    pub fn copy(&self) -> Failure {
        let cause = self.source_chain();
        Failure { what: self.what, kind: self.kind, source: cause.into() }
    }

    fn source_chain(&self) -> String {
        let mut out = self.source.to_string();
        let mut cause = std::error::Error::source(&*self.source);
        while let Some(c) = cause {
            out.push_str(": ");
            out.push_str(&c.to_string());
            cause = c.source();
        }
        out
    }

    pub fn is_transient(&self) -> bool {
        self.kind == FailureKind::Transient
    }

    /// The error with its whole chain of causes on one line, for a dead letter's reason.
    pub fn chain(&self) -> String {
        format!("{}: {}", self.what, self.source_chain())
    }
}

impl From<herald_store::StoreError> for Failure {
    fn from(e: herald_store::StoreError) -> Self {
        let kind = if e.is_transient() { FailureKind::Transient } else { FailureKind::Permanent };
        Failure { what: e.op, kind, source: e.source }
    }
}

pub use herald_store::inbox::counters::Count;
pub use herald_store::{InsertReport, NewItem, Stored};

pub trait Inbox: Send + Sync {
    /// Every member of a team, read through all pages.
    fn team_members(&self, team: &str) -> impl Future<Output = Result<Vec<String>, Failure>> + Send;

    /// Whether `user` is in `team` now (a consistent read). Asked by small requests while an
    /// earlier team is being expanded ([`crate::order`]); on an error the request waits for
    /// the expansion.
    fn in_team(&self, team: &str, user: &str) -> impl Future<Output = Result<bool, Failure>> + Send;

    /// The kinds each of `users` muted in their preferences (users who muted none are left out).
    fn muted_kinds(&self, users: &[&str])
    -> impl Future<Output = Result<HashMap<String, Vec<String>>, Failure>> + Send;

    /// Those of `copies` (user, notification id) that already have an item (consistent reads).
    fn existing(
        &self,
        copies: &[(&str, &str)],
    ) -> impl Future<Output = Result<HashSet<(String, String)>, Failure>> + Send;

    /// Stores each copy with its cursor unless its item exists; never overwrites. Copies may
    /// belong to different notifications, and a user may have several.
    fn insert(&self, items: &[NewItem<'_>]) -> impl Future<Output = Result<InsertReport, Failure>> + Send;

    /// The unread counts of `users` as stored now, with their change numbers (consistent reads).
    fn unread_counts(&self, users: &[&str]) -> impl Future<Output = Result<HashMap<String, Count>, Failure>> + Send;
}

/// A request that will not be delivered, with what is known of its origin and why.
#[derive(Debug, Clone)]
pub struct DeadLetter<'a> {
    pub source: &'a str,
    pub body: &'a [u8],
    pub original_seq: u64,
    /// A stable, machine-readable reason: an [`InvalidRequest`] code, `permanent_error`,
    /// `max_deliveries` or `terminated`.
    pub code: &'a str,
    /// The reason in words.
    pub reason: &'a str,
    /// How many times the request was delivered before it was given up.
    pub deliveries: u64,
    /// When `HERALD_IN` first accepted the request (Unix ms), where known: a re-drive looks for
    /// copies published since then.
    pub accepted_at_ms: Option<i64>,
}

impl<'a> DeadLetter<'a> {
    pub fn invalid(event_source: &'a str, body: &'a [u8], seq: u64, reason: &'a InvalidRequest, text: &'a str) -> Self {
        DeadLetter {
            source: event_source,
            body,
            original_seq: seq,
            code: reason.code(),
            reason: text,
            deliveries: 1,
            accepted_at_ms: None,
        }
    }
}

/// One recipient's copy on its way to `HERALD_USER`.
#[derive(Debug, Clone)]
pub struct UserCopy<'a> {
    pub user: &'a str,
    pub id: &'a str,
    pub payload: Bytes,
    pub accepted_at_ms: i64,
    /// Sent with `Herald-Muted: 1`: it gets a cursor, gateways neither push nor replay it.
    pub muted: bool,
}

/// A copy the stream has stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Acked {
    /// Its place in `HERALD_USER` (the original one for a duplicate inside the stream's window).
    pub cursor: Cursor,
    /// When the ack came back: a fan-out collects its acks only when it stores the copies.
    pub at: OffsetDateTime,
}

pub trait Outbox: Send + Sync {
    /// Resolves once the server stored the copy.
    type Pending: Future<Output = Result<Acked, Failure>> + Send + 'static;

    /// Sends a copy to `HERALD_USER` with `Nats-Msg-Id` = user + id, without waiting for the
    /// server: copies sent one after the other are stored in that order.
    fn send_user(&self, copy: UserCopy<'_>) -> impl Future<Output = Result<Self::Pending, Failure>> + Send;

    /// The cursor of a copy of `id` for `user` already in `HERALD_USER`, looked for among the
    /// user's messages stored since `since`, read from the stream leader (a replica may not
    /// have it yet); `None` when there is none.
    fn find_user_copy(
        &self,
        user: &str,
        id: &str,
        since: OffsetDateTime,
    ) -> impl Future<Output = Result<Option<Cursor>, Failure>> + Send;

    /// How long `HERALD_USER` deduplicates a copy's `Nats-Msg-Id`: sending a copy again within
    /// it returns the first one's cursor.
    fn duplicate_window(&self) -> Duration;

    /// Keeps a request that will not be delivered, with its reason, on `herald.dlq.<source>`.
    fn dead_letter(&self, letter: DeadLetter<'_>) -> impl Future<Output = Result<(), Failure>> + Send;

    /// Tells the gateways with a device of `user` its new unread count (`herald.state.<token>`,
    /// core NATS: no one listening, nothing kept).
    fn announce_unread(&self, user: &str, count: Count) -> impl Future<Output = Result<(), Failure>> + Send;
}
