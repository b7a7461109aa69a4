//! The live path's promise on one node: a burst that overflows a session's mailbox, a gap
//! longer than the outbound queue, muted copies, cursors with the stream's epoch, the
//! retention check of cursor `0`, and a half-open live connection. Copies go straight into
//! `HERALD_USER` (as the functions store them) so each test controls what is stored and when.

use std::time::Duration;

use herald_tests::raw::{Frame, RawClient, store, store_all};
use herald_tests::stack::http_get;
use herald_tests::{Stack, StackOptions};

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn ids(prefix: &str, range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("{prefix}-{i}")).collect()
}

/// Reads until `want` notifications arrived or nothing came for `quiet`; every frame in order.
async fn collect(c: &mut RawClient, want: usize, quiet: Duration) -> anyhow::Result<Vec<Frame>> {
    let mut frames = Vec::new();
    let mut got = 0;
    while got < want {
        match c.next_within(quiet).await? {
            None => break,
            Some(f) => {
                got += usize::from(matches!(f, Frame::Notification { .. }));
                let closed = matches!(f, Frame::Closed(_));
                frames.push(f);
                if closed {
                    break;
                }
            }
        }
    }
    Ok(frames)
}

fn notified(frames: &[Frame]) -> Vec<String> {
    frames.iter().filter_map(|f| if let Frame::Notification { id, .. } = f { Some(id.clone()) } else { None }).collect()
}

/// A welcome cursor of `user` (where a first connection starts).
async fn start_cursor(stack: &Stack, user: &str) -> anyhow::Result<String> {
    let mut c = RawClient::connect(&stack.ws_url(0), &stack.token(user), None).await?;
    let Some(Frame::Welcome { cursor: Some(cursor) }) = c.next_within(Duration::from_secs(10)).await? else {
        anyhow::bail!("no welcome cursor")
    };
    c.close().await;
    Ok(cursor)
}

/// A client that does not read while a long replay is written to it, while `live` more are
/// stored: its mailbox overflows. Then it reads everything; `then` more are stored after.
async fn burst_during_a_stalled_replay(user: &str, live: usize, then: usize) -> anyhow::Result<()> {
    let stack = Stack::start(StackOptions {
        start_runner: false,
        user_max_per_subject: 10_000,
        env: env(&[("HERALD_REPLAY_BATCH", "2000")]),
        ..Default::default()
    })
    .await?;
    let start = start_cursor(&stack, user).await?;
    // 32 MB: more than the socket buffers hold, so the replay's write blocks.
    let body = "x".repeat(32 * 1024);
    let stored = ids("old", 0..1000);
    store_all(&stack.js, user, &stored, &body).await?;
    let mut c = RawClient::connect(&stack.ws_url(0), &stack.token(user), Some(&start)).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let burst = ids("live", 0..live);
    store_all(&stack.js, user, &burst, "small").await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut frames = collect(&mut c, stored.len() + burst.len(), Duration::from_secs(5)).await?;
    let after = ids("after", 0..then);
    store_all(&stack.js, user, &after, "small").await?;
    frames.extend(collect(&mut c, after.len(), Duration::from_secs(5)).await?);
    let expected: Vec<String> = stored.iter().chain(&burst).chain(&after).cloned().collect();
    let got = notified(&frames);
    assert!(!frames.iter().any(|f| matches!(f, Frame::Closed(_))), "closed: {:?}", frames.last());
    assert_eq!(got.len(), expected.len(), "{} missing or extra", expected.len() as i64 - got.len() as i64);
    assert_eq!(got, expected, "exactly once, in order");
    Ok(())
}

/// Hole 1: the newest live messages were dropped by a full mailbox, and nothing said so.
#[tokio::test]
async fn a_burst_that_overflows_the_mailbox_arrives_whole_with_nothing_after_it() -> anyhow::Result<()> {
    burst_during_a_stalled_replay("burst", 100, 0).await
}

/// Hole 4: a gap longer than the outbound queue closed a healthy client with 4029.
#[tokio::test]
async fn a_gap_longer_than_the_outbound_queue_is_filled_without_closing_the_client() -> anyhow::Result<()> {
    burst_during_a_stalled_replay("gap", 600, 1).await
}

