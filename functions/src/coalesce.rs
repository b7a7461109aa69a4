//! Store calls of concurrent requests, sent together: the inbox port wrapped so that the
//! requests a runner has in hand share DynamoDB requests.
//!
//! Every request makes the same four store calls (existence of its copies, its recipients'
//! preferences, the insert transaction, their new unread counts), each for a few users. Sent one
//! by one that is four HTTP requests per single-user notification, and the store's cost per
//! request, not per item, bounds the pipeline. [`Coalesced`] queues each call by kind and sends
//! what has queued as one call as soon as one of the kind's lanes is free: alone, a call goes
//! at once (nothing waits for company); under load, calls wait at most for one store round trip
//! and ride together, up to [`MAX_KEYS`] keys (a BatchGetItem) or [`MAX_COPIES`] copies (one
//! insert transaction). A call that fills a shared call alone (a chunk of a big team) skips the
//! queue.
//!
//! Failures: a transient failure of a shared call is each caller's (each request is retried as
//! it would have been alone); a permanent one is tried again per caller, alone, so that only the
//! request that caused it is dead-lettered. A shared call still running after [`CALL_TIMEOUT`]
//! fails its callers transiently, so a hung store never keeps a lane.
//!
//! Memory: each kind's queue holds at most [`QUEUED`] calls; a caller waits for room (the
//! runner's own concurrency bounds the callers anyway).

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use herald_core::{Cursor, Notification};
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::ports::{Count, Failure, Inbox, InsertReport, NewItem};

/// Shared calls of one kind in flight at once, by default (`HERALD_STORE_LANES`). Measured on
/// the local store, fewer lanes batch more and wait less (2,000 notifications/s: p99 35 ms with
/// 1 lane, 38 ms with 2, 47 ms with 4, 77 ms with 8); DynamoDB serves many requests at once and
/// takes more.
pub const DEFAULT_LANES: usize = 2;
/// Keys per shared read: one BatchGetItem.
pub const MAX_KEYS: usize = 100;
/// Copies per shared insert: one `TransactWriteItems` (two actions per counted copy).
pub const MAX_COPIES: usize = 50;
/// Calls of one kind waiting for a lane.
const QUEUED: usize = 1024;
/// A shared call not answered by then fails its callers (transient).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// An [`Inbox`] whose calls from concurrent requests are batched (see the module docs); team
/// membership is read directly.
pub struct Coalesced<I> {
    inner: Arc<I>,
    existing: Lane<Existing>,
    muted: Lane<Muted>,
    counts: Lane<Counts>,
    insert: Lane<Insert>,
}

impl<I: Inbox + 'static> Coalesced<I> {
    /// Starts one task per kind, each with `lanes` shared calls in flight at most; they end
    /// when this is dropped.
    pub fn new(inner: I, lanes: usize) -> Self {
        let inner = Arc::new(inner);
        let lanes = lanes.max(1);
        Coalesced {
            existing: Lane::start(inner.clone(), MAX_KEYS, lanes),
            muted: Lane::start(inner.clone(), MAX_KEYS, lanes),
            counts: Lane::start(inner.clone(), MAX_KEYS, lanes),
            insert: Lane::start(inner.clone(), MAX_COPIES, lanes),
            inner,
        }
    }
}

