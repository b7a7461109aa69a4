//! No copy is ever published twice, whatever fails in between: a DynamoDB outage longer than
//! `HERALD_USER`'s duplicate window after the copies went out, and a re-drive of a request whose
//! copies were published; and no head-of-line blocking: a single-user notification accepted
//! behind a 10,000-member team is pushed long before the team is done.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use herald_client::{Event, NotificationRequest};
use herald_functions::dynamo::DynamoInbox;
use herald_functions::ports::{Failure, Inbox, InsertReport, NewItem};
use herald_functions::redrive::{Filter, redrive};
use herald_tests::procs::{eventually, stored_copies};
use herald_tests::stack::{drain_events, next_event, notification_ids, request};
use herald_tests::{Stack, StackOptions};
use tokio::sync::oneshot;

/// The real store, except that the first insert of `id` waits for the test (which stops the
/// store meanwhile), and inserts of `id` fail while `broken` is set.
struct Interfere {
    inner: DynamoInbox,
    id: &'static str,
    at_first_insert: std::sync::Mutex<Option<(oneshot::Sender<()>, oneshot::Receiver<()>)>>,
    broken: Arc<AtomicBool>,
}

impl Inbox for Interfere {
    async fn team_members(&self, team: &str) -> Result<Vec<String>, Failure> {
        Inbox::team_members(&self.inner, team).await
    }
    async fn in_team(&self, team: &str, user: &str) -> Result<bool, Failure> {
        Inbox::in_team(&self.inner, team, user).await
    }
    async fn muted_kinds(&self, users: &[&str]) -> Result<HashMap<String, Vec<String>>, Failure> {
        Inbox::muted_kinds(&self.inner, users).await
    }
    async fn existing(&self, copies: &[(&str, &str)]) -> Result<HashSet<(String, String)>, Failure> {
        Inbox::existing(&self.inner, copies).await
    }
    async fn insert(&self, items: &[NewItem<'_>]) -> Result<InsertReport, Failure> {
        // The runner batches copies of several requests into one call.
        if items.iter().any(|i| i.notification.id == self.id) {
            let first = self.at_first_insert.lock().unwrap().take();
            if let Some((reached, go)) = first {
                let _ = reached.send(());
                let _ = go.await;
            }
            if self.broken.load(Ordering::SeqCst) {
                return Err(Failure::transient("insert", "broken by the test"));
            }
        }
        Inbox::insert(&self.inner, items).await
    }
    async fn unread_counts(
        &self,
        users: &[&str],
    ) -> Result<std::collections::HashMap<String, herald_functions::ports::Count>, Failure> {
        Inbox::unread_counts(&self.inner, users).await
    }
}

/// The real store, except that expanding a team waits (10 s at most) until `asks` questions
/// "is this user in the team?" have been asked, and every answer is recorded.
struct AskedFirst {
    inner: DynamoInbox,
    asks: usize,
    answers: Arc<std::sync::Mutex<Vec<(String, String, bool)>>>,
    asked: Arc<tokio::sync::Notify>,
}

impl Inbox for AskedFirst {
    async fn team_members(&self, team: &str) -> Result<Vec<String>, Failure> {
        let _ = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let asked = self.asked.notified();
                if self.answers.lock().unwrap().len() >= self.asks {
                    return;
                }
                asked.await;
            }
        })
        .await;
        Inbox::team_members(&self.inner, team).await
    }
    async fn in_team(&self, team: &str, user: &str) -> Result<bool, Failure> {
        let answer = Inbox::in_team(&self.inner, team, user).await?;
        self.answers.lock().unwrap().push((team.to_owned(), user.to_owned(), answer));
        self.asked.notify_waiters();
        Ok(answer)
    }
    async fn muted_kinds(&self, users: &[&str]) -> Result<HashMap<String, Vec<String>>, Failure> {
        Inbox::muted_kinds(&self.inner, users).await
    }
    async fn existing(&self, copies: &[(&str, &str)]) -> Result<HashSet<(String, String)>, Failure> {
        Inbox::existing(&self.inner, copies).await
    }
    async fn insert(&self, items: &[NewItem<'_>]) -> Result<InsertReport, Failure> {
        Inbox::insert(&self.inner, items).await
    }
    async fn unread_counts(
        &self,
        users: &[&str],
    ) -> Result<std::collections::HashMap<String, herald_functions::ports::Count>, Failure> {
        Inbox::unread_counts(&self.inner, users).await
    }
}

