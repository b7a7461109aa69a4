//! Failures: a DynamoDB outage rides out, a request that keeps failing ends on the dead-letter
//! stream and is re-driven after the fix, advisories of requests given up elsewhere become dead
//! letters, the real runner binary killed -9 mid fan-out stores and pushes once, and two
//! runners share the work without duplicates.

use std::time::Duration;

use async_nats::jetstream::stream::LastRawMessageErrorKind;
use herald_client::{Event, NotificationRequest};
use herald_core::config::Vars;
use herald_core::notification::{HDR_DELIVERIES, HDR_REASON, HDR_REASON_CODE, HDR_SOURCE};
use herald_tests::procs::{Proc, bin_path, eventually, metric, runner, stored_copies, user_stream_subjects};
use herald_tests::stack::notification_ids;
use herald_tests::stack::{drain_events, request};
use herald_tests::{Stack, StackOptions};

fn team_request(id: &str, team: &str) -> NotificationRequest {
    let mut r = request(id, &[]);
    r.recipients.teams = vec![team.into()];
    r
}

fn no_runner() -> StackOptions {
    StackOptions { start_runner: false, ..Default::default() }
}

/// The dead letter of `source` with the highest sequence, if any.
async fn last_dead_letter(
    stack: &Stack,
    source: &str,
) -> anyhow::Result<Option<async_nats::jetstream::message::StreamMessage>> {
    let dlq = stack.js.get_stream("HERALD_DLQ").await?;
    match dlq.get_last_raw_message_by_subject(&format!("herald.dlq.{source}")).await {
        Ok(m) => Ok(Some(m)),
        Err(e) if matches!(e.kind(), LastRawMessageErrorKind::NoMessageFound) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn header(m: &async_nats::jetstream::message::StreamMessage, name: &str) -> String {
    m.headers.get(name).map(|v| v.as_str().to_owned()).unwrap_or_default()
}

#[tokio::test]
async fn a_dynamodb_outage_of_10_s_loses_and_duplicates_nothing() -> anyhow::Result<()> {
    let mut stack = Stack::start(StackOptions::default()).await?;
    let mut u = stack.connect("patient", None).await?;
    for i in 0..3 {
        stack.publish(&format!("before-{i}"), &["patient"]).await?;
    }
    assert_eq!(notification_ids(&drain_events(&mut u, Duration::from_millis(1000)).await).len(), 3);
    stack.dynalite.stop();
    for i in 0..5 {
        stack.publish(&format!("during-{i}"), &["patient"]).await?;
    }
    tokio::time::sleep(Duration::from_secs(10)).await;
    stack.dynalite.resume()?;
    let mut got = Vec::new();
    while got.len() < 5 {
        let more = notification_ids(&drain_events(&mut u, Duration::from_secs(20)).await);
        if more.is_empty() {
            break;
        }
        got.extend(more);
    }
    got.extend(notification_ids(&drain_events(&mut u, Duration::from_millis(500)).await));
    got.sort();
    let want: Vec<String> = (0..5).map(|i| format!("during-{i}")).collect();
    assert_eq!(got, want, "each once, after the outage");
    for id in &want {
        assert_eq!(stack.stored("patient", id).await?, 1);
    }
    assert_eq!(stack.stream_count("patient").await?, 8);
    Ok(())
}

#[tokio::test]
async fn a_request_that_keeps_failing_is_dead_lettered_then_redriven() -> anyhow::Result<()> {
    let stack = Stack::start(no_runner()).await?;
    let vars = stack.vars().with("HERALD_MAX_DELIVER", "3");
    let (_runner, _) = runner(&vars).await?;
    let members = stack.inbox();
    members.add_member("ops", "on-call").await?;
    let mut on_call = stack.connect("on-call", None).await?;

    // The membership table disappears (a bad migration): every delivery fails transiently.
    stack.dynamo.delete_table().table_name("herald_team_members").send().await?;
    let request = team_request("page-1", "ops");
    let body = serde_json::to_vec(&request)?;
    stack.publisher.publish("alerts", &request).await?;

    eventually(Duration::from_secs(20), || async { Ok(last_dead_letter(&stack, "alerts").await?.is_some()) }).await?;
    let letter = last_dead_letter(&stack, "alerts").await?.expect("a dead letter");
    assert_eq!(letter.payload.as_ref(), body.as_slice(), "the original body");
    assert_eq!(header(&letter, HDR_REASON_CODE), "max_deliveries");
    assert_eq!(header(&letter, HDR_DELIVERIES), "3");
    assert_eq!(header(&letter, HDR_SOURCE), herald_core::subject::token("alerts"));
    let reason = header(&letter, HDR_REASON);
    assert!(reason.contains("dynamodb query members"), "{reason}");
    assert!(notification_ids(&drain_events(&mut on_call, Duration::from_millis(200)).await).is_empty());

    // The fix, then the re-drive command: the notification arrives, once, and the dead letter
    // is gone.
    members.ensure_tables().await?;
    members.add_member("ops", "on-call").await?;
    let out = tokio::process::Command::new(bin_path("herald-functions")?)
        .args(["redrive", "--source", "alerts"])
        .env_clear()
        .envs(vars.iter())
        .output()
        .await?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout} {}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("1 dead letters re-driven"), "{stdout}");
    let got = notification_ids(&drain_events(&mut on_call, Duration::from_secs(3)).await);
    assert_eq!(got, ["page-1"]);
    assert_eq!(stack.stored("on-call", "page-1").await?, 1);
    assert!(last_dead_letter(&stack, "alerts").await?.is_none());
    Ok(())
}