impl<I: Inbox + 'static> Inbox for Coalesced<I> {
    async fn team_members(&self, team: &str) -> Result<Vec<String>, Failure> {
        self.inner.team_members(team).await
    }

    async fn in_team(&self, team: &str, user: &str) -> Result<bool, Failure> {
        self.inner.in_team(team, user).await
    }

    async fn muted_kinds(&self, users: &[&str]) -> Result<HashMap<String, Vec<String>>, Failure> {
        if users.len() >= MAX_KEYS {
            return self.inner.muted_kinds(users).await;
        }
        self.muted.call(users.iter().map(|u| u.to_string()).collect()).await
    }

    async fn existing(&self, copies: &[(&str, &str)]) -> Result<HashSet<(String, String)>, Failure> {
        if copies.len() >= MAX_KEYS {
            return self.inner.existing(copies).await;
        }
        self.existing.call(copies.iter().map(|(u, id)| (u.to_string(), id.to_string())).collect()).await
    }

    async fn insert(&self, items: &[NewItem<'_>]) -> Result<InsertReport, Failure> {
        if items.len() >= MAX_COPIES {
            return self.inner.insert(items).await;
        }
        self.insert.call(owned(items)).await
    }

    async fn unread_counts(&self, users: &[&str]) -> Result<HashMap<String, Count>, Failure> {
        if users.len() >= MAX_KEYS {
            return self.inner.unread_counts(users).await;
        }
        self.counts.call(users.iter().map(|u| u.to_string()).collect()).await
    }
}

/// One kind of call: what a caller asks, what it gets, and the shared call.
trait Kind: Send + Sync + 'static {
    type Ask: Send + Sync + 'static;
    type Answer: Send + 'static;
    /// The step named in failures.
    const WHAT: &'static str;
    /// Keys (or copies) in one ask.
    fn size(ask: &Self::Ask) -> usize;
    /// One call for all `asks`; an answer per ask, in their order.
    fn call<I: Inbox>(inner: &I, asks: &[Self::Ask])
    -> impl Future<Output = Result<Vec<Self::Answer>, Failure>> + Send;
}

type Job<A, B> = (A, oneshot::Sender<Result<B, Failure>>);

struct Lane<K: Kind> {
    tx: mpsc::Sender<Job<K::Ask, K::Answer>>,
}

impl<K: Kind> Lane<K> {
    fn start<I: Inbox + 'static>(inner: Arc<I>, max: usize, lanes: usize) -> Self {
        let (tx, rx) = mpsc::channel(QUEUED);
        tokio::spawn(drive::<I, K>(inner, rx, max, lanes));
        Lane { tx }
    }

    async fn call(&self, ask: K::Ask) -> Result<K::Answer, Failure> {
        let (tx, rx) = oneshot::channel();
        self.tx.send((ask, tx)).await.map_err(|_| Failure::transient(K::WHAT, "the runner is stopping"))?;
        rx.await.map_err(|_| Failure::transient(K::WHAT, "the shared call was dropped"))?
    }
}

/// Takes what has queued whenever a lane is free and sends it as one call.
async fn drive<I, K>(inner: Arc<I>, mut rx: mpsc::Receiver<Job<K::Ask, K::Answer>>, max: usize, lanes: usize)
where
    I: Inbox + 'static,
    K: Kind,
{
    let lanes = Arc::new(Semaphore::new(lanes));
    loop {
        let lane = lanes.clone().acquire_owned().await.expect("the semaphore is never closed");
        let Some(first) = rx.recv().await else { return };
        let mut size = K::size(&first.0);
        let mut jobs = vec![first];
        while size < max {
            match rx.try_recv() {
                Ok(job) => {
                    size += K::size(&job.0);
                    jobs.push(job);
                }
                Err(_) => break,
            }
        }
        let inner = inner.clone();
        tokio::spawn(async move {
            let (asks, replies): (Vec<_>, Vec<_>) = jobs.into_iter().unzip();
            let answers = shared::<I, K>(&inner, &asks).await;
            for (reply, answer) in replies.into_iter().zip(answers) {
                let _ = reply.send(answer);
            }
            drop(lane);
        });
    }
}

/// One call for `asks`; on a permanent failure of a call for several, each alone.
async fn shared<I: Inbox, K: Kind>(inner: &I, asks: &[K::Ask]) -> Vec<Result<K::Answer, Failure>> {
    let error = match bounded::<I, K>(inner, asks).await {
        Ok(answers) => return answers.into_iter().map(Ok).collect(),
        Err(e) => e,
    };
    if error.is_transient() || asks.len() == 1 {
        return asks.iter().map(|_| Err(error.copy())).collect();
    }
    let mut out = Vec::with_capacity(asks.len());
    for ask in asks {
        out.push(bounded::<I, K>(inner, std::slice::from_ref(ask)).await.map(|mut a| a.remove(0)));
    }
    out
}

