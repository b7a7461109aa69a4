//! One id, one notification per recipient: duplicate publishes, a duplicate window that has
//! passed, and a runner killed between the DynamoDB write and the ack.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use herald_client::Event;
use herald_core::Cursor;
use herald_functions::dynamo::DynamoInbox;
use herald_functions::nats::JetStreamOutbox;
use herald_functions::ports::{Acked, DeadLetter, Failure, Inbox, InsertReport, NewItem, Outbox, UserCopy};
use herald_tests::stack::notification_ids;
use herald_tests::stack::{drain_events, next_event};
use herald_tests::{Stack, StackOptions};
use tokio::sync::oneshot;

#[tokio::test]
async fn the_same_id_twice_seconds_apart_is_one_notification() -> anyhow::Result<()> {
    let stack = Stack::start(StackOptions::default()).await?;
    let mut u = stack.connect("dup-user", None).await?;
    let first = stack.publish("same-id", &["dup-user"]).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let second = stack.publish("same-id", &["dup-user"]).await?;
    assert!(!first.duplicate);
    assert!(second.duplicate, "the stream deduplicates inside its window");
    assert_eq!(second.sequence, first.sequence);
    let events = drain_events(&mut u, Duration::from_secs(1)).await;
    assert_eq!(notification_ids(&events), ["same-id"]);
    assert_eq!(stack.stored("dup-user", "same-id").await?, 1);
    assert_eq!(stack.stream_count("dup-user").await?, 1);
    Ok(())
}

#[tokio::test]
async fn the_same_id_after_the_duplicate_window_is_still_one_notification() -> anyhow::Result<()> {
    let stack =
        Stack::start(StackOptions { in_duplicate_window: Duration::from_secs(1), ..Default::default() }).await?;
    let mut u = stack.connect("late-dup", None).await?;
    let first = stack.publish("late-id", &["late-dup"]).await?;
    assert_eq!(notification_ids(&drain_events(&mut u, Duration::from_millis(500)).await), ["late-id"]);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let second = stack.publish("late-id", &["late-dup"]).await?;
    assert!(!second.duplicate, "outside the window the stream takes it as new");
    assert!(second.sequence > first.sequence);
    // The runner handles it, finds the stored copy with its cursor, and publishes nothing.
    let events = drain_events(&mut u, Duration::from_secs(2)).await;
    assert!(notification_ids(&events).is_empty(), "pushed again: {events:?}");
    assert_eq!(stack.stored("late-dup", "late-id").await?, 1);
    assert_eq!(stack.stream_count("late-dup").await?, 1);
    Ok(())
}

/// Where the wrapped runner stops dead, as if killed with -9.
#[derive(Clone, Copy, PartialEq)]
enum CrashPoint {
    AfterStore,
    AfterPublish,
}

/// Passes everything through to the real stores, then hangs forever at the crash point and
/// tells the test, which kills the runner there.
struct Crash<T> {
    inner: T,
    point: CrashPoint,
    id: &'static str,
    hit: Arc<Mutex<Option<oneshot::Sender<()>>>>,
}

impl<T> Crash<T> {
    async fn maybe_crash(&self, point: CrashPoint, id: &str) {
        if point == self.point && id == self.id {
            if let Some(tx) = self.hit.lock().unwrap().take() {
                let _ = tx.send(());
            }
            std::future::pending::<()>().await;
        }
    }
}