#[tokio::test]
async fn muted_copies_are_never_pushed_or_replayed_but_move_the_cursor() -> anyhow::Result<()> {
    let stack = Stack::start(StackOptions { start_runner: false, ..Default::default() }).await?;
    let mut c = RawClient::connect(&stack.ws_url(0), &stack.token("mia"), None).await?;
    assert!(matches!(c.next_within(Duration::from_secs(10)).await?, Some(Frame::Welcome { .. })));
    let a = store(&stack.js, "mia", "a", "", false).await?.await?.sequence;
    store(&stack.js, "mia", "b", "", true).await?.await?;
    store(&stack.js, "mia", "c", "", false).await?.await?;
    let live = collect(&mut c, 3, Duration::from_secs(2)).await?;
    assert_eq!(notified(&live), ["a", "c"]);
    let Some(Frame::Notification { cursor: ca, .. }) = live.iter().find(|f| matches!(f, Frame::Notification { .. }))
    else {
        unreachable!()
    };
    assert!(ca.ends_with(&format!("{a:020}")), "{ca} names sequence {a}");
    let d = store(&stack.js, "mia", "d", "", true).await?.await?.sequence;
    assert_eq!(notified(&collect(&mut c, 1, Duration::from_secs(1)).await?), Vec::<String>::new());
    c.close().await;
    // Replay from a: c only; `replayed` ends at d, which the client never saw but has passed.
    let mut r = RawClient::connect(&stack.ws_url(0), &stack.token("mia"), Some(ca)).await?;
    let frames = collect(&mut r, 10, Duration::from_secs(1)).await?;
    assert_eq!(notified(&frames), ["c"]);
    let replayed = frames
        .iter()
        .find_map(|f| if let Frame::Replayed { cursor, count } = f { Some((cursor.clone(), *count)) } else { None });
    let (cursor, count) = replayed.expect("replayed");
    assert_eq!(count, 1);
    assert!(cursor.expect("a cursor").ends_with(&format!("{d:020}")));
    Ok(())
}

#[tokio::test]
async fn cursors_carry_the_stream_epoch_and_a_recreated_stream_resets_its_sessions() -> anyhow::Result<()> {
    let stack = Stack::start(StackOptions { start_runner: false, ..Default::default() }).await?;
    let created = stack.js.get_stream(herald_core::subject::USER_STREAM).await?.info().await?.created;
    let epoch = created.unix_timestamp() as u64;
    let mut c = RawClient::connect(&stack.ws_url(0), &stack.token("eve"), None).await?;
    let Some(Frame::Welcome { cursor: Some(w) }) = c.next_within(Duration::from_secs(10)).await? else { panic!() };
    assert_eq!(w.parse::<herald_core::Cursor>()?, herald_core::Cursor::new(epoch, 0));
    store(&stack.js, "eve", "one", "", false).await?.await?;
    assert_eq!(notified(&collect(&mut c, 1, Duration::from_secs(2)).await?), ["one"]);
    // A cursor of another epoch names nothing here: reset, then everything kept.
    let other = herald_core::Cursor::new(epoch - 100, 1).to_string();
    let mut o = RawClient::connect(&stack.ws_url(0), &stack.token("eve"), Some(&other)).await?;
    let frames = collect(&mut o, 1, Duration::from_secs(2)).await?;
    assert!(frames.contains(&Frame::Reset), "{frames:?}");
    assert_eq!(notified(&frames), ["one"]);
    o.close().await;
    // Recreate the stream (a later second: a new epoch): the open session resets to it.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    stack.js.delete_stream(herald_core::subject::USER_STREAM).await?;
    herald_functions::streams::ensure(&stack.js, &stack.streams_config()).await?;
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !seen.contains(&Frame::Reset) && tokio::time::Instant::now() < deadline {
        if let Some(f) = c.next_within(Duration::from_secs(1)).await? {
            seen.push(f);
        }
    }
    assert!(seen.contains(&Frame::Reset), "{seen:?}");
    store(&stack.js, "eve", "two", "", false).await?.await?;
    let frames = collect(&mut c, 1, Duration::from_secs(3)).await?;
    let Some(Frame::Notification { cursor, id, .. }) = frames.iter().find(|f| matches!(f, Frame::Notification { .. }))
    else {
        panic!("{frames:?}")
    };
    assert_eq!(id, "two");
    let cursor: herald_core::Cursor = cursor.parse()?;
    assert!(cursor.epoch > Some(epoch) && cursor.seq == 1, "{cursor:?}");
    Ok(())
}

#[tokio::test]
async fn cursor_zero_gets_the_retention_check() -> anyhow::Result<()> {
    let stack =
        Stack::start(StackOptions { start_runner: false, user_max_per_subject: 3, ..Default::default() }).await?;
    store_all(&stack.js, "few", &ids("f", 0..2), "").await?;
    let mut c = RawClient::connect(&stack.ws_url(0), &stack.token("few"), Some("0")).await?;
    let frames = collect(&mut c, 2, Duration::from_secs(2)).await?;
    assert!(!frames.contains(&Frame::Reset));
    assert_eq!(notified(&frames), ["f-0", "f-1"]);
    store_all(&stack.js, "many", &ids("m", 0..5), "").await?;
    let mut c = RawClient::connect(&stack.ws_url(0), &stack.token("many"), Some("0")).await?;
    let frames = collect(&mut c, 3, Duration::from_secs(2)).await?;
    assert!(frames.contains(&Frame::Reset), "the first two are gone: {frames:?}");
    assert_eq!(notified(&frames), ["m-2", "m-3", "m-4"]);
    Ok(())
}

