//! The `deliver` function: validate a request, expand its recipients, publish each recipient's
//! copy to that user's subject, then store it with its cursor.
//!
//! Publish first, then write: the item is written once, with its cursor, together with the
//! user's unread count (`herald-store`'s insert transaction). Nothing is ever published twice:
//!
//! - recipients who already have an item are done (an earlier delivery, or an earlier request
//!   with the same id hours ago), found with one BatchGetItem per 100 recipients;
//! - within `HERALD_USER`'s duplicate window, a copy sent again is deduplicated by its
//!   `Nats-Msg-Id` (user + id) and answers with the first one's cursor;
//! - past the window, on a redelivery or a re-drive, the copy is looked for in the user's subject
//!   from the request's acceptance time (read from the stream leader) and its cursor reused.
//!
//! A user who muted the kind gets the copy too, published with `Herald-Muted: 1` (gateways
//! neither push nor replay it) and stored read, so the inbox and the socket share one cursor
//! space. Preferences are applied when the request is handled.
//!
//! A fan-out goes by chunks of [`CHUNK`] recipients: the existence read of the next chunks
//! overlaps the publishes of this one. Pushing comes first: the writes start once every copy
//! is published, once [`PUBLISHED_AHEAD`] chunks wait for theirs, or once a copy has to wait
//! for its turn, and then run `fanout_concurrency` chunks at once. The local store serves one
//! request at a time, so writes begun early made every later existence read (this team's and
//! other requests') wait behind them: a 10,000-member team is pushed in the time of its reads,
//! not of its writes. DynamoDB serves requests in parallel, where the order matters less; there
//! the push no longer waits for the writes either. The cost: a big team's items (and counts)
//! land after the whole team is pushed, not beside it. Publishes wait for their turn per user
//! ([`crate::order`]), so a small request is not stuck behind a big one.

use std::collections::HashSet;
use std::time::Duration;

use bytes::Bytes;
use futures::channel::mpsc;
use futures::stream::FuturesUnordered;
use futures::{SinkExt, StreamExt, TryStreamExt, stream};
use herald_core::{Cursor, InvalidRequest, Notification, NotificationRequest, subject};
use time::OffsetDateTime;

use crate::metrics::Stages;
use crate::order::{Membership, Pass};
use crate::ports::{DeadLetter, Failure, Inbox, NewItem, Outbox, Stored, UserCopy};

/// Recipients per step of a fan-out: one existence read, their publishes, then their writes.
pub const CHUNK: usize = 100;
/// Existence reads running ahead of the publishes.
const READ_AHEAD: usize = 2;
/// Chunks published and waiting for their writes: once the channel holds this many (plus one,
/// the sender's slot), publishing waits for the writes. With the chunk in hand and the
/// `fanout_concurrency` chunks being written, a request holds at most ~134 chunks published and
/// unstored at the defaults: ~13,400 copies, each a user id and a pending ack (~200 bytes),
/// ~3 MB, and only a request that big does.
pub const PUBLISHED_AHEAD: usize = 100;
/// Copies looked for in `HERALD_USER` at once.
const LOOKUPS_AT_ONCE: usize = 16;
/// Clocks of `HERALD_IN` and `HERALD_USER` leaders may differ by this much.
const CLOCK_SKEW: Duration = Duration::from_secs(60);

/// One request as taken from `HERALD_IN`.
#[derive(Debug, Clone, Copy)]
pub struct Event<'a> {
    pub source: &'a str,
    pub body: &'a [u8],
    /// When `HERALD_IN` stored it: the default `created_at` and the start of latency.
    pub accepted_at: OffsetDateTime,
    pub stream_seq: u64,
    /// This delivery's number, from 1.
    pub delivered: u64,
    /// On a re-driven request: when its copies may first have been published (the original's
    /// acceptance, or the Unix epoch when unknown).
    pub redrive_since: Option<OffsetDateTime>,
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
    /// Items written by this run.
    pub stored: usize,
    /// Items that were already there (an earlier delivery wrote them).
    pub existed: usize,
    /// Copies sent by this run (a duplicate inside the window counts; NATS dropped it).
    pub published: usize,
    /// Copies found already in `HERALD_USER` and not sent again.
    pub found: usize,
    /// Recipients who muted this kind: published with `Herald-Muted`, stored read.
    pub muted: usize,
}

