//! What a function needs from the world, as traits: the inbox store and the NATS outbox.
//!
//! Implementations live in [`crate::dynamo`] and [`crate::nats`]; unit tests use in-memory fakes.

use std::collections::HashSet;
use std::future::Future;

use bytes::Bytes;
use herald_core::{InvalidRequest, Notification};

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

    pub fn is_transient(&self) -> bool {
        self.kind == FailureKind::Transient
    }

    /// The error with its whole chain of causes on one line, for a dead letter's reason.
    pub fn chain(&self) -> String {
        let mut out = self.to_string();
        let mut cause = std::error::Error::source(&*self.source);
        while let Some(c) = cause {
            out.push_str(": ");
            out.push_str(&c.to_string());
            cause = c.source();
        }
        out
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
    /// The user muted this kind: the copy is kept (marked `muted`) but not published.
    pub muted: bool,
    pub notification: &'a Notification,
    pub source: &'a str,
    pub accepted_at_ms: i64,
}

pub trait Inbox: Send + Sync {
    /// Writes the item unless one exists for (user, id); never overwrites (read state survives
    /// redelivery).
    fn put_new(&self, item: InboxItem<'_>) -> impl Future<Output = Result<Stored, Failure>> + Send;

    /// Records the per-user cursor once the publish was acknowledged.
    fn set_cursor(&self, user: &str, id: &str, cursor: u64) -> impl Future<Output = Result<(), Failure>> + Send;

    /// Every member of a team, read through all pages.
    fn team_members(&self, team: &str) -> impl Future<Output = Result<Vec<String>, Failure>> + Send;

    /// Those of `users` who muted `kind` in their preferences.
    fn muted(&self, users: &[String], kind: &str) -> impl Future<Output = Result<HashSet<String>, Failure>> + Send;
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
}

impl<'a> DeadLetter<'a> {
    pub fn invalid(event_source: &'a str, body: &'a [u8], seq: u64, reason: &'a InvalidRequest, text: &'a str) -> Self {
        DeadLetter { source: event_source, body, original_seq: seq, code: reason.code(), reason: text, deliveries: 1 }
    }
}

pub trait Outbox: Send + Sync {
    /// Resolves to the stream sequence (the cursor) once the server stored the copy, or to the
    /// original one for a duplicate.
    type Pending: Future<Output = Result<u64, Failure>> + Send + 'static;

    /// Sends a user's copy to `HERALD_USER` with `Nats-Msg-Id` = user + id, without waiting for
    /// the server: copies sent in order on one connection are stored in that order.
    fn send_user(
        &self,
        user: &str,
        id: &str,
        payload: Bytes,
        accepted_at_ms: i64,
    ) -> impl Future<Output = Result<Self::Pending, Failure>> + Send;

    /// Keeps a request that will not be delivered, with its reason, on `herald.dlq.<source>`.
    fn dead_letter(&self, letter: DeadLetter<'_>) -> impl Future<Output = Result<(), Failure>> + Send;
}
