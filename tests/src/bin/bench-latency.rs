//! `bench-latency`: notifications at a fixed rate through the whole persisted path (JetStream,
//! the deliver function, DynamoDB, HERALD_USER, the gateway) to connected users; prints
//! publish→socket latency percentiles and lost/duplicated counts.
//!
//! ```text
//! cargo run --release -p herald-tests --bin bench-latency -- [--users 200] [--rate 200] [--count 2000]
//! ```
//!
//! Open loop: publish k is sent at start + k/rate whatever happened to earlier ones, so a slow
//! path shows up as latency, not as a lower rate. Latency runs from just before the publish
//! call to the frame's arrival at the client.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;
use herald_client::Event;
use herald_tests::stack::request;
use herald_tests::{Stack, StackOptions};

struct Args {
    users: usize,
    rate: f64,
    count: usize,
}

fn args() -> anyhow::Result<Args> {
    let mut a = Args { users: 200, rate: 200.0, count: 2000 };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let v = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--users" => a.users = v.parse()?,
            "--rate" => a.rate = v.parse()?,
            "--count" => a.count = v.parse()?,
            _ => anyhow::bail!("unknown flag {flag}; see the file's doc comment"),
        }
    }
    Ok(a)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = args()?;
    let stack = Stack::start(StackOptions::default()).await?;
    eprintln!("stack up; connecting {} users", a.users);

    let received: Arc<Mutex<HashMap<String, Vec<Instant>>>> = Arc::default();
    let mut readers = Vec::new();
    for u in 0..a.users {
        let mut conn = stack.connect(&format!("bench-user-{u}"), None).await?;
        let received = received.clone();
        readers.push(tokio::spawn(async move {
            while let Ok(event) = conn.next().await {
                match event {
                    Event::Notification { notification, .. } => {
                        let at = Instant::now();
                        received.lock().unwrap().entry(notification.id).or_default().push(at);
                    }
                    Event::Closed { .. } => break,
                    _ => {}
                }
            }
        }));
    }

    eprintln!("publishing {} notifications at {}/s", a.count, a.rate);
    let sent: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let start = Instant::now();
    let mut publishes = Vec::new();
    for k in 0..a.count {
        let due = start + Duration::from_secs_f64(k as f64 / a.rate);
        tokio::time::sleep_until(due.into()).await;
        let id = format!("bench-{k}");
        let user = format!("bench-user-{}", k % a.users);
        let publisher = stack.publisher.clone();
        let sent = sent.clone();
        publishes.push(tokio::spawn(async move {
            sent.lock().unwrap().insert(id.clone(), Instant::now());
            publisher.publish("bench", &request(&id, &[&user])).await
        }));
    }
    let mut failed = 0;
    for p in publishes {
        if !matches!(p.await, Ok(Ok(_))) {
            failed += 1;
        }
    }
    let offered = start.elapsed();

    // Wait for the tail, up to 30 s.
    let deadline = Instant::now() + Duration::from_secs(30);
    while received.lock().unwrap().len() < a.count && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await; // let late copies show up as duplicates

    let sent = sent.lock().unwrap();
    let received = received.lock().unwrap();
    let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let (mut lost, mut dup) = (0, 0);
    for (id, t0) in sent.iter() {
        match received.get(id) {
            None => lost += 1,
            Some(ts) => {
                dup += ts.len() - 1;
                h.record(ts[0].duration_since(*t0).as_micros().max(1) as u64)?;
            }
        }
    }
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "bench-latency: {} users, {} notifications offered at {}/s over {:.1} s",
        a.users,
        a.count,
        a.rate,
        offered.as_secs_f64()
    );
    println!(
        "publish→socket latency ms: p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}",
        ms(0.50),
        ms(0.90),
        ms(0.99),
        h.max() as f64 / 1000.0
    );
    println!("delivered {}  lost {lost}  duplicated {dup}  publish failures {failed}", h.len());
    for r in readers {
        r.abort();
    }
    Ok(())
}
