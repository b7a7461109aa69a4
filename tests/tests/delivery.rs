//! The whole path, publish → deliver → HERALD_USER → gateway → socket, on real servers.

use std::time::Duration;

use herald_client::Event;
use herald_tests::stack::{drain_events, next_event, notification_ids};
use herald_tests::{Stack, StackOptions};

fn notifications(events: &[Event]) -> Vec<(String, bool, String)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Notification { cursor, replay, notification } => {
                Some((cursor.clone(), *replay, notification.id.clone()))
            }
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn a_published_notification_reaches_the_connected_user_live() -> anyhow::Result<()> {
    let stack = Stack::start(StackOptions::default()).await?;
    let mut alice = stack.connect("alice", None).await?;
    stack.publish("n-1", &["alice"]).await?;
    match next_event(&mut alice).await? {
        Event::Notification { replay, notification, cursor } => {
            assert!(!replay);
            assert_eq!(notification.id, "n-1");
            assert_eq!(notification.title, "title of n-1");
            assert!(!notification.read);
            assert!(!cursor.is_empty());
        }
        other => panic!("expected a notification, got {other:?}"),
    }
    // Pushed first, then stored: the write may follow the push by a moment.
    herald_tests::procs::eventually(Duration::from_secs(10), || async { Ok(stack.stored("alice", "n-1").await? == 1) })
        .await?;
    Ok(())
}

#[tokio::test]
async fn missed_notifications_replay_in_order_exactly_once_then_live() -> anyhow::Result<()> {
    let stack = Stack::start(StackOptions::default()).await?;
    let mut bob = stack.connect("bob", None).await?;
    stack.publish("first", &["bob"]).await?;
    let Event::Notification { cursor, .. } = next_event(&mut bob).await? else { panic!("no first") };
    bob.close().await;

    // 50 while away, each also for someone else so the stream interleaves users.
    for i in 0..50 {
        stack.publish(&format!("away-{i:02}"), &["bob", "carol"]).await?;
    }
    // Wait until all 50 are stored for bob, as a client would simply come back later.
    for _ in 0..200 {
        if stack.stream_count("bob").await? == 51 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(stack.stream_count("bob").await?, 51);

    let mut bob = stack.connect("bob", Some(&cursor)).await?;
    let mut events = Vec::new();
    loop {
        let e = next_event(&mut bob).await?;
        let done = matches!(e, Event::Replayed { .. });
        events.push(e);
        if done {
            break;
        }
    }
    let replayed = notifications(&events);
    let ids: Vec<&str> = replayed.iter().map(|(_, _, id)| id.as_str()).collect();
    let expected: Vec<String> = (0..50).map(|i| format!("away-{i:02}")).collect();
    assert_eq!(ids, expected.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(replayed.iter().all(|(_, replay, _)| *replay), "all marked replay");
    let cursors: Vec<u128> = replayed.iter().map(|(c, _, _)| c.parse().unwrap()).collect();
    assert!(cursors.windows(2).all(|w| w[0] < w[1]), "cursors grow");
    match events.last() {
        Some(Event::Replayed { count, cursor }) => {
            assert_eq!(*count, 50);
            assert_eq!(cursor.as_deref(), Some(replayed.last().unwrap().0.as_str()));
        }
        other => panic!("expected replayed, got {other:?}"),
    }

    stack.publish("after", &["bob"]).await?;
    match next_event(&mut bob).await? {
        Event::Notification { replay: false, notification, .. } => assert_eq!(notification.id, "after"),
        other => panic!("expected the live one, got {other:?}"),
    }
    assert!(drain_events(&mut bob, Duration::from_millis(300)).await.is_empty(), "nothing twice");
    Ok(())
}

#[tokio::test]
async fn reconnecting_at_the_newest_cursor_replays_nothing() -> anyhow::Result<()> {
    let stack = Stack::start(StackOptions::default()).await?;
    let mut dana = stack.connect("dana", None).await?;
    for i in 0..3 {
        stack.publish(&format!("d-{i}"), &["dana"]).await?;
    }
    let mut cursor = String::new();
    for _ in 0..3 {
        if let Event::Notification { cursor: c, .. } = next_event(&mut dana).await? {
            cursor = c;
        }
    }
    dana.close().await;
    let mut dana = stack.connect("dana", Some(&cursor)).await?;
    assert_eq!(next_event(&mut dana).await?, Event::Replayed { cursor: Some(cursor), count: 0 });
    Ok(())
}

#[tokio::test]
async fn a_cursor_the_stream_no_longer_keeps_gets_reset_then_live() -> anyhow::Result<()> {
    let stack = Stack::start(StackOptions { user_max_per_subject: 3, ..Default::default() }).await?;
    let mut erin = stack.connect("erin", None).await?;
    stack.publish("e-0", &["erin"]).await?;
    let Event::Notification { cursor, .. } = next_event(&mut erin).await? else { panic!() };
    erin.close().await;
    for i in 1..=5 {
        stack.publish(&format!("e-{i}"), &["erin"]).await?;
    }
    while stack.stream_count("erin").await? < 3 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut erin = stack.connect("erin", Some(&cursor)).await?;
    assert!(matches!(next_event(&mut erin).await?, Event::Reset { .. }));
    // What the stream still keeps follows the reset: only what is truly gone is lost.
    let mut kept = Vec::new();
    loop {
        match next_event(&mut erin).await? {
            Event::Notification { notification, replay: true, .. } => kept.push(notification.id),
            Event::Replayed { count, .. } => {
                assert_eq!(count, 3);
                break;
            }
            other => panic!("expected the kept notifications after reset, got {other:?}"),
        }
    }
    assert_eq!(kept, ["e-3", "e-4", "e-5"]);
    stack.publish("e-live", &["erin"]).await?;
    match next_event(&mut erin).await? {
        Event::Notification { notification, replay: false, .. } => assert_eq!(notification.id, "e-live"),
        other => panic!("expected live after reset, got {other:?}"),
    }
    // A cursor that was never this user's is unknown: reset too.
    let mut erin2 = stack.connect("erin", Some("999999")).await?;
    assert!(matches!(next_event(&mut erin2).await?, Event::Reset { .. }));
    let after: Vec<String> = notification_ids(&drain_events(&mut erin2, Duration::from_millis(500)).await);
    assert_eq!(after, ["e-4", "e-5", "e-live"]);
    Ok(())
}