/// What one chunk hands from publishing to storing.
struct Sent<P> {
    published: Vec<(String, bool, P)>,
    found: Vec<(String, bool, Cursor)>,
}

/// Handles one event. `Err` means try again later; nothing has been lost or doubled.
pub async fn deliver<I: Inbox, O: Outbox>(
    inbox: &I,
    outbox: &O,
    fanout_concurrency: usize,
    event: Event<'_>,
    pass: &Pass,
    stages: &Stages,
) -> Result<Outcome, Failure> {
    let accepted_at_ms = (event.accepted_at.unix_timestamp_nanos() / 1_000_000) as i64;
    let valid = match validate(event) {
        Ok(v) => v,
        Err(reason) => {
            let text = reason.to_string();
            let mut letter = DeadLetter::invalid(event.source, event.body, event.stream_seq, &reason, &text);
            letter.accepted_at_ms = Some(accepted_at_ms);
            outbox.dead_letter(letter).await?;
            return Ok(Outcome::DeadLettered(reason));
        }
    };
    let notification = Notification::from_request(&valid);
    let payload = Bytes::from(serde_json::to_vec(&notification).expect("a Notification always serializes"));
    let to = &valid.request.recipients;
    if !to.teams.is_empty() {
        pass.expanding(&to.users, &to.teams);
    }
    let mut users = recipients(inbox, &valid.request).await?;
    pass.declare(&mut users);
    let id = notification.id.as_str();
    let kind = notification.kind.as_str();
    let mut report = Report { recipients: users.len(), ..Report::default() };

    // Publishing (in order, chunk after chunk) feeds storing (chunks at once) through a
    // bounded channel. Storing starts (`go`) when publishing is done, when the channel is full
    // (from then on, when storing lags, publishing waits), or when a copy must wait for its
    // turn.
    let fanout = fanout_concurrency.max(1);
    let (mut to_store, stored) = mpsc::channel::<Sent<O::Pending>>(PUBLISHED_AHEAD);
    let (go, wait_for_go) = futures::channel::oneshot::channel::<()>();
    let mut go = Some(go);
    let mut start_storing = move || {
        if let Some(go) = go.take() {
            let _ = go.send(());
        }
    };
    let publish = async {
        // Collected first: a lazy `map` closure here trips rustc's Send inference for spawned
        // tasks. Futures do nothing until polled, so this reads nothing ahead of time.
        let mut reads = Vec::with_capacity(users.len().div_ceil(CHUNK));
        for chunk in users.chunks(CHUNK) {
            reads.push(read_chunk(inbox, outbox, event, id, kind, chunk, pass));
        }
        let mut reads = stream::iter(reads).buffered(READ_AHEAD);
        let (mut published, mut muted) = (0, 0);
        while let Some((todo, found)) = reads.try_next().await? {
            let mut sent = Vec::with_capacity(todo.len());
            muted += found.iter().filter(|(_, m, _)| *m).count();
            for (user, is_muted) in todo {
                {
                    let members = Members(inbox);
                    let mut turn = std::pin::pin!(pass.turn(&user, &members));
                    if futures::poll!(turn.as_mut()).is_pending() {
                        // An earlier request still has to send this user's copy (it may be on
                        // hold for seconds): what is published meanwhile is stored meanwhile.
                        start_storing();
                        turn.await;
                    }
                }
                muted += is_muted as usize;
                let copy = UserCopy { user: &user, id, payload: payload.clone(), accepted_at_ms, muted: is_muted };
                let pending = outbox.send_user(copy).await?;
                pass.sent(&user);
                sent.push((user, is_muted, pending));
            }
            published += sent.len();
            let next = match to_store.try_send(Sent { published: sent, found }) {
                Ok(()) => continue,
                Err(full) if full.is_full() => full.into_inner(),
                Err(_) => break, // storing failed; its error is the one reported
            };
            start_storing();
            if to_store.send(next).await.is_err() {
                break;
            }
        }
        drop(to_store);
        start_storing();
        Ok::<_, Failure>((published, muted))
    };
    let store = async {
        // `go` is sent before publishing can wait on storing, and on every way out of it.
        let _ = wait_for_go.await;
        let (mut stored, mut running, mut open) = (stored, FuturesUnordered::new(), true);
        let mut totals = (0, 0, 0);
        loop {
            tokio::select! {
                next = stored.next(), if open && running.len() < fanout => match next {
                    Some(sent) => running.push(store_chunk(inbox, outbox, event, &notification, accepted_at_ms, sent, stages)),
                    None => open = false,
                },
                Some(done) = running.next(), if !running.is_empty() => {
                    let (s, e, f) = done?;
                    totals = (totals.0 + s, totals.1 + e, totals.2 + f);
                }
                else => return Ok::<_, Failure>(totals),
            }
        }
    };
    let ((published, muted), (stored, existed, found)) = futures::try_join!(publish, store)?;
    report.published = published;
    report.muted = muted;
    report.stored = stored;
    report.existed = existed;
    report.found = found;
    Ok(Outcome::Delivered(report))
}

