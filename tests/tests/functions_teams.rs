//! Who a notification reaches: teams expanded with overlaps counted once, a 10,000-member team
//! delivered to its connected members, and a muted kind stored but not pushed.

use std::time::{Duration, Instant};

use herald_client::{Connection, Event, NotificationRequest};
use herald_tests::procs::{eventually, stored_copies, user_stream_subjects};
use herald_tests::stack::notification_ids;
use herald_tests::stack::{drain_events, request};
use herald_tests::{Stack, StackOptions};

fn team_request(id: &str, users: &[&str], teams: &[&str], kind: &str) -> NotificationRequest {
    let mut r = request(id, users);
    r.recipients.teams = teams.iter().map(|t| t.to_string()).collect();
    r.kind = kind.into();
    r
}

#[tokio::test]
async fn a_user_reached_directly_and_through_two_teams_gets_one_notification() -> anyhow::Result<()> {
    let stack = Stack::start(StackOptions::default()).await?;
    let members = stack.inbox();
    for (team, user) in [("t-1", "a"), ("t-1", "b"), ("t-1", "c"), ("t-2", "c"), ("t-2", "d")] {
        members.add_member(team, user).await?;
    }
    // Membership is managed through the library: a removed member is not reached.
    members.add_member("t-2", "gone").await?;
    members.remove_member("t-2", "gone").await?;
    assert_eq!(members.list_members("t-2").await?, ["c", "d"]);

    let mut conns = Vec::new();
    for u in ["a", "c", "d", "gone"] {
        conns.push(stack.connect(u, None).await?);
    }
    stack.publisher.publish("test", &team_request("overlap", &["a"], &["t-1", "t-2"], "test")).await?;
    for (u, c) in ["a", "c", "d"].iter().zip(conns.iter_mut()) {
        let got = notification_ids(&drain_events(c, Duration::from_millis(1500)).await);
        assert_eq!(got, ["overlap"], "{u} gets it once");
    }
    assert!(notification_ids(&drain_events(&mut conns[3], Duration::from_millis(300)).await).is_empty());
    assert_eq!(stored_copies(&stack, "overlap").await?, 4, "a, b, c, d once each");
    for u in ["a", "b", "c", "d"] {
        assert_eq!(stack.stream_count(u).await?, 1, "{u}");
    }
    Ok(())
}

#[tokio::test]
async fn a_muted_kind_is_stored_but_not_pushed() -> anyhow::Result<()> {
    let stack = Stack::start(StackOptions::default()).await?;
    let prefs = stack.inbox();
    prefs.set_muted_kinds("quiet", &["promo".to_owned()]).await?;
    assert_eq!(prefs.muted_kinds("quiet").await?, ["promo"]);
    let mut quiet = stack.connect("quiet", None).await?;
    let mut loud = stack.connect("loud", None).await?;
    let p = &stack.publisher;
    p.publish("test", &team_request("promo-1", &["quiet", "loud"], &[], "promo")).await?;
    p.publish("test", &team_request("news-1", &["quiet", "loud"], &[], "news")).await?;
    assert_eq!(
        notification_ids(&drain_events(&mut quiet, Duration::from_millis(1500)).await),
        ["news-1"],
        "the muted kind is not pushed"
    );
    assert_eq!(notification_ids(&drain_events(&mut loud, Duration::from_millis(300)).await), ["promo-1", "news-1"]);
    // Stored all the same, and found in the inbox as muted.
    assert_eq!(stack.stored("quiet", "promo-1").await?, 1);
    let item = stack
        .dynamo
        .get_item()
        .table_name("herald_notifications")
        .key("user", aws_sdk_dynamodb::types::AttributeValue::S("quiet".into()))
        .key("nid", aws_sdk_dynamodb::types::AttributeValue::S("promo-1".into()))
        .send()
        .await?
        .item
        .expect("stored");
    assert_eq!(item.get("muted").and_then(|m| m.as_bool().ok()), Some(&true));
    // It has a cursor: the muted copy is in HERALD_USER too, marked so gateways skip it.
    assert!(item.contains_key("cursor"));
    assert_eq!(stack.stream_count("quiet").await?, 2);

    // Unmuting applies to what comes next.
    prefs.set_muted_kinds("quiet", &[]).await?;
    p.publish("test", &team_request("promo-2", &["quiet"], &[], "promo")).await?;
    assert_eq!(notification_ids(&drain_events(&mut quiet, Duration::from_millis(1500)).await), ["promo-2"]);
    Ok(())
}

#[tokio::test]
async fn a_10000_member_team_reaches_every_member() -> anyhow::Result<()> {
    const MEMBERS: usize = 10_000;
    const CONNECTED: usize = 300;
    let stack = Stack::start(StackOptions {
        // Every test client comes from 127.0.0.1: lift the per-IP connect limit.
        env: vec![
            ("HERALD_CONNECTS_PER_IP_PER_SEC".into(), "100000".into()),
            ("HERALD_CONNECT_BURST".into(), "100000".into()),
        ],
        ..Default::default()
    })
    .await?;
    let members: Vec<String> = (0..MEMBERS).map(|i| format!("member-{i:05}")).collect();
    stack.inbox().add_members("everyone", &members).await?;

    let mut conns: Vec<(String, Connection)> = Vec::new();
    for i in 0..CONNECTED {
        let u = &members[i * (MEMBERS / CONNECTED)];
        conns.push((u.clone(), stack.connect(u, None).await?));
    }
    let started = Instant::now();
    stack.publisher.publish("test", &team_request("all-hands", &[], &["everyone"], "test")).await?;
    let readers: Vec<_> = conns
        .into_iter()
        .map(|(u, mut c)| {
            tokio::spawn(async move {
                let first = tokio::time::timeout(Duration::from_secs(150), c.next()).await;
                let more = drain_events(&mut c, Duration::from_millis(300)).await;
                (u, first, more)
            })
        })
        .collect();
    for r in readers {
        let (u, first, more) = r.await?;
        match first {
            Ok(Ok(Event::Notification { notification, .. })) => {
                assert_eq!(notification.id, "all-hands", "{u}")
            }
            other => panic!("{u} got {other:?}"),
        }
        assert!(notification_ids(&more).is_empty(), "{u} got it twice");
    }
    let pushed = started.elapsed();
    eventually(Duration::from_secs(30), || async { Ok(user_stream_subjects(&stack).await?.0 == MEMBERS) }).await?;
    assert_eq!(user_stream_subjects(&stack).await?, (MEMBERS, 1), "one copy each");
    // Copies are published first and stored after: the last writes may still be under way.
    eventually(Duration::from_secs(30), || async { Ok(stored_copies(&stack, "all-hands").await? >= MEMBERS) }).await?;
    assert_eq!(stored_copies(&stack, "all-hands").await?, MEMBERS);
    eprintln!(
        "10,000-member team: pushed to {CONNECTED} connected members in {:.1} s, all stored and published in {:.1} s",
        pushed.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
