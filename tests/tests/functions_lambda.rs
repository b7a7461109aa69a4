//! The Lambda path end to end: the real `herald-deliver-lambda` binary serving an emulated
//! Lambda Runtime API, invoked through the Invoke API by the real bridge, with real NATS and
//! dynalite, ending in a WebSocket push.

use std::time::Duration;

use herald_client::Event;
use herald_core::notification::HDR_REASON_CODE;
use herald_tests::lambda_emulator::LambdaEmulator;
use herald_tests::procs::{bridge, eventually, metric};
use herald_tests::stack::drain_events;
use herald_tests::{Stack, StackOptions};

#[tokio::test]
async fn a_notification_through_the_bridge_and_the_lambda_binary_is_pushed_once() -> anyhow::Result<()> {
    let stack = Stack::start(StackOptions { start_runner: false, ..Default::default() }).await?;
    let vars = stack.vars();
    let lambda = LambdaEmulator::start("herald-deliver-lambda", 2, &vars).await?;
    let (_bridge, ops) =
        bridge(&vars.clone().with("HERALD_LAMBDA_ENDPOINT", lambda.endpoint()).with("HERALD_BRIDGE_BATCH", "4"))
            .await?;
    let mut u = stack.connect("lambda-user", None).await?;
    for i in 0..6 {
        stack.publish(&format!("via-lambda-{i}"), &["lambda-user"]).await?;
    }
    stack.publisher.publish_raw("test", "not-json", "{oops".into()).await?;

    let mut got = Vec::new();
    while got.len() < 6 {
        let events = drain_events(&mut u, Duration::from_secs(10)).await;
        if events.is_empty() {
            break;
        }
        for e in events {
            if let Event::Notification { notification, .. } = e {
                got.push(notification.id);
            }
        }
    }
    got.extend(drain_events(&mut u, Duration::from_millis(500)).await.into_iter().filter_map(|e| match e {
        Event::Notification { notification, .. } => Some(notification.id),
        _ => None,
    }));
    let want: Vec<String> = (0..6).map(|i| format!("via-lambda-{i}")).collect();
    // Batches in flight at once may interleave (see the bridge's docs): each once, any order.
    got.sort();
    assert_eq!(got, want, "each once");
    for id in &want {
        assert_eq!(stack.stored("lambda-user", id).await?, 1);
    }
    assert!(lambda.invocations() >= 2, "batches of at most 4");

    // The invalid one was dead-lettered by the function and acked by the bridge.
    let dlq = stack.js.get_stream("HERALD_DLQ").await?;
    let letter = dlq.get_last_raw_message_by_subject("herald.dlq.test").await?;
    assert_eq!(letter.headers.get(HDR_REASON_CODE).map(|v| v.as_str()), Some("malformed"));
    eventually(Duration::from_secs(5), || async {
        let consumer = stack
            .js
            .get_stream("HERALD_IN")
            .await?
            .get_consumer::<async_nats::jetstream::consumer::pull::Config>("deliver")
            .await
            .map_err(|e| anyhow::anyhow!(e))?;
        let mut consumer = consumer;
        let info = consumer.info().await.map_err(|e| anyhow::anyhow!(e))?;
        Ok(info.num_ack_pending == 0 && info.num_pending == 0)
    })
    .await?;
    assert_eq!(metric(&ops, "herald_functions_messages_total").await?, 7);
    Ok(())
}