/// The users of `chunk` still to publish, and those whose copy is already in `HERALD_USER`,
/// each with whether they muted `kind`; recipients with an item are done. Existence and
/// preferences are read at once (one store round trip before the chunk's publishes).
async fn read_chunk<I: Inbox, O: Outbox>(
    inbox: &I,
    outbox: &O,
    event: Event<'_>,
    id: &str,
    kind: &str,
    chunk: &[String],
    pass: &Pass,
) -> Result<(Vec<(String, bool)>, Vec<(String, bool, Cursor)>), Failure> {
    let copies: Vec<(&str, &str)> = chunk.iter().map(|u| (u.as_str(), id)).collect();
    let users: Vec<&str> = chunk.iter().map(String::as_str).collect();
    let (existing, kinds) = futures::try_join!(inbox.existing(&copies), inbox.muted_kinds(&users))?;
    // Every copy asked about is of `id`: the users are enough.
    let existing: HashSet<String> = existing.into_iter().map(|(user, _)| user).collect();
    let muted = |user: &String| kinds.get(user).is_some_and(|ks| ks.iter().any(|k| k == kind));
    let mut todo = Vec::with_capacity(chunk.len());
    for user in chunk {
        if existing.contains(user) {
            pass.sent(user);
        } else {
            todo.push((user.clone(), muted(user)));
        }
    }
    let Some(since) = copies_may_exist_since(event, outbox.duplicate_window()) else {
        return Ok((todo, Vec::new()));
    };
    let mut lookups = Vec::with_capacity(todo.len());
    for (user, m) in todo {
        lookups.push(async move { outbox.find_user_copy(&user, id, since).await.map(|c| (user, m, c)) });
    }
    let looked: Vec<(String, bool, Option<Cursor>)> =
        stream::iter(lookups).buffered(LOOKUPS_AT_ONCE).try_collect().await?;
    let (mut todo, mut found) = (Vec::new(), Vec::new());
    for (user, m, cursor) in looked {
        match cursor {
            Some(c) => {
                pass.sent(&user);
                found.push((user, m, c));
            }
            None => todo.push((user, m)),
        }
    }
    Ok((todo, found))
}