async fn bounded<I: Inbox, K: Kind>(inner: &I, asks: &[K::Ask]) -> Result<Vec<K::Answer>, Failure> {
    match tokio::time::timeout(CALL_TIMEOUT, K::call(inner, asks)).await {
        Ok(r) => r,
        Err(_) => Err(Failure::transient(K::WHAT, format!("no answer from the store within {CALL_TIMEOUT:?}"))),
    }
}

struct Existing;

impl Kind for Existing {
    type Ask = Vec<(String, String)>;
    type Answer = HashSet<(String, String)>;
    const WHAT: &'static str = "existing copies";

    fn size(ask: &Self::Ask) -> usize {
        ask.len()
    }

    async fn call<I: Inbox>(inner: &I, asks: &[Self::Ask]) -> Result<Vec<Self::Answer>, Failure> {
        let all: Vec<(&str, &str)> = asks.iter().flatten().map(|(u, id)| (u.as_str(), id.as_str())).collect();
        let found = inner.existing(&all).await?;
        Ok(asks.iter().map(|ask| ask.iter().filter(|k| found.contains(*k)).cloned().collect()).collect())
    }
}

struct Muted;

impl Kind for Muted {
    type Ask = Vec<String>;
    type Answer = HashMap<String, Vec<String>>;
    const WHAT: &'static str = "preferences";

    fn size(ask: &Self::Ask) -> usize {
        ask.len()
    }

    async fn call<I: Inbox>(inner: &I, asks: &[Self::Ask]) -> Result<Vec<Self::Answer>, Failure> {
        let all: Vec<&str> = asks.iter().flatten().map(String::as_str).collect();
        let kinds = inner.muted_kinds(&all).await?;
        Ok(asks
            .iter()
            .map(|ask| ask.iter().filter_map(|u| Some((u.clone(), kinds.get(u)?.clone()))).collect())
            .collect())
    }
}

struct Counts;

impl Kind for Counts {
    type Ask = Vec<String>;
    type Answer = HashMap<String, Count>;
    const WHAT: &'static str = "unread counts";

    fn size(ask: &Self::Ask) -> usize {
        ask.len()
    }

    async fn call<I: Inbox>(inner: &I, asks: &[Self::Ask]) -> Result<Vec<Self::Answer>, Failure> {
        let all: Vec<&str> = asks.iter().flatten().map(String::as_str).collect();
        let counts = inner.unread_counts(&all).await?;
        Ok(asks.iter().map(|ask| ask.iter().filter_map(|u| Some((u.clone(), *counts.get(u)?))).collect()).collect())
    }
}

/// A copy to insert, owned so that it can wait in a queue.
struct OwnedItem {
    user: String,
    notification: Arc<Notification>,
    source: String,
    accepted_at_ms: i64,
    cursor: Cursor,
    muted: bool,
}

