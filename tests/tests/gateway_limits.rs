//! Limits and slow clients on the real gateway: frame size, malformed frames, per-IP rates, the
//! connection cap, the hello deadline, pings, a client that stops reading, and NATS restarts.

use std::time::Duration;

use anyhow::Context;

use futures::{SinkExt, StreamExt};
use herald_client::{Connection, Event, NotificationRequest, Recipients};
use herald_tests::stack::{drain_events, next_event};
use herald_tests::{Stack, StackOptions};
use tokio_tungstenite::tungstenite::Message;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn closed_with(events: &[Event], code: u16) -> bool {
    events.iter().any(|e| matches!(e, Event::Closed { code: Some(c), .. } if *c == code))
}

async fn metric(stack: &Stack, name: &str) -> anyhow::Result<f64> {
    let body = stack.metrics(0).await?;
    Ok(body
        .lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum())
}

#[tokio::test]
async fn a_4_mib_frame_or_a_broken_one_is_refused_with_4008_and_the_gateway_still_serves() -> anyhow::Result<()> {
    let stack = Stack::start(StackOptions::default()).await?;
    // As a browser does: one task sends the 4 MiB frame while another keeps reading.
    let (ws, _) = tokio_tungstenite::connect_async(stack.ws_url(0)).await?;
    let (mut tx, mut rx) = ws.split();
    let hello = serde_json::json!({"type":"hello","token": stack.token("big")}).to_string();
    tx.send(Message::Text(hello.into())).await?;
    let sender = tokio::spawn(async move { tx.send(Message::Text("x".repeat(4 * 1024 * 1024).into())).await });
    let mut code = None;
    while let Ok(Some(Ok(m))) = tokio::time::timeout(Duration::from_secs(3), rx.next()).await {
        if let Message::Close(Some(f)) = m {
            code = Some(u16::from(f.code));
        }
    }
    assert_eq!(code, Some(4008));
    let _ = sender.await;

    for bad in ["{not json", r#"{"type":"subscribe"}"#, r#"{"type":"hello","token":"t"}"#] {
        let mut c = stack.connect("bad", None).await?;
        c.send_text(bad).await?;
        assert!(closed_with(&drain_events(&mut c, Duration::from_secs(2)).await, 4008), "{bad}");
    }
    // Below the JSON: a frame that breaks RFC 6455 (text that is not UTF-8, a frame a client did
    // not mask) gets the same 4008 and its reason, not a silent drop.
    for raw in [&[0x81, 0x82, 1, 2, 3, 4, 0xC3 ^ 1, 0x28 ^ 2][..], &[0x81, 0x02, b'h', b'i']] {
        let (mut ws, _) = tokio_tungstenite::connect_async(stack.ws_url(0)).await?;
        let tokio_tungstenite::MaybeTlsStream::Plain(tcp) = ws.get_mut() else { panic!("plain TCP") };
        tokio::io::AsyncWriteExt::write_all(tcp, raw).await?;
        let mut got = (None, None);
        while let Ok(Some(Ok(m))) = tokio::time::timeout(Duration::from_secs(3), ws.next()).await {
            match m {
                Message::Text(t) => got.0 = Some(t.to_string()),
                Message::Close(Some(f)) => got.1 = Some(u16::from(f.code)),
                _ => {}
            }
        }
        assert_eq!(got.1, Some(4008), "{raw:?}: {got:?}");
        assert!(got.0.is_some_and(|t| t.contains("protocol violation")), "{raw:?}");
    }
    let mut ok = stack.connect("fine", None).await?;
    stack.publish("served", &["fine"]).await?;
    assert!(matches!(next_event(&mut ok).await?, Event::Notification { .. }));
    Ok(())
}