/// Awaits a chunk's acks, then writes its items and announces the new unread counts:
/// (stored, existed, found).
async fn store_chunk<I: Inbox, O: Outbox>(
    inbox: &I,
    outbox: &O,
    event: Event<'_>,
    notification: &Notification,
    accepted_at_ms: i64,
    sent: Sent<O::Pending>,
    stages: &Stages,
) -> Result<(usize, usize, usize), Failure> {
    let mut copies = Vec::with_capacity(sent.published.len() + sent.found.len());
    for (user, muted, pending) in sent.published {
        let acked = pending.await?;
        stages.published.observe((acked.at - event.accepted_at).as_seconds_f64().max(0.0));
        copies.push((user, muted, acked.cursor));
    }
    let found = sent.found.len();
    copies.extend(sent.found);
    let items: Vec<NewItem<'_>> = copies
        .iter()
        .map(|(user, muted, cursor)| NewItem {
            user,
            notification,
            source: event.source,
            accepted_at_ms,
            cursor: *cursor,
            muted: *muted,
        })
        .collect();
    let done = inbox.insert(&items).await?;
    let elapsed = since_accepted(event);
    for _ in 0..items.len() {
        stages.stored.observe(elapsed);
    }
    let counted: Vec<&str> = done.counted().map(|i| items[i].user).collect();
    announce_unread(inbox, outbox, &counted).await;
    Ok((done.count(Stored::Unread) + done.count(Stored::Read), done.count(Stored::Existed), found))
}

/// Sends the users whose count just grew their new count (one read per 100 users, one core
/// NATS message each). Best effort: the copies are stored and pushed whatever happens here, and
/// a device that misses a count gets the exact one at its next change, `welcome` or `replayed`.
async fn announce_unread<I: Inbox, O: Outbox>(inbox: &I, outbox: &O, users: &[&str]) {
    if users.is_empty() {
        return;
    }
    let counts = match inbox.unread_counts(users).await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, users = users.len(), "reading unread counts to announce failed");
            return;
        }
    };
    for (user, count) in counts {
        if let Err(e) = outbox.announce_unread(&user, count).await {
            tracing::warn!(error = %e, "announcing an unread count failed");
            return;
        }
    }
}

/// Seconds since the request was accepted.
pub fn since_accepted(event: Event<'_>) -> f64 {
    (OffsetDateTime::now_utc() - event.accepted_at).as_seconds_f64().max(0.0)
}

/// From when copies of this request may already be in `HERALD_USER` beyond the reach of its
/// duplicate window; `None` when sending again is safe (a first delivery, or a redelivery
/// well inside the window, where the stream answers a copy sent again with the first one's
/// cursor).
fn copies_may_exist_since(event: Event<'_>, window: Duration) -> Option<OffsetDateTime> {
    if let Some(since) = event.redrive_since {
        return Some(since - CLOCK_SKEW);
    }
    if event.delivered <= 1 {
        return None;
    }
    let age = OffsetDateTime::now_utc() - event.accepted_at;
    // Half the window is left for the sends of this chunk to happen.
    if age < window / 2 { None } else { Some(event.accepted_at - CLOCK_SKEW) }
}

fn validate(event: Event<'_>) -> Result<herald_core::ValidRequest, InvalidRequest> {
    if !subject::is_valid_source(event.source) {
        return Err(InvalidRequest::BadSource(event.source.to_owned()));
    }
    NotificationRequest::parse(event.body, event.accepted_at)
}

/// Team membership for [`Pass::turn`], from the inbox.
struct Members<'a, I>(&'a I);