#[tokio::test]
async fn readyz_reflects_the_live_connection() -> anyhow::Result<()> {
    let stack = Stack::start(StackOptions {
        start_runner: false,
        env: env(&[("HERALD_LIVE_PING_SECONDS", "0.2"), ("HERALD_LIVE_PING_DEADLINE_SECONDS", "1")]),
        ..Default::default()
    })
    .await?;
    let readyz = format!("http://{}/readyz", stack.gateway_addr(0));
    assert_eq!(http_get(&readyz).await?.0, 200);
    // Frozen, not gone: the live connection stays open and silent.
    stack.nats.pause()?;
    let mut red = false;
    for _ in 0..50 {
        if http_get(&readyz).await.map(|(s, _)| s).unwrap_or(0) == 503 {
            red = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(red, "/readyz stayed green without NATS");
    stack.nats.unpause()?;
    let mut green = false;
    for _ in 0..100 {
        if http_get(&readyz).await.map(|(s, _)| s).unwrap_or(0) == 200 {
            green = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(green, "/readyz did not recover");
    // And live delivery works again on the new connection.
    let mut c = RawClient::connect(&stack.ws_url(0), &stack.token("rdy"), None).await?;
    assert!(matches!(c.next_within(Duration::from_secs(10)).await?, Some(Frame::Welcome { .. })));
    store(&stack.js, "rdy", "back", "", false).await?.await?;
    assert_eq!(notified(&collect(&mut c, 1, Duration::from_secs(5)).await?), ["back"]);
    Ok(())
}

#[tokio::test]
async fn a_replay_batch_is_bounded_in_bytes_and_still_replays_everything_in_order() -> anyhow::Result<()> {
    let stack = Stack::start(StackOptions {
        start_runner: false,
        env: env(&[("HERALD_REPLAY_BATCH_BYTES", "16384")]),
        ..Default::default()
    })
    .await?;
    let start = start_cursor(&stack, "big").await?;
    let body = "x".repeat(3000);
    let want = ids("b", 0..60);
    let seqs = store_all(&stack.js, "big", &want, &body).await?;
    // What the gateway asks the stream for: about 16 KiB of 3 KB notifications, not 256 of them.
    let log = herald_gateway::log::UserLog::new(stack.client.clone(), Duration::from_secs(5));
    let subject = herald_core::subject::user_subject("big");
    let batch = log.batch(&subject, seqs[0], 256, 16384).await?;
    assert!((1..=6).contains(&batch.len()), "{} entries in a 16 KiB batch", batch.len());
    // The whole replay still arrives, in order, once.
    let mut c = RawClient::connect(&stack.ws_url(0), &stack.token("big"), Some(&start)).await?;
    let frames = collect(&mut c, want.len(), Duration::from_secs(5)).await?;
    assert_eq!(notified(&frames), want);
    Ok(())
}

/// The store is not on the delivery path: with it frozen (requests accepted, never answered),
/// a device still gets `welcome`, its replay and live notifications, without `unread` and with
/// the read state as stored, each store read given up after `HERALD_REPLAY_TIMEOUT_SECONDS`.
#[tokio::test]
async fn a_frozen_store_delays_a_session_by_its_timeout_and_stops_nothing() -> anyhow::Result<()> {
    let stack = Stack::start(StackOptions {
        start_runner: false,
        env: vec![("HERALD_REPLAY_TIMEOUT_SECONDS".into(), "1".into())],
        ..Default::default()
    })
    .await?;
    let url = stack.ws_url(0);
    let token = stack.token("frozen");
    let mut first = RawClient::connect(&url, &token, None).await?;
    let Some(Frame::Welcome { cursor: Some(start) }) = first.next_within(Duration::from_secs(10)).await? else {
        anyhow::bail!("no welcome");
    };
    first.close().await;
    let ids: Vec<String> = (0..3).map(|i| format!("f-{i}")).collect();
    store_all(&stack.js, "frozen", &ids, "b").await?;

    stack.dynalite.pause()?;
    let started = std::time::Instant::now();
    let mut c = RawClient::connect(&url, &token, Some(&start)).await?;
    let mut got = Vec::new();
    while let Some(f) = c.next_within(Duration::from_secs(10)).await? {
        match f {
            Frame::Notification { id, .. } => got.push(id),
            Frame::Replayed { .. } => break,
            Frame::Closed(code) => anyhow::bail!("closed with {code:?}"),
            _ => {}
        }
    }
    assert_eq!(got, ids, "the replay goes on without the store");
    store(&stack.js, "frozen", "live", "b", false).await?.await?;
    let mut live = None;
    while let Some(f) = c.next_within(Duration::from_secs(10)).await? {
        if let Frame::Notification { id, .. } = f {
            live = Some(id);
            break;
        }
    }
    assert_eq!(live.as_deref(), Some("live"), "live delivery goes on without the store");
    // Three store reads given up (unread after welcome, the replay's read state, unread after
    // replayed), each after about a second.
    assert!(started.elapsed() < Duration::from_secs(8), "{:?}", started.elapsed());
    stack.dynalite.unpause()?;
    Ok(())
}