fn short_window(extra: &[(&str, &str)]) -> StackOptions {
    let mut env = vec![("HERALD_USER_DUPLICATE_WINDOW_SECONDS".to_owned(), "2".to_owned())];
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    StackOptions { start_runner: false, env, ..Default::default() }
}

#[tokio::test]
async fn a_store_outage_longer_than_the_duplicate_window_publishes_nothing_twice() -> anyhow::Result<()> {
    let mut stack = Stack::start(short_window(&[])).await?;
    let (reached_tx, reached) = oneshot::channel();
    let (go, go_rx) = oneshot::channel();
    stack
        .start_runner_with(move |inbox, outbox| {
            let inbox = Interfere {
                inner: inbox,
                id: "outage",
                at_first_insert: std::sync::Mutex::new(Some((reached_tx, go_rx))),
                broken: Arc::new(AtomicBool::new(false)),
            };
            (inbox, outbox)
        })
        .await?;
    let mut a = stack.connect("out-a", None).await?;
    stack.publish("outage", &["out-a", "out-b"]).await?;
    // Published, not yet stored: the store goes away for longer than the window.
    tokio::time::timeout(Duration::from_secs(10), reached).await??;
    stack.dynalite.stop();
    let _ = go.send(());
    tokio::time::sleep(Duration::from_secs(5)).await;
    stack.dynalite.resume()?;

    eventually(Duration::from_secs(30), || async { Ok(stack.stored("out-b", "outage").await? == 1) }).await?;
    assert_eq!(stack.stored("out-a", "outage").await?, 1);
    for u in ["out-a", "out-b"] {
        assert_eq!(stack.stream_count(u).await?, 1, "{u}: one copy in HERALD_USER");
    }
    let got = notification_ids(&drain_events(&mut a, Duration::from_secs(1)).await);
    assert_eq!(got, ["outage"], "pushed once");
    Ok(())
}

#[tokio::test]
async fn a_redrive_of_a_request_whose_copies_were_published_publishes_nothing_twice() -> anyhow::Result<()> {
    let mut stack = Stack::start(short_window(&[("HERALD_MAX_DELIVER", "2")])).await?;
    let broken = Arc::new(AtomicBool::new(true));
    let flag = broken.clone();
    stack
        .start_runner_with(move |inbox, outbox| {
            let inbox = Interfere {
                inner: inbox,
                id: "redrive-me",
                at_first_insert: std::sync::Mutex::new(None),
                broken: flag,
            };
            (inbox, outbox)
        })
        .await?;
    let mut u = stack.connect("rd-a", None).await?;
    stack.publish("redrive-me", &["rd-a", "rd-b"]).await?;
    let dlq = stack.js.get_stream("HERALD_DLQ").await?;
    eventually(Duration::from_secs(20), || async { Ok(dlq.clone().info().await?.state.messages == 1) }).await?;
    assert_eq!(stored_copies(&stack, "redrive-me").await?, 0, "nothing stored");
    assert_eq!(stack.stream_count("rd-b").await?, 1, "but published");

    // The fix, past the window; then the re-drive.
    broken.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let done = redrive(&stack.js, &Filter { source: Some("test".into()), original_seq: None }).await?;
    assert_eq!(done.len(), 1);
    eventually(Duration::from_secs(20), || async { Ok(stored_copies(&stack, "redrive-me").await? == 2) }).await?;
    for user in ["rd-a", "rd-b"] {
        assert_eq!(stack.stream_count(user).await?, 1, "{user}: one copy in HERALD_USER");
    }
    let got = notification_ids(&drain_events(&mut u, Duration::from_secs(1)).await);
    assert_eq!(got, ["redrive-me"], "pushed once");
    Ok(())
}