impl<I: Inbox> Membership for Members<'_, I> {
    async fn is_member(&self, team: &str, user: &str) -> bool {
        self.0.in_team(team, user).await.unwrap_or(true)
    }
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
    use std::sync::{Arc, Mutex};

    use herald_store::InsertReport;

    use super::*;
    use crate::order::Gate;
    use crate::ports::{Acked, Count};

    #[derive(Default)]
    struct FakeInbox {
        items: Mutex<HashMap<(String, String), (Cursor, bool)>>,
        teams: HashMap<String, Vec<String>>,
        mutes: HashMap<String, String>,
        fail_inserts: Mutex<bool>,
        /// When set, team expansions wait for a permit.
        slow_teams: Option<Arc<tokio::sync::Semaphore>>,
        /// Shared with a [`FakeOutbox`] to see the order of sends (`p`) and inserts (`i`).
        log: Arc<Mutex<String>>,
    }

    impl Inbox for FakeInbox {
        async fn team_members(&self, team: &str) -> Result<Vec<String>, Failure> {
            if let Some(permits) = &self.slow_teams {
                permits.acquire().await.expect("never closed").forget();
            }
            Ok(self.teams.get(team).cloned().unwrap_or_default())
        }
        async fn in_team(&self, team: &str, user: &str) -> Result<bool, Failure> {
            Ok(self.teams.get(team).is_some_and(|m| m.iter().any(|u| u == user)))
        }
        async fn muted_kinds(&self, users: &[&str]) -> Result<HashMap<String, Vec<String>>, Failure> {
            Ok(users.iter().filter_map(|u| Some((u.to_string(), vec![self.mutes.get(*u)?.clone()]))).collect())
        }
        async fn existing(&self, copies: &[(&str, &str)]) -> Result<HashSet<(String, String)>, Failure> {
            let items = self.items.lock().unwrap();
            Ok(copies.iter().map(|(u, id)| (u.to_string(), id.to_string())).filter(|k| items.contains_key(k)).collect())
        }
        async fn insert(&self, new: &[NewItem<'_>]) -> Result<InsertReport, Failure> {
            if *self.fail_inserts.lock().unwrap() {
                return Err(Failure::transient("insert", "the store is down"));
            }
            self.log.lock().unwrap().push('i');
            let mut items = self.items.lock().unwrap();
            let mut r = InsertReport::default();
            for i in new {
                let key = (i.user.to_owned(), i.notification.id.clone());
                r.outcomes.push(match items.entry(key) {
                    std::collections::hash_map::Entry::Occupied(_) => Stored::Existed,
                    std::collections::hash_map::Entry::Vacant(v) => {
                        v.insert((i.cursor, i.muted));
                        if i.muted { Stored::Read } else { Stored::Unread }
                    }
                });
            }
            Ok(r)
        }
        async fn unread_counts(&self, users: &[&str]) -> Result<HashMap<String, Count>, Failure> {
            let items = self.items.lock().unwrap();
            Ok(users
                .iter()
                .map(|u| {
                    let n = items.iter().filter(|((o, _), (_, muted))| o == u && !muted).count() as u64;
                    (u.to_string(), Count { unread: n, rev: n })
                })
                .collect())
        }
    }

    /// A stream with no duplicate window: anything sent twice is stored twice.
    #[derive(Default)]
    struct FakeOutbox {
        published: Mutex<Vec<(String, String, bool)>>,
        dead: Mutex<Vec<String>>,
        announced: Mutex<Vec<(String, Count)>>,
        log: Arc<Mutex<String>>,
    }

    impl Outbox for FakeOutbox {
        type Pending = futures::future::Ready<Result<Acked, Failure>>;
        async fn send_user(&self, copy: UserCopy<'_>) -> Result<Self::Pending, Failure> {
            self.log.lock().unwrap().push('p');
            let mut p = self.published.lock().unwrap();
            p.push((copy.user.to_owned(), copy.id.to_owned(), copy.muted));
            Ok(futures::future::ready(Ok(Acked {
                cursor: Cursor::new(1, p.len() as u64),
                at: OffsetDateTime::now_utc(),
            })))
        }
        async fn find_user_copy(&self, user: &str, id: &str, _: OffsetDateTime) -> Result<Option<Cursor>, Failure> {
            let p = self.published.lock().unwrap();
            Ok(p.iter().position(|(u, i, _)| u == user && i == id).map(|k| Cursor::new(1, k as u64 + 1)))
        }
        fn duplicate_window(&self) -> Duration {
            Duration::ZERO
        }
        async fn announce_unread(&self, user: &str, count: Count) -> Result<(), Failure> {
            self.announced.lock().unwrap().push((user.to_owned(), count));
            Ok(())
        }
        async fn dead_letter(&self, letter: DeadLetter<'_>) -> Result<(), Failure> {
            self.dead.lock().unwrap().push(letter.code.to_owned());
            Ok(())
        }
    }

    fn event(body: &[u8], delivered: u64) -> Event<'_> {
        Event {
            source: "test",
            body,
            accepted_at: OffsetDateTime::UNIX_EPOCH,
            stream_seq: 1,
            delivered,
            redrive_since: None,
        }
    }

    async fn run(inbox: &FakeInbox, outbox: &FakeOutbox, body: &[u8], delivered: u64) -> Result<Outcome, Failure> {
        deliver(inbox, outbox, 4, event(body, delivered), &Pass::alone(1), &Stages::default()).await
    }

    #[tokio::test]
    async fn a_user_reached_twice_gets_one_copy_and_a_rerun_publishes_nothing() {
        let inbox = FakeInbox {
            teams: HashMap::from([("t".to_owned(), vec!["a".to_owned(), "b".to_owned()])]),
            ..Default::default()
        };
        let outbox = FakeOutbox::default();
        let body = br#"{"id":"n","recipients":{"users":["a"],"teams":["t","t"]},"kind":"k","title":"x"}"#;
        let first = run(&inbox, &outbox, body, 1).await.unwrap();
        assert_eq!(first, Outcome::Delivered(Report { recipients: 2, stored: 2, published: 2, ..Default::default() }));
        let again = run(&inbox, &outbox, body, 1).await.unwrap();
        assert_eq!(again, Outcome::Delivered(Report { recipients: 2, ..Default::default() }));
        assert_eq!(outbox.published.lock().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn a_copy_published_but_not_stored_is_found_not_published_again() {
        let inbox = FakeInbox::default();
        let outbox = FakeOutbox::default();
        let body = br#"{"id":"n","recipients":{"users":["a","b"]},"kind":"k","title":"x"}"#;
        *inbox.fail_inserts.lock().unwrap() = true;
        assert!(run(&inbox, &outbox, body, 1).await.is_err());
        *inbox.fail_inserts.lock().unwrap() = false;
        let again = run(&inbox, &outbox, body, 2).await.unwrap();
        assert_eq!(again, Outcome::Delivered(Report { recipients: 2, stored: 2, found: 2, ..Default::default() }));
        assert_eq!(outbox.published.lock().unwrap().len(), 2, "nothing sent twice");
        let items = inbox.items.lock().unwrap();
        assert_eq!(items[&("b".to_owned(), "n".to_owned())].0, Cursor::new(1, 2), "the first cursor is kept");
    }

    #[tokio::test]
    async fn a_muted_kind_is_published_marked_and_stored_with_its_cursor() {
        let inbox = FakeInbox { mutes: HashMap::from([("quiet".to_owned(), "k".to_owned())]), ..Default::default() };
        let outbox = FakeOutbox::default();
        let body = br#"{"id":"m","recipients":{"users":["quiet","loud"]},"kind":"k","title":"x"}"#;
        let out = run(&inbox, &outbox, body, 1).await.unwrap();
        assert_eq!(
            out,
            Outcome::Delivered(Report { recipients: 2, stored: 2, published: 2, muted: 1, ..Default::default() })
        );
        let published = outbox.published.lock().unwrap().clone();
        assert!(published.contains(&("quiet".to_owned(), "m".to_owned(), true)));
        assert!(published.contains(&("loud".to_owned(), "m".to_owned(), false)));
        assert!(inbox.items.lock().unwrap()[&("quiet".to_owned(), "m".to_owned())].1, "stored as muted");
        // Only the count that changed is announced.
        assert_eq!(*outbox.announced.lock().unwrap(), vec![("loud".to_owned(), Count { unread: 1, rev: 1 })]);
    }

    #[tokio::test]
    async fn each_stored_copy_announces_the_users_new_count_and_a_rerun_announces_nothing() {
        let (inbox, outbox) = (FakeInbox::default(), FakeOutbox::default());
        for id in ["n1", "n2"] {
            let body = format!(r#"{{"id":"{id}","recipients":{{"users":["u"]}},"kind":"k","title":"x"}}"#);
            run(&inbox, &outbox, body.as_bytes(), 1).await.unwrap();
        }
        run(&inbox, &outbox, br#"{"id":"n2","recipients":{"users":["u"]},"kind":"k","title":"x"}"#, 2).await.unwrap();
        let counts: Vec<u64> = outbox.announced.lock().unwrap().iter().map(|(_, c)| c.unread).collect();
        assert_eq!(counts, vec![1, 2]);
    }

    /// A team of `members` sharing one log between the fakes.
    fn team(members: usize) -> (FakeInbox, FakeOutbox) {
        let log = Arc::new(Mutex::new(String::new()));
        let users = (0..members).map(|i| format!("m{i}")).collect();
        let inbox =
            FakeInbox { teams: HashMap::from([("t".to_owned(), users)]), log: log.clone(), ..Default::default() };
        (inbox, FakeOutbox { log, ..Default::default() })
    }

    #[tokio::test]
    async fn a_team_is_pushed_whole_before_its_writes_begin() {
        let (inbox, outbox) = team(1_000);
        let body = br#"{"id":"n","recipients":{"teams":["t"]},"kind":"k","title":"x"}"#;
        let out = run(&inbox, &outbox, body, 1).await.unwrap();
        assert_eq!(
            out,
            Outcome::Delivered(Report { recipients: 1_000, stored: 1_000, published: 1_000, ..Default::default() })
        );
        let log = inbox.log.lock().unwrap();
        assert_eq!(log.find('i'), Some(1_000), "every copy published before the first write");
    }

    #[tokio::test]
    async fn a_team_past_the_buffer_starts_writing_when_it_is_full_and_finishes() {
        let members = (PUBLISHED_AHEAD + 5) * CHUNK;
        let (inbox, outbox) = team(members);
        let body = br#"{"id":"n","recipients":{"teams":["t"]},"kind":"k","title":"x"}"#;
        let out = tokio::time::timeout(Duration::from_secs(30), run(&inbox, &outbox, body, 1)).await;
        let out = out.expect("publishing waits for the writes, which must have started").unwrap();
        assert_eq!(
            out,
            Outcome::Delivered(Report {
                recipients: members,
                stored: members,
                published: members,
                ..Default::default()
            })
        );
        let log = inbox.log.lock().unwrap();
        // The channel takes PUBLISHED_AHEAD + 1 chunks (one slot is the sender's); the chunk
        // that found it full is in hand.
        assert_eq!(log.find('i'), Some((PUBLISHED_AHEAD + 2) * CHUNK), "writes began when the buffer was full");
    }

    #[tokio::test]
    async fn copies_published_while_a_later_one_waits_for_its_turn_are_stored_meanwhile() {
        let (inbox, outbox) = team(300);
        let gate = Gate::default();
        // An earlier request holds m250's turn (it failed, and its redelivery will send it).
        let earlier = gate.enter(1);
        earlier.declare(&mut vec!["m250".to_owned()]);
        let pass = gate.enter(2);
        let body = br#"{"id":"n","recipients":{"teams":["t"]},"kind":"k","title":"x"}"#;
        let stages = Stages::default();
        let run = deliver(&inbox, &outbox, 4, event(body, 1), &pass, &stages);
        let release = async {
            let stored_first = tokio::time::timeout(Duration::from_secs(5), async {
                while !inbox.log.lock().unwrap().contains('i') {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
            .await
            .is_ok();
            earlier.sent("m250");
            stored_first
        };
        let (out, stored_while_waiting) = futures::join!(run, release);
        assert!(stored_while_waiting, "nothing stored while m250 waited for its turn");
        let out = out.unwrap();
        assert_eq!(
            out,
            Outcome::Delivered(Report { recipients: 300, stored: 300, published: 300, ..Default::default() })
        );
        // m0..m249 were published, chunks one and two stored, then m250 got its turn.
        assert_eq!(inbox.log.lock().unwrap().find('i'), Some(250));
    }

    #[tokio::test]
    async fn a_single_user_notification_passes_a_team_still_being_expanded_unless_in_it() {
        let (mut inbox, outbox) = team(300);
        let expansion = Arc::new(tokio::sync::Semaphore::new(0));
        inbox.slow_teams = Some(expansion.clone());
        // Only wake-ups move a waiting request: none passes by looking again after a while.
        let gate = Gate::deaf();
        let (team_pass, solo_pass, member_pass) = (gate.enter(1), gate.enter(2), gate.enter(3));
        let stages = Stages::default();
        let team_body = br#"{"id":"team","recipients":{"teams":["t"]},"kind":"k","title":"x"}"#;
        let solo_body = br#"{"id":"solo","recipients":{"users":["solo"]},"kind":"k","title":"x"}"#;
        let member_body = br#"{"id":"mine","recipients":{"users":["m7"]},"kind":"k","title":"x"}"#;
        let team = deliver(&inbox, &outbox, 4, event(team_body, 1), &team_pass, &stages);
        let solo = deliver(&inbox, &outbox, 4, event(solo_body, 1), &solo_pass, &stages);
        let member = deliver(&inbox, &outbox, 4, event(member_body, 1), &member_pass, &stages);
        let (mut team, mut member) = (Box::pin(team), Box::pin(member));
        let early = async {
            let solo = tokio::time::timeout(Duration::from_secs(5), solo).await;
            let member_waits = tokio::time::timeout(Duration::from_millis(200), member.as_mut()).await.is_err();
            (solo, member_waits)
        };
        // The team first: it begins expanding (and waits for a permit) before the others run.
        let (team_waits, (solo, member_waits)) = futures::join!(
            async { tokio::time::timeout(Duration::from_millis(300), team.as_mut()).await.is_err() },
            early
        );
        assert!(team_waits, "the team is still being expanded");
        assert!(solo.expect("solo is in no team: it does not wait for the expansion").is_ok());
        assert!(member_waits, "m7 is in the team: its copy of the team comes first");
        expansion.add_permits(1);
        let (team, member) = futures::join!(team, member);
        assert!(team.is_ok() && member.is_ok());
        let published = outbox.published.lock().unwrap();
        let at = |user: &str, id: &str| published.iter().position(|(u, i, _)| u == user && i == id).unwrap();
        assert_eq!(at("solo", "solo"), 0);
        assert!(at("m7", "team") < at("m7", "mine"), "m7's copies in acceptance order");
        assert_eq!(published.len(), 302);
    }

    #[tokio::test]
    async fn invalid_requests_are_dead_lettered_not_delivered() {
        let (inbox, outbox) = (FakeInbox::default(), FakeOutbox::default());
        let out = run(&inbox, &outbox, br#"{"id":"n","recipients":{},"kind":"k","title":"x"}"#, 1).await.unwrap();
        assert_eq!(out, Outcome::DeadLettered(InvalidRequest::NoRecipients));
        assert_eq!(*outbox.dead.lock().unwrap(), ["no_recipients"]);
        assert!(outbox.published.lock().unwrap().is_empty());
    }
}