#[tokio::test]
async fn per_ip_rates_and_the_connection_cap_refuse_with_429_4029_and_503() -> anyhow::Result<()> {
    let stack = Stack::start(StackOptions {
        env: env(&[
            ("HERALD_CONNECT_BURST", "4"),
            ("HERALD_CONNECTS_PER_IP_PER_SEC", "0.01"),
            ("HERALD_FRAME_BURST", "20"),
            ("HERALD_FRAMES_PER_IP_PER_SEC", "1"),
            ("HERALD_MAX_CONNECTIONS", "3"),
        ]),
        ..Default::default()
    })
    .await?;
    let mut a = stack.connect("r1", None).await?;
    let _b = stack.connect("r2", None).await?;
    let _c = stack.connect("r3", None).await?;
    let Err(full) = Connection::connect(&stack.ws_url(0), &stack.token("r4"), None).await else { panic!("cap") };
    assert!(full.to_string().contains("503"), "{full}");
    let Err(limited) = Connection::connect(&stack.ws_url(0), &stack.token("r5"), None).await else { panic!("rate") };
    assert!(limited.to_string().contains("429"), "{limited}");

    for _ in 0..40 {
        a.ack("1").await?;
    }
    assert!(closed_with(&drain_events(&mut a, Duration::from_secs(2)).await, 4029));
    assert!(metric(&stack, "herald_gateway_refused_total").await? >= 2.0);
    Ok(())
}

