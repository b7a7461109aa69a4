//! The `deliver` function: validate a request, expand its recipients, store one copy per
//! recipient, and publish each to that user's subject.
//!
//! A user who muted the notification's kind gets the copy stored (marked `muted`) but not
//! published, so nothing is pushed: gateways push only what `HERALD_USER` holds. The decision
//! is taken each time the request is handled, from the preferences as they are then.
//!
//! Every step is idempotent so the whole handler may run again after any crash: the inbox write
//! is conditional, the publish carries `Nats-Msg-Id` = user + id, and the cursor recorded after
//! the publish lets a late redelivery (past the duplicate window) skip publishing again.

use std::collections::HashSet;

use bytes::Bytes;
use futures::{FutureExt, StreamExt, TryStreamExt, stream};
use herald_core::{InvalidRequest, Notification, NotificationRequest, subject};
use time::OffsetDateTime;

use crate::ports::{DeadLetter, Failure, Inbox, InboxItem, Outbox, Stored};
use crate::sequencer::Turn;

/// Per-user publishes of one request awaiting their ack at once (see step 2 of [`deliver`]).
const MAX_UNACKED_PUBLISHES: usize = 1000;

/// One request as taken from `HERALD_IN`.
#[derive(Debug, Clone, Copy)]
pub struct Event<'a> {
    pub source: &'a str,
    pub body: &'a [u8],
    /// When `HERALD_IN` stored it: the default `created_at` and the start of latency.
    pub accepted_at: OffsetDateTime,
    pub stream_seq: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Delivered(Report),
    /// Not valid: kept on the dead-letter subject; the message must not be retried.
    DeadLettered(InvalidRequest),
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Report {
    pub recipients: usize,
    /// Copies written by this run (not by an earlier delivery).
    pub stored: usize,
    /// Copies published by this run (a duplicate publish counts; NATS dropped it).
    pub published: usize,
    /// Recipients who muted this kind: stored, not published.
    pub muted: usize,
}

/// Handles one event. `Err` means try again later; nothing has been lost.
///
/// `turn` orders the publishes of concurrently handled requests (see [`crate::sequencer`]).
pub async fn deliver<I: Inbox, O: Outbox, T: Turn>(
    inbox: &I,
    outbox: &O,
    fanout_concurrency: usize,
    event: Event<'_>,
    mut turn: T,
) -> Result<Outcome, Failure> {
    let valid = match validate(event) {
        Ok(v) => v,
        Err(reason) => {
            let text = reason.to_string();
            // In turn too, so that a process dead-letters in stream order.
            turn.wait().await;
            outbox.dead_letter(DeadLetter::invalid(event.source, event.body, event.stream_seq, &reason, &text)).await?;
            turn.release();
            return Ok(Outcome::DeadLettered(reason));
        }
    };
    let notification = Notification::from_request(&valid);
    let payload = Bytes::from(serde_json::to_vec(&notification).expect("a Notification always serializes"));
    let users = recipients(inbox, &valid.request).await?;
    let muted = inbox.muted(&users, &notification.kind).await?;
    let accepted_at_ms = (event.accepted_at.unix_timestamp_nanos() / 1_000_000) as i64;
    let item =
        |user| InboxItem { user, muted: false, notification: &notification, source: event.source, accepted_at_ms };

    // 1. Store every copy, concurrently. Collected first: a lazy `map` closure here trips
    //    rustc's Send inference for spawned tasks.
    let mut writes = Vec::with_capacity(users.len());
    for user in &users {
        let copy = InboxItem { muted: muted.contains(user), ..item(user) };
        writes.push(async move { inbox.put_new(copy).await.map(|s| (user, s)) });
    }
    let stored: Vec<(&String, Stored)> = stream::iter(writes).buffered(fanout_concurrency.max(1)).try_collect().await?;

    // 2. In turn, send the copies not yet published (a copy with a cursor was, by an earlier
    //    delivery of this request), except to users who muted the kind. At most
    //    MAX_UNACKED_PUBLISHES wait for their ack at once: the NATS client holds a bounded pool
    //    of in-flight acks (5,000) that only awaiting frees, so a 10,000-member team sent
    //    without awaiting any would wait for itself forever. Awaiting the oldest keeps order.
    turn.wait().await;
    let mut pending = std::collections::VecDeque::new();
    let mut acked: Vec<(&String, u64)> = Vec::new();
    for (user, s) in &stored {
        if !matches!(s, Stored::Exists { cursor: Some(_) }) && !muted.contains(*user) {
            if pending.len() >= MAX_UNACKED_PUBLISHES
                && let Some((u, p)) = pending.pop_front()
            {
                acked.push((u, p.await?));
            }
            let p = outbox.send_user(user, &notification.id, payload.clone(), accepted_at_ms).await?;
            pending.push_back((*user, p));
        }
    }
    turn.release();

    // 3. Once each copy is stored in the stream, record its cursor in the inbox.
    let published = acked.len() + pending.len();
    let id = &notification.id;
    let mut cursors = Vec::with_capacity(published);
    for (user, seq) in acked {
        cursors.push(async move { inbox.set_cursor(user, id, seq).await }.boxed());
    }
    for (user, p) in pending {
        cursors.push(async move { inbox.set_cursor(user, id, p.await?).await }.boxed());
    }
    stream::iter(cursors).buffer_unordered(fanout_concurrency.max(1)).try_collect::<Vec<()>>().await?;

    Ok(Outcome::Delivered(Report {
        recipients: users.len(),
        stored: stored.iter().filter(|(_, s)| *s == Stored::New).count(),
        published,
        muted: muted.len(),
    }))
}