#[tokio::test]
async fn requests_given_up_without_a_dead_letter_get_one_from_their_advisories() -> anyhow::Result<()> {
    let stack = Stack::start(no_runner()).await?;
    let vars = stack.vars().with("HERALD_MAX_DELIVER", "1").with("HERALD_ACK_WAIT_SECONDS", "1");
    let config = herald_functions::Config::from_vars(&vars)?;
    let consumer = herald_functions::runner::ensure_consumer(&stack.js, &config).await?;
    let abandoned = stack.publish("abandoned", &["someone"]).await?;
    let poison = stack.publish("poison", &["someone"]).await?;

    // An operator takes both: terminates one with a reason, and leaves the other unanswered
    // on its last delivery, as a crashed handler would.
    use futures::StreamExt;
    let mut batch = consumer.fetch().max_messages(2).messages().await?;
    let mut taken = Vec::new();
    while let Some(m) = batch.next().await {
        taken.push(m.map_err(|e| anyhow::anyhow!(e))?);
    }
    assert_eq!(taken.len(), 2);
    let poisoned = taken
        .iter()
        .find(|m| m.info().map(|i| i.stream_sequence).ok() == Some(poison.sequence))
        .expect("the poison message");
    herald_functions::runner::term(poisoned, "operator: poison pill").await.map_err(|e| anyhow::anyhow!(e))?;
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let (_runner, _) = runner(&vars).await?;
    let mut letters = Vec::new();
    eventually(Duration::from_secs(15), || async {
        let mut dlq = stack.js.get_stream("HERALD_DLQ").await?;
        Ok(dlq.info().await?.state.messages >= 2)
    })
    .await?;
    let dlq = stack.js.get_stream("HERALD_DLQ").await?;
    for seq in 1..=2 {
        letters.push(dlq.get_raw_message(seq).await?);
    }
    letters.sort_by_key(|m| header(m, "Herald-Original-Seq").parse::<u64>().unwrap_or(0));
    let (a, p) = (&letters[0], &letters[1]);
    assert_eq!(header(a, "Herald-Original-Seq"), abandoned.sequence.to_string());
    assert_eq!(header(a, HDR_REASON_CODE), "max_deliveries");
    assert!(header(a, HDR_REASON).contains("not answered"));
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&a.payload)?["id"], "abandoned", "the original body");
    assert_eq!(header(p, HDR_REASON_CODE), "terminated");
    assert!(header(p, HDR_REASON).contains("operator: poison pill"));
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&p.payload)?["id"], "poison");
    // Invalid requests dead-lettered by the function itself are terminated too, but are not
    // dead-lettered a second time from their advisory.
    stack.publisher.publish_raw("test", "broken", "{oops".into()).await?;
    eventually(Duration::from_secs(10), || async { Ok(dlq.clone().info().await?.state.messages >= 3) }).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(dlq.clone().info().await?.state.messages, 3, "one dead letter each");
    Ok(())
}