#[tokio::test]
async fn a_single_user_notification_passes_a_10000_member_team() -> anyhow::Result<()> {
    const MEMBERS: usize = 10_000;
    let mut stack = Stack::start(StackOptions { start_runner: false, ..Default::default() }).await?;
    // The team's expansion waits until both later requests have asked about their user, so
    // that they are handled while it is being expanded, whatever the timing.
    let answers = Arc::new(std::sync::Mutex::new(Vec::new()));
    let recorded = answers.clone();
    stack
        .start_runner_with(move |inbox, outbox| {
            let inbox = AskedFirst { inner: inbox, asks: 2, answers: recorded, asked: Arc::default() };
            (inbox, outbox)
        })
        .await?;
    let members: Vec<String> = (0..MEMBERS).map(|i| format!("crowd-{i:05}")).collect();
    stack.inbox().add_members("crowd", &members).await?;
    let mut solo = stack.connect("solo", None).await?;
    let mut member = stack.connect("crowd-04321", None).await?;

    let started = Instant::now();
    let mut team = request("crowd-news", &[]);
    team.recipients.teams = vec!["crowd".into()];
    stack.publisher.publish("test", &team).await?;
    // Accepted while the team is being expanded: solo is asked about and passes; the member
    // waits for the team's copy.
    let sent = Instant::now();
    stack.publisher.publish("test", &request("just-you", &["solo"])).await?;
    stack.publisher.publish("test", &request("yours-too", &["crowd-04321"])).await?;
    let first = next_event(&mut solo).await?;
    let solo_latency = sent.elapsed();
    assert!(matches!(&first, Event::Notification { notification, .. } if notification.id == "just-you"), "{first:?}");
    // The member's copy of the team comes after the expansion and thousands of other copies.
    let mut got = Vec::new();
    while got.len() < 2 {
        let e = tokio::time::timeout(Duration::from_secs(60), member.next()).await??;
        if matches!(e, Event::Notification { .. }) {
            got.push(e);
        }
    }
    assert_eq!(notification_ids(&got), ["crowd-news", "yours-too"], "the member's copies in acceptance order");
    let mut asked = answers.lock().unwrap().clone();
    asked.sort();
    let want = [("crowd", "crowd-04321", true), ("crowd", "solo", false)];
    let want: Vec<(String, String, bool)> = want.iter().map(|(t, u, m)| (t.to_string(), u.to_string(), *m)).collect();
    assert_eq!(asked, want, "each later request asked the store about its user");
    // And behind a team that is being published: one copy of the team is in the stream.
    eventually(Duration::from_secs(30), || async { Ok(stack.stream_count("crowd-00000").await? == 1) }).await?;
    let sent_again = Instant::now();
    stack.publisher.publish("test", &request("again-you", &["solo"])).await?;
    let second = next_event(&mut solo).await?;
    let again_latency = sent_again.elapsed();
    assert!(
        matches!(&second, Event::Notification { notification, .. } if notification.id == "again-you"),
        "{second:?}"
    );
    eventually(Duration::from_secs(120), || async { Ok(stored_copies(&stack, "crowd-news").await? == MEMBERS) })
        .await?;
    let team_total = started.elapsed();
    eprintln!("single user pushed in {solo_latency:?} and {again_latency:?}; the team stored in {team_total:?}");
    assert!(solo_latency * 4 < team_total, "{solo_latency:?} is not well under the team's {team_total:?}");
    assert!(again_latency * 4 < team_total, "{again_latency:?} is not well under the team's {team_total:?}");
    Ok(())
}

/// A notification of a kind the user muted has a cursor in HERALD_USER and in the inbox, and is
/// neither pushed nor replayed.
#[tokio::test]
async fn a_muted_copy_has_a_cursor_and_is_not_pushed() -> anyhow::Result<()> {
    let stack = Stack::start(StackOptions::default()).await?;
    stack.inbox().set_muted_kinds("hush", &["promo".to_owned()]).await?;
    let mut c = stack.connect("hush", None).await?;
    let mut promo: NotificationRequest = request("promo-9", &["hush"]);
    promo.kind = "promo".into();
    stack.publisher.publish("test", &promo).await?;
    stack.publish("after-9", &["hush"]).await?;
    assert_eq!(notification_ids(&drain_events(&mut c, Duration::from_millis(1500)).await), ["after-9"]);
    eventually(Duration::from_secs(10), || async { Ok(stack.stored("hush", "promo-9").await? == 1) }).await?;
    let item = stack
        .dynamo
        .get_item()
        .table_name("herald_notifications")
        .key("user", aws_sdk_dynamodb::types::AttributeValue::S("hush".into()))
        .key("nid", aws_sdk_dynamodb::types::AttributeValue::S("promo-9".into()))
        .consistent_read(true)
        .send()
        .await?
        .item
        .expect("stored");
    assert!(item.get("cursor").and_then(|v| v.as_n().ok()).is_some(), "a cursor: {item:?}");
    assert_eq!(item.get("read").and_then(|v| v.as_bool().ok()), Some(&true));
    assert_eq!(stack.stream_count("hush").await?, 2, "the muted copy is in HERALD_USER too");
    // Replay from the start skips it as well.
    let mut again = stack.connect("hush", Some("0")).await?;
    assert_eq!(notification_ids(&drain_events(&mut again, Duration::from_millis(1500)).await), ["after-9"]);
    Ok(())
}