fn validate(event: Event<'_>) -> Result<herald_core::ValidRequest, InvalidRequest> {
    if !subject::is_valid_source(event.source) {
        return Err(InvalidRequest::BadSource(event.source.to_owned()));
    }
    NotificationRequest::parse(event.body, event.accepted_at)
}

/// Users, then team members, each once, in first-seen order.
async fn recipients<I: Inbox>(inbox: &I, request: &NotificationRequest) -> Result<Vec<String>, Failure> {
    let mut seen = HashSet::new();
    let mut users = Vec::new();
    for u in &request.recipients.users {
        if seen.insert(u.clone()) {
            users.push(u.clone());
        }
    }
    for team in &request.recipients.teams {
        for u in inbox.team_members(team).await? {
            if seen.insert(u.clone()) {
                users.push(u);
            }
        }
    }
    Ok(users)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Mutex;

    use super::*;

    #[derive(Default)]
    struct FakeInbox {
        items: Mutex<HashMap<(String, String), Option<u64>>>,
        teams: HashMap<String, Vec<String>>,
        mutes: HashMap<String, String>,
    }

    impl Inbox for FakeInbox {
        async fn put_new(&self, item: InboxItem<'_>) -> Result<Stored, Failure> {
            let mut items = self.items.lock().unwrap();
            let key = (item.user.to_owned(), item.notification.id.clone());
            Ok(match items.get(&key) {
                Some(cursor) => Stored::Exists { cursor: *cursor },
                None => {
                    items.insert(key, None);
                    Stored::New
                }
            })
        }
        async fn set_cursor(&self, user: &str, id: &str, cursor: u64) -> Result<(), Failure> {
            self.items.lock().unwrap().insert((user.to_owned(), id.to_owned()), Some(cursor));
            Ok(())
        }
        async fn team_members(&self, team: &str) -> Result<Vec<String>, Failure> {
            Ok(self.teams.get(team).cloned().unwrap_or_default())
        }
        async fn muted(&self, users: &[String], kind: &str) -> Result<HashSet<String>, Failure> {
            Ok(users.iter().filter(|u| self.mutes.get(*u).is_some_and(|k| k == kind)).cloned().collect())
        }
    }

    #[derive(Default)]
    struct FakeOutbox {
        published: Mutex<Vec<String>>,
        dead: Mutex<Vec<String>>,
    }

    impl Outbox for FakeOutbox {
        type Pending = futures::future::Ready<Result<u64, Failure>>;
        async fn send_user(&self, user: &str, _: &str, _: Bytes, _: i64) -> Result<Self::Pending, Failure> {
            let mut p = self.published.lock().unwrap();
            p.push(user.to_owned());
            Ok(futures::future::ready(Ok(p.len() as u64)))
        }
        async fn dead_letter(&self, letter: DeadLetter<'_>) -> Result<(), Failure> {
            self.dead.lock().unwrap().push(letter.code.to_owned());
            Ok(())
        }
    }

    fn event(body: &[u8]) -> Event<'_> {
        Event { source: "test", body, accepted_at: OffsetDateTime::UNIX_EPOCH, stream_seq: 1 }
    }

    #[tokio::test]
    async fn a_user_reached_twice_gets_one_copy_and_a_rerun_publishes_nothing() {
        let inbox = FakeInbox {
            teams: HashMap::from([("t".to_owned(), vec!["a".to_owned(), "b".to_owned()])]),
            ..Default::default()
        };
        let outbox = FakeOutbox::default();
        let body = br#"{"id":"n","recipients":{"users":["a"],"teams":["t","t"]},"kind":"k","title":"x"}"#;
        let first = deliver(&inbox, &outbox, 4, event(body), ()).await.unwrap();
        assert_eq!(first, Outcome::Delivered(Report { recipients: 2, stored: 2, published: 2, muted: 0 }));
        let again = deliver(&inbox, &outbox, 4, event(body), ()).await.unwrap();
        assert_eq!(again, Outcome::Delivered(Report { recipients: 2, stored: 0, published: 0, muted: 0 }));
        let mut published = outbox.published.lock().unwrap().clone();
        published.sort();
        assert_eq!(published, ["a", "b"]);
    }

    #[tokio::test]
    async fn a_muted_kind_is_stored_but_not_published() {
        let inbox = FakeInbox { mutes: HashMap::from([("quiet".to_owned(), "k".to_owned())]), ..Default::default() };
        let outbox = FakeOutbox::default();
        let body = br#"{"id":"m","recipients":{"users":["quiet","loud"]},"kind":"k","title":"x"}"#;
        let out = deliver(&inbox, &outbox, 4, event(body), ()).await.unwrap();
        assert_eq!(out, Outcome::Delivered(Report { recipients: 2, stored: 2, published: 1, muted: 1 }));
        assert_eq!(*outbox.published.lock().unwrap(), ["loud"]);
        assert_eq!(inbox.items.lock().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn invalid_requests_are_dead_lettered_not_delivered() {
        let (inbox, outbox) = (FakeInbox::default(), FakeOutbox::default());
        let out = deliver(&inbox, &outbox, 4, event(br#"{"id":"n","recipients":{},"kind":"k","title":"x"}"#), ())
            .await
            .unwrap();
        assert_eq!(out, Outcome::DeadLettered(InvalidRequest::NoRecipients));
        assert_eq!(*outbox.dead.lock().unwrap(), ["no_recipients"]);
        assert!(outbox.published.lock().unwrap().is_empty());
    }
}
