//! A deployment: SIGTERM drains a gateway with 500 clients while notifications keep flowing.
//! Every client gets `reconnect` with a delay spread over the drain period, comes back to the
//! second gateway with its cursor, and in the end has every notification exactly once.

use std::collections::HashMap;
use std::time::Duration;

use herald_client::{Connection, Event};
use herald_tests::stack::{http_get, next_event, publish_paced};
use herald_tests::{Stack, StackOptions};

const CLIENTS: usize = 500;
const NOTIFICATIONS: usize = 300;

#[tokio::test]
async fn sigterm_drain_moves_500_clients_to_another_gateway_losing_nothing() -> anyhow::Result<()> {
    let mut stack = Stack::start(StackOptions {
        gateways: 2,
        drain_period: Duration::from_secs(3),
        env: vec![("HERALD_CONNECT_BURST".into(), "2000".into())],
        ..Default::default()
    })
    .await?;
    let (url0, url1) = (stack.ws_url(0), stack.ws_url(1));

    let mut clients = Vec::new();
    for i in 0..CLIENTS {
        let user = format!("drain-{i}");
        let mut conn = Connection::connect(&url0, &stack.token(&user), None).await?;
        anyhow::ensure!(matches!(next_event(&mut conn).await?, Event::Welcome { .. }));
        let token = stack.token(&user);
        let url1 = url1.clone();
        clients.push(tokio::spawn(async move {
            let mut ids: Vec<String> = Vec::new();
            let mut reconnects = Vec::new();
            loop {
                let event = match tokio::time::timeout(Duration::from_secs(15), conn.next()).await {
                    Ok(Ok(e)) => e,
                    _ => break,
                };
                match event {
                    Event::Notification { notification, .. } => ids.push(notification.id),
                    Event::Reconnect { after_ms, .. } => {
                        reconnects.push(after_ms);
                        tokio::time::sleep(Duration::from_millis(after_ms)).await;
                        let cursor = conn.cursor().map(str::to_owned);
                        let old = std::mem::replace(
                            &mut conn,
                            Connection::connect(&url1, &token, cursor.as_deref()).await.expect("gateway 1"),
                        );
                        old.close().await;
                    }
                    Event::Closed { .. } => break,
                    _ => {}
                }
            }
            (ids, reconnects)
        }));
    }
    let metrics = stack.metrics(0).await?;
    assert!(metrics.contains(&format!("herald_gateway_connections {CLIENTS}")));

    // Notifications flow before, during and after the drain.
    let mut expected: HashMap<String, Vec<String>> = HashMap::new();
    let mut plan = Vec::new();
    for k in 0..NOTIFICATIONS {
        let users = vec![format!("drain-{}", k % CLIENTS), format!("drain-{}", (k * 7 + 3) % CLIENTS)];
        for u in &users {
            expected.entry(u.clone()).or_default().push(format!("n-{k}"));
        }
        plan.push((format!("n-{k}"), users));
    }
    let publisher = publish_paced(stack.publisher.clone(), plan, Duration::from_millis(20));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (addr, gw0) = stack.gateways.remove(0);
    let ready = async { http_get(&format!("http://{addr}/readyz")).await.map(|r| r.0).unwrap_or(0) };
    let stopping = tokio::spawn(gw0.stop());
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_ne!(ready.await, 200, "not ready while draining");
    publisher.await?;
    tokio::time::timeout(Duration::from_secs(10), stopping).await??;

    let mut reconnected = 0;
    let mut after_ms = Vec::new();
    for (i, c) in clients.into_iter().enumerate() {
        let (mut ids, reconnects) = c.await?;
        let user = format!("drain-{i}");
        let mut want = expected.remove(&user).unwrap_or_default();
        want.sort();
        want.dedup();
        let n = ids.len();
        ids.sort();
        ids.dedup();
        assert_eq!(n, ids.len(), "{user} saw a notification twice");
        assert_eq!(ids, want, "{user} lost a notification");
        reconnected += usize::from(!reconnects.is_empty());
        after_ms.extend(reconnects);
    }
    assert_eq!(reconnected, CLIENTS, "every client got reconnect");
    let (min, max) = (after_ms.iter().min().copied().unwrap_or(0), after_ms.iter().max().copied().unwrap_or(0));
    assert!(max - min > 1500, "delays spread over the drain period: {min}..{max} ms");
    assert!(max < 3000);
    Ok(())
}