#[tokio::test]
async fn sockets_before_hello_count_toward_the_per_ip_cap_and_pings_toward_the_frame_limit() -> anyhow::Result<()> {
    let stack = Stack::start(StackOptions {
        env: env(&[
            ("HERALD_MAX_CONNECTIONS_PER_IP", "2"),
            ("HERALD_FRAME_BURST", "20"),
            ("HERALD_FRAMES_PER_IP_PER_SEC", "1"),
            ("HERALD_HELLO_TIMEOUT_SECONDS", "30"),
        ]),
        ..Default::default()
    })
    .await?;
    // Two sockets that never say hello hold this address's two places.
    let (idle, _) = tokio_tungstenite::connect_async(stack.ws_url(0)).await?;
    let (mut pinger, _) = tokio_tungstenite::connect_async(stack.ws_url(0)).await?;
    let Err(tokio_tungstenite::tungstenite::Error::Http(refused)) =
        tokio_tungstenite::connect_async(stack.ws_url(0)).await
    else {
        panic!("a third socket was not refused with an HTTP answer")
    };
    assert_eq!(refused.status(), 429);
    assert_eq!(refused.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned()).as_deref(), Some("5"));
    let body: serde_json::Value = serde_json::from_slice(refused.body().as_deref().unwrap_or_default())?;
    assert_eq!(body["error"]["code"], "rate_limited", "{body}");
    assert!(metric(&stack, "herald_gateway_refused_total").await? >= 1.0);
    // A place comes back when a socket closes.
    drop(idle);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut again = loop {
        if let Ok((s, _)) = tokio_tungstenite::connect_async(stack.ws_url(0)).await {
            break s;
        }
        anyhow::ensure!(std::time::Instant::now() < deadline, "the closed socket's place did not come back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let hello = serde_json::json!({"type":"hello","token": stack.token("pinged")}).to_string();
    again.send(Message::Text(hello.into())).await?;
    // Pings before hello are frames too: a flood of them is closed with 4029.
    for _ in 0..40 {
        pinger.send(Message::Ping(Default::default())).await?;
    }
    let mut code = None;
    while let Ok(Some(Ok(m))) = tokio::time::timeout(Duration::from_secs(3), pinger.next()).await {
        if let Message::Close(Some(f)) = m {
            code = Some(u16::from(f.code));
        }
    }
    assert_eq!(code, Some(4029));
    // And after hello: the address's budget is spent, so pings close this one too.
    for _ in 0..10 {
        again.send(Message::Ping(Default::default())).await?;
    }
    let mut code = None;
    while let Ok(Some(Ok(m))) = tokio::time::timeout(Duration::from_secs(3), again.next()).await {
        if let Message::Close(Some(f)) = m {
            code = Some(u16::from(f.code));
        }
    }
    assert_eq!(code, Some(4029));
    Ok(())
}

#[tokio::test]
async fn no_hello_in_time_is_4001_and_a_peer_that_never_answers_pings_is_closed() -> anyhow::Result<()> {
    let stack = Stack::start(StackOptions {
        env: env(&[("HERALD_HELLO_TIMEOUT_SECONDS", "0.5"), ("HERALD_PING_SECONDS", "0.4")]),
        ..Default::default()
    })
    .await?;
    let (mut silent, _) = tokio_tungstenite::connect_async(stack.ws_url(0)).await?;
    let mut saw_4001 = false;
    while let Ok(Some(Ok(m))) = tokio::time::timeout(Duration::from_secs(3), silent.next()).await {
        if let Message::Close(Some(f)) = m {
            saw_4001 = u16::from(f.code) == 4001;
        }
    }
    assert!(saw_4001);

    // This one authenticates, then never reads again, so it never answers a ping.
    let (mut mute, _) = tokio_tungstenite::connect_async(stack.ws_url(0)).await?;
    let hello = serde_json::json!({"type":"hello","token": stack.token("mute")}).to_string();
    mute.send(Message::Text(hello.into())).await?;
    // A reading client answers pings (tungstenite does it while reading) and stays.
    let mut alive = stack.connect("alive", None).await?;
    assert!(drain_events(&mut alive, Duration::from_secs(2)).await.is_empty(), "alive was not closed");
    assert!(metric(&stack, "herald_gateway_ping_timeouts_total").await? >= 1.0);
    stack.publish("still-alive", &["alive"]).await?;
    assert!(matches!(next_event(&mut alive).await?, Event::Notification { .. }));
    drop(mute);
    Ok(())
}

#[tokio::test]
async fn a_client_that_stops_reading_is_closed_4029_others_stay_fast_and_it_loses_nothing() -> anyhow::Result<()> {
    let stack = Stack::start(StackOptions {
        env: env(&[("HERALD_OUTBOUND_MAX_FRAMES", "16"), ("HERALD_WRITE_TIMEOUT_SECONDS", "2")]),
        ..Default::default()
    })
    .await?;
    let mut slow = stack.connect("slow", None).await?;
    let mut fast = stack.connect("fast", None).await?;
    stack.publish("slow-0", &["slow"]).await?;
    let Event::Notification { cursor, .. } = next_event(&mut slow).await? else { panic!() };

    // ~60 KB each, far more than the socket buffers hold: the slow client's queue must fill.
    let body = "y".repeat(60_000);
    let total = 250;
    let mut publishes = Vec::new();
    for i in 1..total {
        let req = NotificationRequest {
            id: format!("slow-{i}"),
            recipients: Recipients { users: vec!["slow".into()], teams: vec![] },
            kind: "bulk".into(),
            title: "big".into(),
            body: Some(body.clone()),
            data: None,
            created_at: None,
        };
        let p = stack.publisher.clone();
        publishes.push(tokio::spawn(async move { p.publish("test", &req).await }));
        if i % 25 == 0 {
            // The fast client keeps getting its own notifications promptly meanwhile. They are
            // stored straight into HERALD_USER (as the function would) so that the time is the
            // gateway's, not the runner's backlog of big notifications.
            let started = std::time::Instant::now();
            let payload = serde_json::json!({"id": format!("fast-{i}"), "kind": "k", "title": "t",
                "body": null, "data": null, "created_at": "2026-11-28T12:00:00Z", "read": false});
            stack.js.publish(herald_core::subject::user_subject("fast"), payload.to_string().into()).await?.await?;
            assert!(matches!(next_event(&mut fast).await?, Event::Notification { .. }));
            assert!(started.elapsed() < Duration::from_millis(1500), "fast client slowed: {:?}", started.elapsed());
        }
    }
    for p in publishes {
        p.await??;
    }
    let mut closed = false;
    for _ in 0..200 {
        if metric(&stack, "herald_gateway_slow_closes_total").await? >= 1.0 {
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(closed, "the slow client was not closed");
    // Its session and queue are gone (after at most a second of lingering for its close).
    let mut open = 0.0;
    for _ in 0..30 {
        open = metric(&stack, "herald_gateway_connections").await?;
        if open == 1.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(open, 1.0, "only the fast client is left");

    // It reads what reached it, sees 4029, reconnects from its last cursor, misses nothing.
    let mut seen = vec!["slow-0".to_owned()];
    let mut last = cursor;
    let mut code = None;
    loop {
        match next_event(&mut slow).await {
            Ok(Event::Notification { notification, cursor, .. }) => {
                seen.push(notification.id);
                last = cursor;
            }
            Ok(Event::Closed { code: c, .. }) => {
                code = c;
                break;
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    // The close frame is sent, but a client that stopped reading may find only the end of the
    // stream behind the data its buffers still hold; the gateway counted it as too slow above.
    assert!(matches!(code, Some(4029) | None), "{code:?}");
    // The runner may still be storing the last ones: they follow the replay live.
    let mut again = stack.connect("slow", Some(&last)).await?;
    while seen.len() < total {
        match next_event(&mut again).await? {
            Event::Notification { notification, .. } => seen.push(notification.id),
            Event::Replayed { .. } => {}
            other => panic!("{other:?}"),
        }
    }
    // What follows the last notification may be the `replayed` frame (it comes after the replay
    // however the replay and the live feed interleaved), but never a second copy of anything.
    let rest = drain_events(&mut again, Duration::from_millis(500)).await;
    let twice: Vec<&Event> = rest.iter().filter(|e| !matches!(e, Event::Replayed { .. })).collect();
    assert!(twice.is_empty(), "nothing twice: {twice:?}");
    let expected: Vec<String> = (0..total).map(|i| format!("slow-{i}")).collect();
    let mut sorted = seen.clone();
    sorted.sort_by_key(|s| s[5..].parse::<u32>().unwrap());
    assert_eq!(seen.len(), total, "each exactly once");
    assert_eq!(sorted, expected);
    Ok(())
}

#[tokio::test]
async fn notifications_stored_across_a_nats_restart_reach_the_client_exactly_once() -> anyhow::Result<()> {
    let mut stack = Stack::start(StackOptions::default()).await?;
    let mut c = stack.connect("through-restart", None).await?;
    stack.publish("before", &["through-restart"]).await?;
    assert!(matches!(next_event(&mut c).await?, Event::Notification { .. }));
    stack.nats.restart()?;
    for i in 0..20 {
        stack.publish(&format!("after-{i}"), &["through-restart"]).await?;
    }
    let mut ids = Vec::new();
    while ids.len() < 20 {
        match next_event(&mut c).await? {
            Event::Notification { notification, .. } => ids.push(notification.id),
            other => panic!("{other:?}"),
        }
    }
    let expected: Vec<String> = (0..20).map(|i| format!("after-{i}")).collect();
    assert_eq!(ids, expected);
    assert!(drain_events(&mut c, Duration::from_millis(500)).await.is_empty());
    Ok(())
}

#[tokio::test]
async fn a_user_whose_replays_read_too_much_is_closed_4029_and_resumes_later_losing_nothing() -> anyhow::Result<()> {
    use herald_tests::raw::{Frame, RawClient, store_all};
    // 40 notifications of ~8 KB, read back 10 at a time; a user may read ~100 KB at once and
    // then 200 KB/s.
    let stack = Stack::start(StackOptions {
        env: env(&[
            ("HERALD_REPLAY_BATCH", "10"),
            ("HERALD_REPLAY_BURST_BYTES_PER_USER", "100000"),
            ("HERALD_REPLAY_BYTES_PER_USER_PER_SEC", "200000"),
        ]),
        ..Default::default()
    })
    .await?;
    let url = stack.ws_url(0);
    let token = stack.token("hoarder");
    let start = |user: &'static str| {
        let (url, token) = (url.clone(), stack.token(user));
        async move {
            let mut c = RawClient::connect(&url, &token, None).await?;
            let Some(Frame::Welcome { cursor: Some(start) }) = c.next_within(Duration::from_secs(10)).await? else {
                anyhow::bail!("no welcome with a starting cursor");
            };
            c.close().await;
            anyhow::Ok(start)
        }
    };
    let mut cursor = start("hoarder").await?;
    let ids: Vec<String> = (0..40).map(|i| format!("big-{i}")).collect();
    store_all(&stack.js, "hoarder", &ids, &"z".repeat(8_000)).await?;

    // From the start, again and again: the first connection is cut short by the budget, each
    // reconnect resumes from the last cursor it got, and in the end every notification has come
    // exactly once, in order.
    let (mut got, mut limited) = (Vec::<String>::new(), 0);
    for _ in 0..50 {
        let mut c = RawClient::connect(&url, &token, Some(&cursor)).await?;
        loop {
            match c.next_within(Duration::from_secs(10)).await?.expect("a frame within 10 s") {
                Frame::Notification { cursor: k, id, .. } => {
                    got.push(id);
                    cursor = k;
                }
                Frame::Other(text) if text.contains("too_many_replays") => limited += 1,
                Frame::Closed(code) => {
                    assert_eq!(code, Some(4029), "a replay over budget closes with 4029");
                    break;
                }
                Frame::Replayed { .. } => break,
                _ => {}
            }
        }
        if got.len() == ids.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(got, ids, "every notification once, in order, across the limited reconnects");
    assert!(limited >= 1, "the budget (100 KB, 320 KB to read) never cut a replay short");
    assert!(metric(&stack, "herald_gateway_replays_limited_total").await? >= 1.0);

    // Reconnects at the tip read nothing back: never limited, even right after.
    for _ in 0..5 {
        let mut c = RawClient::connect(&url, &token, Some(&cursor)).await?;
        let mut frames = Vec::new();
        while let Some(f) = c.next_within(Duration::from_secs(5)).await? {
            let end = matches!(f, Frame::Replayed { .. } | Frame::Closed(_));
            frames.push(f);
            if end {
                break;
            }
        }
        assert!(matches!(frames.last(), Some(Frame::Replayed { count: 0, .. })), "{frames:?}");
        c.close().await;
    }
    // And another user's replay is not limited by this one's.
    let from = start("neighbour").await?;
    store_all(&stack.js, "neighbour", &ids[..5], "small").await?;
    let mut n = RawClient::connect(&url, &stack.token("neighbour"), Some(&from)).await?;
    let mut count = 0;
    while let Some(f) = n.next_within(Duration::from_secs(5)).await? {
        match f {
            Frame::Notification { .. } => count += 1,
            Frame::Replayed { .. } | Frame::Closed(_) => break,
            _ => {}
        }
    }
    assert_eq!(count, 5);
    Ok(())
}

#[tokio::test]
async fn a_socket_that_never_finishes_its_request_is_closed_after_the_header_timeout() -> anyhow::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let stack =
        Stack::start(StackOptions { env: env(&[("HERALD_HEADER_TIMEOUT_SECONDS", "1")]), ..Default::default() })
            .await?;
    // A client that completes its upgrade in time is served as ever, past the timeout.
    let mut c = stack.connect("patient", None).await?;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stack.js.publish(herald_core::subject::user_subject("patient"), r#"{"id":"p","kind":"k","title":"t","body":null,"data":null,"created_at":"2026-11-28T12:00:00Z","read":false}"#.into()).await?.await?;
    let pushed = next_event(&mut c).await.context("the notification")?;
    assert!(matches!(pushed, Event::Notification { .. }), "{pushed:?}");
    let addr = stack.gateway_addr(0).to_owned();
    // Nothing at all, half an upgrade, and a request line without its end: each is closed.
    let half = format!("GET /v1/ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\n");
    for (what, sent) in [("nothing", String::new()), ("half an upgrade", half), ("a request line", "GET /".into())] {
        let mut s = tokio::net::TcpStream::connect(&addr).await?;
        s.write_all(sent.as_bytes()).await?;
        let started = std::time::Instant::now();
        let mut buf = [0u8; 512];
        let closed = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    // hyper may answer 408 before closing.
                    Ok(_) => {}
                }
            }
        })
        .await;
        assert!(closed.is_ok(), "{what}: still open after 10 s");
        assert!(started.elapsed() >= Duration::from_millis(800), "{what}: closed before the timeout");
    }
    Ok(())
}