/// The copies, their notification cloned once per run of copies that share it.
fn owned(items: &[NewItem<'_>]) -> Vec<OwnedItem> {
    let mut last: Option<(*const Notification, Arc<Notification>)> = None;
    items
        .iter()
        .map(|i| {
            let notification = match &last {
                Some((at, n)) if std::ptr::eq(*at, i.notification) => n.clone(),
                _ => {
                    let n = Arc::new(i.notification.clone());
                    last = Some((i.notification as *const _, n.clone()));
                    n
                }
            };
            OwnedItem {
                user: i.user.to_owned(),
                notification,
                source: i.source.to_owned(),
                accepted_at_ms: i.accepted_at_ms,
                cursor: i.cursor,
                muted: i.muted,
            }
        })
        .collect()
}

struct Insert;

impl Kind for Insert {
    type Ask = Vec<OwnedItem>;
    type Answer = InsertReport;
    const WHAT: &'static str = "insert";

    fn size(ask: &Self::Ask) -> usize {
        ask.len()
    }

    async fn call<I: Inbox>(inner: &I, asks: &[Self::Ask]) -> Result<Vec<Self::Answer>, Failure> {
        let all: Vec<NewItem<'_>> = asks
            .iter()
            .flatten()
            .map(|o| NewItem {
                user: &o.user,
                notification: &o.notification,
                source: &o.source,
                accepted_at_ms: o.accepted_at_ms,
                cursor: o.cursor,
                muted: o.muted,
            })
            .collect();
        let mut outcomes = inner.insert(&all).await?.outcomes.into_iter();
        Ok(asks.iter().map(|ask| InsertReport { outcomes: outcomes.by_ref().take(ask.len()).collect() }).collect())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use futures::future::join_all;
    use herald_store::Stored;

    use super::*;
    use crate::ports::FailureKind;

    /// Items in memory; counts the calls it gets; refuses (permanently) any insert with a copy
    /// for `bad`, or fails every call (transiently) while `down`.
    #[derive(Default)]
    struct Memory {
        items: Mutex<HashSet<(String, String)>>,
        calls: AtomicUsize,
        down: std::sync::atomic::AtomicBool,
    }

    impl Memory {
        fn enter(&self) -> Result<(), Failure> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            if self.down.load(Ordering::SeqCst) {
                return Err(Failure::transient("store", "down"));
            }
            Ok(())
        }
    }

    impl Inbox for Memory {
        async fn team_members(&self, _: &str) -> Result<Vec<String>, Failure> {
            Ok(Vec::new())
        }
        async fn in_team(&self, _: &str, _: &str) -> Result<bool, Failure> {
            Ok(false)
        }
        async fn muted_kinds(&self, users: &[&str]) -> Result<HashMap<String, Vec<String>>, Failure> {
            self.enter()?;
            Ok(users.iter().filter(|u| u.starts_with("quiet")).map(|u| (u.to_string(), vec!["k".to_owned()])).collect())
        }
        async fn existing(&self, copies: &[(&str, &str)]) -> Result<HashSet<(String, String)>, Failure> {
            self.enter()?;
            let items = self.items.lock().unwrap();
            Ok(copies.iter().map(|(u, i)| (u.to_string(), i.to_string())).filter(|k| items.contains(k)).collect())
        }
        async fn insert(&self, new: &[NewItem<'_>]) -> Result<InsertReport, Failure> {
            self.enter()?;
            if new.iter().any(|i| i.user == "bad") {
                return Err(Failure::permanent("insert", "item refused"));
            }
            let mut items = self.items.lock().unwrap();
            let outcomes = new
                .iter()
                .map(|i| match items.insert((i.user.to_owned(), i.notification.id.clone())) {
                    true => Stored::Unread,
                    false => Stored::Existed,
                })
                .collect();
            Ok(InsertReport { outcomes })
        }
        async fn unread_counts(&self, users: &[&str]) -> Result<HashMap<String, Count>, Failure> {
            self.enter()?;
            let items = self.items.lock().unwrap();
            Ok(users
                .iter()
                .map(|u| {
                    let n = items.iter().filter(|(o, _)| o == u).count() as u64;
                    (u.to_string(), Count { unread: n, rev: n })
                })
                .collect())
        }
    }

    fn notification(id: &str) -> Notification {
        Notification {
            id: id.to_owned(),
            kind: "k".to_owned(),
            title: "t".to_owned(),
            body: None,
            data: None,
            created_at: "2026-12-01T00:00:00Z".to_owned(),
            read: false,
        }
    }

    fn item<'a>(user: &'a str, n: &'a Notification) -> NewItem<'a> {
        NewItem { user, notification: n, source: "s", accepted_at_ms: 0, cursor: Cursor::new(1, 1), muted: false }
    }

    #[tokio::test]
    async fn concurrent_calls_share_one_store_call_and_each_gets_its_own_answer() {
        let inbox = Coalesced::new(Memory::default(), DEFAULT_LANES);
        let ns: Vec<Notification> = (0..20).map(|i| notification(&format!("n{i}"))).collect();
        let users: Vec<String> = (0..20).map(|i| format!("u{i}")).collect();
        // Twenty requests store a copy each, and u0 gets a second one.
        let copies: Vec<[NewItem<'_>; 1]> = (0..20).map(|i| [item(&users[i], &ns[i])]).collect();
        let inserts = join_all(copies.iter().map(|c| inbox.insert(c)));
        let extra = [item(&users[0], &ns[1])];
        let second = inbox.insert(&extra);
        let (reports, second) = futures::join!(inserts, second);
        for r in reports {
            assert_eq!(r.unwrap().outcomes, vec![Stored::Unread]);
        }
        assert_eq!(second.unwrap().outcomes, vec![Stored::Unread]);
        assert_eq!(inbox.inner.calls.load(Ordering::SeqCst), 1, "one store call for 21 requests");

        let asks: Vec<_> = (0..20).map(|i| vec![(users[i].as_str(), ns[i].id.as_str()), ("nobody", "n0")]).collect();
        let found = join_all(asks.iter().map(|a| inbox.existing(a))).await;
        for (i, f) in found.into_iter().enumerate() {
            assert_eq!(f.unwrap(), HashSet::from([(users[i].clone(), ns[i].id.clone())]));
        }
        let refs: Vec<[&str; 1]> = users.iter().map(|u| [u.as_str()]).collect();
        let counts = join_all(refs.iter().map(|u| inbox.unread_counts(u))).await;
        let counts: Vec<u64> = counts.into_iter().map(|c| c.unwrap().values().next().unwrap().unread).collect();
        assert_eq!(counts[0], 2);
        assert!(counts[1..].iter().all(|c| *c == 1));
        let asks = [["quiet1"], ["loud"]];
        let muted = join_all(asks.iter().map(|u| inbox.muted_kinds(u))).await;
        assert_eq!(muted[0].as_ref().unwrap()["quiet1"], vec!["k".to_owned()]);
        assert!(muted[1].as_ref().unwrap().is_empty());
        assert_eq!(inbox.inner.calls.load(Ordering::SeqCst), 4, "one store call per kind");
    }

    #[tokio::test]
    async fn a_refused_copy_fails_only_its_own_request() {
        let inbox = Coalesced::new(Memory::default(), DEFAULT_LANES);
        let (a, b) = (notification("a"), notification("b"));
        let (one, two, three) = ([item("u1", &a)], [item("u2", &b), item("bad", &b)], [item("u3", &a)]);
        let (good, bad, also) = futures::join!(inbox.insert(&one), inbox.insert(&two), inbox.insert(&three));
        assert_eq!(good.unwrap().outcomes, vec![Stored::Unread]);
        assert_eq!(also.unwrap().outcomes, vec![Stored::Unread]);
        assert_eq!(bad.unwrap_err().kind, FailureKind::Permanent);
        let items = inbox.inner.items.lock().unwrap();
        assert!(
            items.contains(&("u1".to_owned(), "a".to_owned())) && items.contains(&("u3".to_owned(), "a".to_owned()))
        );
        assert!(!items.contains(&("u2".to_owned(), "b".to_owned())));
    }

    #[tokio::test]
    async fn a_store_outage_fails_every_caller_transiently() {
        let inbox = Coalesced::new(Memory::default(), DEFAULT_LANES);
        inbox.inner.down.store(true, Ordering::SeqCst);
        let n = notification("n");
        let (one, two) = ([item("u1", &n)], [item("u2", &n)]);
        let (x, y) = futures::join!(inbox.insert(&one), inbox.insert(&two));
        for r in [x, y] {
            let e = r.unwrap_err();
            assert!(e.is_transient());
            assert!(e.chain().contains("down"), "{}", e.chain());
        }
        assert_eq!(inbox.inner.calls.load(Ordering::SeqCst), 1, "a transient failure is not tried per caller");
    }
}
