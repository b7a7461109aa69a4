//! `bench-functions`: how fast the functions path persists and pushes, with one and two runner
//! processes and through the Lambda bridge, and how long a 10,000-member team notification
//! takes to reach every member.
//!
//! ```text
//! cargo build --release -p herald-functions --bins
//! cargo run --release -p herald-tests --bin bench-functions -- [--count 2000] [--users 100] [--team 10000]
//! ```
//!
//! Each scenario starts a fresh stack (NATS, dynalite, a gateway) and the runners as real
//! `herald-functions` processes (or the real `herald-deliver-lambda` binary behind the Lambda
//! emulator, fed by the bridge), connects `users` clients, publishes `count` one-recipient
//! notifications at once, and times until the consumer has acked them all (persisted: stored in
//! DynamoDB and published to HERALD_USER) and until the clients have received them all (pushed).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use async_nats::jetstream::consumer::pull;
use herald_client::Event;
use herald_core::config::{DynamoConfig, Vars};
use herald_functions::dynamo::DynamoInbox;
use herald_tests::lambda_emulator::LambdaEmulator;
use herald_tests::procs::{Proc, bridge};
use herald_tests::stack::{Task, request};
use herald_tests::{Stack, StackOptions};

struct Args {
    count: usize,
    users: usize,
    team: usize,
}

fn args() -> anyhow::Result<Args> {
    let mut a = Args { count: 2000, users: 100, team: 10_000 };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let v = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--count" => a.count = v.parse()?,
            "--users" => a.users = v.parse()?,
            "--team" => a.team = v.parse()?,
            _ => anyhow::bail!("unknown flag {flag}; see the file's doc comment"),
        }
    }
    Ok(a)
}

enum Mode {
    Runners(usize),
    Lambda,
}

/// What keeps a scenario's deliverers alive.
#[allow(dead_code)]
enum Deliverers {
    Procs(Vec<Proc>),
    Lambda(LambdaEmulator, Task),
}

async fn stack() -> anyhow::Result<Stack> {
    Stack::start(StackOptions {
        start_runner: false,
        env: vec![
            ("HERALD_CONNECTS_PER_IP_PER_SEC".into(), "100000".into()),
            ("HERALD_CONNECT_BURST".into(), "100000".into()),
        ],
        ..Default::default()
    })
    .await
}

async fn deliverers(stack: &Stack, mode: &Mode) -> anyhow::Result<Deliverers> {
    let vars: Vars = stack.vars();
    Ok(match mode {
        Mode::Runners(n) => {
            let mut procs = Vec::new();
            for _ in 0..*n {
                procs.push(Proc::runner(&vars).await?);
            }
            Deliverers::Procs(procs)
        }
        Mode::Lambda => {
            let lambda = LambdaEmulator::start("herald-deliver-lambda", 4, &vars).await?;
            let (task, _) = bridge(
                &vars
                    .clone()
                    .with("HERALD_LAMBDA_ENDPOINT", lambda.endpoint())
                    .with("HERALD_BRIDGE_BATCH", "16")
                    .with("HERALD_BRIDGE_INVOCATIONS", "4"),
            )
            .await?;
            Deliverers::Lambda(lambda, task)
        }
    })
}