#[tokio::test]
async fn the_runner_binary_killed_9_mid_fan_out_stores_and_pushes_once() -> anyhow::Result<()> {
    const MEMBERS: usize = 2000;
    let stack = Stack::start(no_runner()).await?;
    let vars = stack.vars().with("HERALD_ACK_WAIT_SECONDS", "2");
    let members: Vec<String> = (0..MEMBERS).map(|i| format!("crew-{i:04}")).collect();
    let team = stack.inbox();
    team.ensure_tables().await?;
    team.add_members("crew", &members).await?;
    let watched = ["crew-0000", "crew-0500", "crew-1000", "crew-1999"];
    let mut conns = Vec::new();
    for u in watched {
        conns.push(stack.connect(u, None).await?);
    }

    // The first runner publishes the whole team, then stores one chunk at a time, so its writes
    // take a while whatever the machine's speed; a faster one sometimes finished all 2,000
    // between the check below and the kill (so this covers a kill mid-store; a kill between
    // publish and ack is idempotency.rs's). The second runner sends every copy again inside the
    // duplicate window, NATS answers with the first cursors, and it stores the rest.
    let slow = vars.clone().with("HERALD_FANOUT_CONCURRENCY", "1").with("HERALD_STORE_LANES", "1");
    let mut first = Proc::runner(&slow).await?;
    stack.publisher.publish("test", &team_request("muster", "crew")).await?;
    // The writes have begun: the first chunk is in DynamoDB, the rest is not. The store is frozen
    // at once, so the runner can read and write nothing more before it is killed.
    eventually(Duration::from_secs(20), || async { Ok(stack.stored("crew-0000", "muster").await? == 1) }).await?;
    stack.dynalite.pause()?;
    first.kill9();
    stack.dynalite.unpause()?;
    let stored_at_kill = stored_copies(&stack, "muster").await?;
    assert!(stored_at_kill < MEMBERS, "killed mid fan-out ({stored_at_kill} stored)");

    let _second = Proc::runner(&vars).await?;
    for (u, c) in watched.iter().zip(conns.iter_mut()) {
        let first = tokio::time::timeout(Duration::from_secs(60), c.next()).await;
        assert!(
            matches!(&first, Ok(Ok(Event::Notification { notification, .. })) if notification.id == "muster"),
            "{u}: {first:?}"
        );
        assert!(notification_ids(&drain_events(c, Duration::from_millis(300)).await).is_empty(), "{u} pushed once");
    }
    eventually(Duration::from_secs(30), || async { Ok(user_stream_subjects(&stack).await?.0 == MEMBERS) }).await?;
    assert_eq!(user_stream_subjects(&stack).await?, (MEMBERS, 1), "published once each");
    // Copies are published first and stored after: the last writes may still be under way.
    eventually(Duration::from_secs(30), || async { Ok(stored_copies(&stack, "muster").await? >= MEMBERS) }).await?;
    assert_eq!(stored_copies(&stack, "muster").await?, MEMBERS, "stored once each");
    Ok(())
}

#[tokio::test]
async fn two_runners_share_the_consumer_without_duplicates() -> anyhow::Result<()> {
    const USERS: usize = 10;
    const EACH: usize = 20;
    let stack = Stack::start(no_runner()).await?;
    let vars: Vars = stack.vars().with("HERALD_FUNCTIONS_CONCURRENCY", "8");
    let (_a, ops_a) = runner(&vars).await?;
    let (_b, ops_b) = runner(&vars).await?;
    let users: Vec<String> = (0..USERS).map(|i| format!("pair-{i}")).collect();
    let mut conns = Vec::new();
    for u in &users {
        conns.push(stack.connect(u, None).await?);
    }
    let mut publishes = Vec::new();
    for k in 0..EACH {
        for u in &users {
            let p = stack.publisher.clone();
            let r = request(&format!("{u}-{k}"), &[u]);
            publishes.push(tokio::spawn(async move { p.publish("test", &r).await }));
        }
    }
    for p in publishes {
        p.await??;
    }
    for (u, c) in users.iter().zip(conns.iter_mut()) {
        let mut got = Vec::new();
        while got.len() < EACH {
            let more = notification_ids(&drain_events(c, Duration::from_secs(5)).await);
            if more.is_empty() {
                break;
            }
            got.extend(more);
        }
        got.extend(notification_ids(&drain_events(c, Duration::from_millis(300)).await));
        let mut want: Vec<String> = (0..EACH).map(|k| format!("{u}-{k}")).collect();
        got.sort();
        want.sort();
        assert_eq!(got, want, "{u}: each once");
        assert_eq!(stack.stream_count(u).await?, EACH as u64);
    }
    let (a, b) = (
        metric(&ops_a, "herald_functions_messages_total").await?,
        metric(&ops_b, "herald_functions_messages_total").await?,
    );
    eprintln!("runner a handled {a}, runner b {b}");
    assert!(a + b >= (USERS * EACH) as u64);
    Ok(())
}