impl Inbox for Crash<DynamoInbox> {
    async fn team_members(&self, team: &str) -> Result<Vec<String>, Failure> {
        Inbox::team_members(&self.inner, team).await
    }
    async fn in_team(&self, team: &str, user: &str) -> Result<bool, Failure> {
        Inbox::in_team(&self.inner, team, user).await
    }
    async fn muted_kinds(&self, users: &[&str]) -> Result<std::collections::HashMap<String, Vec<String>>, Failure> {
        Inbox::muted_kinds(&self.inner, users).await
    }
    async fn existing(&self, copies: &[(&str, &str)]) -> Result<std::collections::HashSet<(String, String)>, Failure> {
        Inbox::existing(&self.inner, copies).await
    }
    async fn insert(&self, items: &[NewItem<'_>]) -> Result<InsertReport, Failure> {
        let done = Inbox::insert(&self.inner, items).await?;
        // The runner batches copies of several requests into one call: any of them may crash it.
        for item in items {
            self.maybe_crash(CrashPoint::AfterStore, &item.notification.id).await;
        }
        Ok(done)
    }
    async fn unread_counts(
        &self,
        users: &[&str],
    ) -> Result<std::collections::HashMap<String, herald_functions::ports::Count>, Failure> {
        Inbox::unread_counts(&self.inner, users).await
    }
}

impl Outbox for Crash<JetStreamOutbox> {
    type Pending = futures::future::BoxFuture<'static, Result<Acked, Failure>>;
    async fn send_user(&self, copy: UserCopy<'_>) -> Result<Self::Pending, Failure> {
        let id = copy.id.to_owned();
        let pending = self.inner.send_user(copy).await?;
        // Wait for the stream to have it, so the crash is truly after the publish.
        let acked = pending.await?;
        self.maybe_crash(CrashPoint::AfterPublish, &id).await;
        Ok(Box::pin(futures::future::ready(Ok(acked))))
    }
    async fn find_user_copy(
        &self,
        user: &str,
        id: &str,
        since: time::OffsetDateTime,
    ) -> Result<Option<Cursor>, Failure> {
        self.inner.find_user_copy(user, id, since).await
    }
    fn duplicate_window(&self) -> Duration {
        self.inner.duplicate_window()
    }
    async fn dead_letter(&self, letter: DeadLetter<'_>) -> Result<(), Failure> {
        self.inner.dead_letter(letter).await
    }
    async fn announce_unread(&self, user: &str, count: herald_functions::ports::Count) -> Result<(), Failure> {
        self.inner.announce_unread(user, count).await
    }
}

async fn killed_runner_is_redelivered_once(point: CrashPoint) -> anyhow::Result<()> {
    let mut stack =
        Stack::start(StackOptions { start_runner: false, ack_wait: Duration::from_secs(1), ..Default::default() })
            .await?;
    let (tx, rx) = oneshot::channel();
    let hit = Arc::new(Mutex::new(Some(tx)));
    let (h1, h2) = (hit.clone(), hit);
    stack
        .start_runner_with(move |inbox, outbox| {
            (
                Crash { inner: inbox, point, id: "crash-me", hit: h1 },
                Crash { inner: outbox, point, id: "crash-me", hit: h2 },
            )
        })
        .await?;
    let mut u = stack.connect("crash-user", None).await?;
    stack.publish("crash-me", &["crash-user", "bystander"]).await?;
    tokio::time::timeout(Duration::from_secs(10), rx).await??;
    stack.runner.take().expect("runner").kill().await;

    // A fresh runner gets the unacked message again after ack_wait.
    stack.start_runner().await?;
    let events = drain_events(&mut u, Duration::from_secs(3)).await;
    assert_eq!(notification_ids(&events), ["crash-me"], "pushed once");
    for user in ["crash-user", "bystander"] {
        assert_eq!(stack.stored(user, "crash-me").await?, 1);
        assert_eq!(stack.stream_count(user).await?, 1, "one copy in the stream for {user}");
    }
    Ok(())
}

#[tokio::test]
async fn a_runner_killed_after_the_dynamodb_write_stores_and_pushes_once() -> anyhow::Result<()> {
    killed_runner_is_redelivered_once(CrashPoint::AfterStore).await
}

#[tokio::test]
async fn a_runner_killed_after_the_publish_before_the_ack_stores_and_pushes_once() -> anyhow::Result<()> {
    killed_runner_is_redelivered_once(CrashPoint::AfterPublish).await
}

#[tokio::test]
async fn a_reconnect_after_a_redelivery_sees_each_notification_once() -> anyhow::Result<()> {
    let stack = Stack::start(StackOptions::default()).await?;
    let mut u = stack.connect("re", None).await?;
    stack.publish("r-1", &["re"]).await?;
    let Event::Notification { cursor, .. } = next_event(&mut u).await? else { panic!() };
    stack.publish("r-1", &["re"]).await?;
    stack.publish("r-2", &["re"]).await?;
    let live = drain_events(&mut u, Duration::from_millis(500)).await;
    assert_eq!(notification_ids(&live), ["r-2"]);
    u.close().await;
    let mut u = stack.connect("re", Some(&cursor)).await?;
    let again = drain_events(&mut u, Duration::from_millis(500)).await;
    assert_eq!(notification_ids(&again), ["r-2"]);
    Ok(())
}