/// Waits until the shared consumer has nothing pending or unacked.
async fn consumer_done(stack: &Stack) -> anyhow::Result<()> {
    let stream = stack.js.get_stream("HERALD_IN").await?;
    loop {
        let mut c = stream.get_consumer::<pull::Config>("deliver").await.map_err(|e| anyhow::anyhow!(e))?;
        let info = c.info().await.map_err(|e| anyhow::anyhow!(e))?;
        if info.num_pending == 0 && info.num_ack_pending == 0 {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Connects `users` clients counting the notifications they receive.
async fn readers(
    stack: &Stack,
    users: &[String],
) -> anyhow::Result<(Arc<AtomicUsize>, Vec<tokio::task::JoinHandle<()>>)> {
    let received = Arc::new(AtomicUsize::new(0));
    let mut handles = Vec::new();
    for u in users {
        let mut conn = stack.connect(u, None).await?;
        let received = received.clone();
        handles.push(tokio::spawn(async move {
            while let Ok(e) = conn.next().await {
                match e {
                    Event::Notification { .. } => {
                        received.fetch_add(1, Ordering::Relaxed);
                    }
                    Event::Closed { .. } => break,
                    _ => {}
                }
            }
        }));
    }
    Ok((received, handles))
}

async fn wait_count(received: &AtomicUsize, want: usize, within: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    while received.load(Ordering::Relaxed) < want {
        anyhow::ensure!(Instant::now() < deadline, "only {} of {want} pushed", received.load(Ordering::Relaxed));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

async fn throughput(a: &Args, mode: Mode, label: &str) -> anyhow::Result<()> {
    let stack = stack().await?;
    let _deliverers = deliverers(&stack, &mode).await?;
    let users: Vec<String> = (0..a.users).map(|u| format!("bench-{u}")).collect();
    let (received, handles) = readers(&stack, &users).await?;
    let started = Instant::now();
    let mut publishes = Vec::with_capacity(a.count);
    for k in 0..a.count {
        let p = stack.publisher.clone();
        let r = request(&format!("n-{k}"), &[&users[k % users.len()]]);
        publishes.push(tokio::spawn(async move { p.publish("bench", &r).await }));
    }
    for p in publishes {
        p.await??;
    }
    let published = started.elapsed();
    consumer_done(&stack).await?;
    let persisted = started.elapsed();
    wait_count(&received, a.count, Duration::from_secs(120)).await?;
    let pushed = started.elapsed();
    println!(
        "{label:<22} {:>5} notifications: published in {:>5.2} s, persisted {:>7.0}/s, pushed {:>7.0}/s",
        a.count,
        published.as_secs_f64(),
        a.count as f64 / persisted.as_secs_f64(),
        a.count as f64 / pushed.as_secs_f64(),
    );
    for h in handles {
        h.abort();
    }
    Ok(())
}

async fn team(a: &Args) -> anyhow::Result<()> {
    let stack = stack().await?;
    let _deliverers = deliverers(&stack, &Mode::Runners(1)).await?;
    let inbox = DynamoInbox::new(
        stack.dynamo.clone(),
        &DynamoConfig {
            endpoint: Some(stack.dynalite.endpoint()),
            region: "us-east-1".into(),
            table_prefix: "herald_".into(),
        },
    );
    let members: Vec<String> = (0..a.team).map(|i| format!("m-{i:06}")).collect();
    inbox.add_members("everyone", &members).await?;
    let connected: Vec<String> = members.iter().step_by((a.team / 200).max(1)).cloned().collect();
    let (received, handles) = readers(&stack, &connected).await?;
    let mut r = request("all-hands", &[]);
    r.recipients.teams = vec!["everyone".into()];
    let started = Instant::now();
    stack.publisher.publish("bench", &r).await?;
    wait_count(&received, connected.len(), Duration::from_secs(300)).await?;
    let pushed = started.elapsed();
    consumer_done(&stack).await?;
    let done = started.elapsed();
    println!(
        "team of {}: pushed to all {} connected members in {:.2} s; stored and published for every member in {:.2} s ({:.0} members/s)",
        a.team,
        connected.len(),
        pushed.as_secs_f64(),
        done.as_secs_f64(),
        a.team as f64 / done.as_secs_f64()
    );
    for h in handles {
        h.abort();
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = args()?;
    println!(
        "bench-functions: {} users, {} notifications per scenario, {} cores",
        a.users,
        a.count,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    throughput(&a, Mode::Runners(1), "1 runner").await?;
    throughput(&a, Mode::Runners(2), "2 runners").await?;
    throughput(&a, Mode::Lambda, "Lambda bridge").await?;
    team(&a).await?;
    Ok(())
}
