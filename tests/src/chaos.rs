//! The reliability suite: traffic through the whole system on the 3-node cluster while one
//! fault strikes, and a checker in the spirit of Jepsen's queue checks.
//!
//! Every user has one connected device, which reconnects (to the other gateway if need be)
//! with the last cursor it received, as the contract tells clients to. Every frame is kept as
//! it came. Then, for every publish that got its PubAck:
//! - **lost**: its recipient's device never received it;
//! - **duplicated**: received more than once (`copies` of these came with a different cursor,
//!   i.e. the functions stored two copies; the others the gateway sent twice);
//! - **reordered**: received with a cursor below one the device already had;
//! - **late**: received more than `bound` after the later of its ack and the fault's healing.
//!
//! `recovery` is how long after the healing the last notification acknowledged before it
//! arrived. Publishes that failed (no ack) are not owed, but are counted if they arrive twice.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use herald_client::{Publisher, token};
use rand::Rng;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use herald_gateway::log::UserLog;

use crate::cluster::ClusterStack;
use crate::raw::{Frame, RawClient};
use crate::servers::NatsRole;
use crate::stack::{AUDIENCE, SECRET, request};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    None,
    /// `kill -9` of gateway 0: its clients reconnect to gateway 1.
    KillGateway,
    /// SIGTERM of gateway 0: it drains its clients to gateway 1.
    DrainGateway,
    /// `kill -9` of runner 0 mid-batch, restarted 3 s later.
    KillRunner,
    /// `kill -9` of the node leading `HERALD_USER`, restarted 5 s later.
    KillStreamLeader,
    /// SIGSTOP of node 0 (gateway 0's) for 10 s: its connections go silent, not closed.
    FreezeNode,
    /// The local store down for 5 s.
    RestartStore,
    /// Devices connecting (with the cursor of an earlier connection) exactly while a
    /// notification for them is published, many times.
    SubscribeRace,
    /// 400 notifications to one user at once, on top of the traffic.
    Burst,
}

impl Fault {
    pub const ALL: [Fault; 9] = [
        Fault::None,
        Fault::KillGateway,
        Fault::DrainGateway,
        Fault::KillRunner,
        Fault::KillStreamLeader,
        Fault::FreezeNode,
        Fault::RestartStore,
        Fault::SubscribeRace,
        Fault::Burst,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Fault::None => "no fault",
            Fault::KillGateway => "kill -9 a gateway",
            Fault::DrainGateway => "SIGTERM drain a gateway",
            Fault::KillRunner => "kill -9 a runner",
            Fault::KillStreamLeader => "kill -9 the stream leader",
            Fault::FreezeNode => "SIGSTOP a NATS node 10 s",
            Fault::RestartStore => "local store down 5 s",
            Fault::SubscribeRace => "connect while publishing",
            Fault::Burst => "burst of 400 to one user",
        }
    }

    pub fn parse(s: &str) -> Option<Fault> {
        let key = |f: Fault| format!("{f:?}").to_ascii_lowercase();
        Fault::ALL.into_iter().find(|f| key(*f) == s.to_ascii_lowercase().replace(['-', '_'], ""))
    }
}

#[derive(Debug, Clone)]
pub struct Load {
    pub users: usize,
    /// Notifications per second (one recipient each).
    pub rate: f64,
    /// Traffic before the fault, and after the healing.
    pub before: Duration,
    pub after: Duration,
    /// Connects of the subscribe race.
    pub race_rounds: usize,
    /// A notification owed arrives within this of its ack or the healing, whichever is later.
    pub bound: Duration,
}

impl Load {
    pub fn full() -> Self {
        Load {
            users: 1000,
            rate: 200.0,
            before: Duration::from_secs(5),
            after: Duration::from_secs(8),
            race_rounds: 500,
            bound: Duration::from_secs(2),
        }
    }

    pub fn smoke() -> Self {
        Load {
            users: 100,
            rate: 50.0,
            before: Duration::from_secs(3),
            after: Duration::from_secs(4),
            race_rounds: 100,
            bound: Duration::from_secs(2),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Report {
    pub scenario: String,
    pub published: usize,
    pub unacked: usize,
    pub delivered: usize,
    pub lost: usize,
    pub duplicated: usize,
    /// Of `duplicated`: second copies stored by the functions (another cursor).
    pub copies: usize,
    pub reordered: usize,
    pub late: usize,
    pub resets: usize,
    pub recovery: Duration,
    pub max_latency: Duration,
    /// Of `lost`: not in `HERALD_USER` at the end (the functions never stored the user's copy);
    /// the rest were stored and the gateway did not send them.
    pub not_stored: usize,
    /// Requests `HERALD_IN`'s consumer still held or had yet to deliver when the run ended (a
    /// request naked during the fault waits up to 30 s for its next try): their copies are
    /// late, not given up. Losses among them are shown as `(n u)`.
    pub unsettled: u64,
    /// Acknowledged notifications whose recipient has no item in the inbox at the end.
    pub not_in_inbox: usize,
    /// Every lost `(user, id)`.
    pub lost_ids: Vec<(String, String)>,
    /// A few lost ids with their users and where they were lost, for the investigation.
    pub examples: Vec<String>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.lost == 0 && self.duplicated == 0 && self.reordered == 0 && self.not_in_inbox == 0
    }

    /// Nothing the live path owns went wrong: every loss was a copy never stored, every
    /// duplicate a second stored copy.
    pub fn gateway_ok(&self) -> bool {
        self.lost == self.not_stored && self.duplicated == self.copies && self.reordered == 0
    }

    pub fn header() -> String {
        format!(
            "| {:<26} | {:>9} | {:>9} | {:>10} | {:>10} | {:>9} | {:>4} | {:>8} | {:>11} |",
            "scenario", "published", "delivered", "lost", "duplicated", "reordered", "late", "recovery", "max latency"
        )
    }

    pub fn row(&self) -> String {
        format!(
            "| {:<26} | {:>9} | {:>9} | {:>10} | {:>10} | {:>9} | {:>4} | {:>7.1}s | {:>10.2}s |",
            self.scenario,
            self.published,
            self.delivered,
            match (self.not_stored, self.unsettled) {
                (0, _) => self.lost.to_string(),
                (ns, 0) => format!("{} ({ns} ns)", self.lost),
                (ns, u) => format!("{} ({ns} ns, {u} u)", self.lost),
            },
            if self.copies > 0 {
                format!("{} ({} c)", self.duplicated, self.copies)
            } else {
                self.duplicated.to_string()
            },
            self.reordered,
            self.late,
            self.recovery.as_secs_f64(),
            self.max_latency.as_secs_f64()
        )
    }
}

/// Counts the acknowledged notifications whose recipient has no item in the inbox (one item per
/// user and id is the store's key, so "once" is "there").
async fn check_inbox(stack: &ClusterStack, journal: &Shared, report: &mut Report) -> anyhow::Result<()> {
    let owed: Vec<(String, String)> = journal.lock().unwrap().acked.keys().cloned().collect();
    let inbox = stack.inbox().await;
    let mut missing = 0;
    for chunk in owed.chunks(100) {
        let copies: Vec<(&str, &str)> = chunk.iter().map(|(u, i)| (u.as_str(), i.as_str())).collect();
        let found = inbox.existing(&copies).await?;
        missing += chunk.iter().filter(|k| !found.contains(*k)).count();
    }
    report.not_in_inbox = missing;
    if missing > 0 {
        report.examples.push(format!("{missing} acknowledged notifications have no item in the inbox"));
    }
    Ok(())
}

/// What one device received: (id, cursor, when).
type Received = Vec<(String, u128, Instant)>;

#[derive(Default)]
struct Journal {
    received: HashMap<String, Received>,
    resets: usize,
    /// (user, id) → when the publish was acknowledged.
    acked: HashMap<(String, String), Instant>,
    unacked: usize,
}

type Shared = Arc<Mutex<Journal>>;

fn user_name(i: usize) -> String {
    format!("u{i:05}")
}

/// One device of `user`: connected until `stop`, reconnecting with its last cursor.
async fn device(stack_urls: Vec<String>, user: String, preferred: usize, journal: Shared, stop: CancellationToken) {
    let token = token::user_token(SECRET, AUDIENCE, &user, 24 * 3600);
    // "0": before the user's first notification, so every one is owed to this device, however
    // long its first connection takes.
    let mut cursor: Option<String> = Some("0".into());
    let mut gw = preferred;
    while !stop.is_cancelled() {
        let Ok(mut c) = RawClient::connect(&stack_urls[gw % stack_urls.len()], &token, cursor.as_deref()).await else {
            gw += 1;
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        loop {
            let frame = tokio::select! {
                _ = stop.cancelled() => { c.close().await; return; }
                f = c.next() => f,
            };
            match frame {
                Ok(Frame::Welcome { cursor: Some(w) }) if cursor.is_none() => cursor = Some(w),
                Ok(Frame::Notification { cursor: nc, id, .. }) => {
                    let n = Frame::cursor_number(&nc);
                    journal.lock().unwrap().received.entry(user.clone()).or_default().push((id, n, Instant::now()));
                    if cursor.as_deref().is_none_or(|c| Frame::cursor_number(c) < n) {
                        cursor = Some(nc);
                    }
                }
                Ok(Frame::Reset) => journal.lock().unwrap().resets += 1,
                Ok(Frame::Reconnect { .. }) => {
                    c.close().await;
                    gw += 1;
                    break;
                }
                Ok(Frame::Closed(_)) | Err(_) => {
                    gw += 1;
                    let pause = rand::rng().random_range(50..300);
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                    break;
                }
                Ok(_) => {}
            }
        }
    }
}

/// Publishes at `rate` to random users until `stop`; each publish is its own task so a slow
/// ack (an election) does not slow the rest.
async fn traffic(publisher: Arc<Publisher>, load: Load, journal: Shared, stop: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / load.rate));
    let limit = Arc::new(tokio::sync::Semaphore::new(2000));
    let mut n = 0u64;
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        let user = user_name(rand::rng().random_range(0..load.users));
        let Ok(permit) = limit.clone().acquire_owned().await else { break };
        tasks.spawn(publish_one(publisher.clone(), user, format!("n-{n}"), journal.clone(), permit));
        n += 1;
    }
    while tasks.join_next().await.is_some() {}
}

async fn publish_one(
    publisher: Arc<Publisher>,
    user: String,
    id: String,
    journal: Shared,
    _permit: tokio::sync::OwnedSemaphorePermit,
) {
    let r = publisher.publish("chaos", &request(&id, &[user.as_str()])).await;
    let mut j = journal.lock().unwrap();
    match r {
        Ok(_) => {
            j.acked.insert((user, id), Instant::now());
        }
        Err(_) => j.unacked += 1,
    }
}

/// Runs one scenario on a fresh cluster and checks it.
pub async fn run(fault: Fault, load: &Load) -> anyhow::Result<Report> {
    // Every device connects from 127.0.0.1: lift the per-IP limits meant for the internet.
    let env = [("HERALD_CONNECTS_PER_IP_PER_SEC", "100000"), ("HERALD_CONNECT_BURST", "100000")];
    let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let mut stack = ClusterStack::start(2, 2, env).await?;
    let journal: Shared = Arc::default();
    let stop_devices = CancellationToken::new();
    let urls: Vec<String> = (0..2).map(|i| stack.ws_url(i)).collect();
    let publisher = Arc::new(Publisher::new(stack.creator.clone()));
    if fault == Fault::SubscribeRace {
        let heal_at = Instant::now();
        subscribe_race(&publisher, load, &journal, &urls).await?;
        let mut report = check(fault, load, &journal, heal_at);
        explain(&stack, &mut report).await;
        check_inbox(&stack, &journal, &mut report).await?;
        return Ok(report);
    }
    let mut devices = tokio::task::JoinSet::new();
    for i in 0..load.users {
        devices.spawn(device(urls.clone(), user_name(i), i % 2, journal.clone(), stop_devices.clone()));
    }
    // Every device connects before the traffic (its first welcome is where it starts).
    tokio::time::sleep(Duration::from_millis(1000 + load.users as u64 * 3)).await;
    let stop_traffic = CancellationToken::new();
    let traffic_task = tokio::spawn(traffic(publisher.clone(), load.clone(), journal.clone(), stop_traffic.clone()));
    tokio::time::sleep(load.before).await;
    let heal_at = inject(&mut stack, fault, &publisher, &journal).await?;
    tokio::time::sleep(load.after).await;
    stop_traffic.cancel();
    let _ = traffic_task.await;
    // Everything acknowledged is owed; wait while it keeps arriving (a backlog in the
    // functions drains at their pace) and while the functions still hold requests (one naked
    // during the fault waits for its next try), until nothing came for 5 s with nothing held,
    // at most 2 minutes.
    tokio::time::sleep(load.bound).await;
    let received = || journal.lock().unwrap().received.values().map(Vec::len).sum::<usize>();
    let (mut last, mut quiet, mut unsettled) = (received(), 0, u64::MAX);
    for _ in 0..120 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = received();
        quiet = if now == last { quiet + 1 } else { 0 };
        last = now;
        if quiet >= 5 {
            unsettled = held_requests(&stack).await.unwrap_or(u64::MAX);
            if unsettled == 0 {
                break;
            }
        }
    }
    stop_devices.cancel();
    while devices.join_next().await.is_some() {}
    let mut report = check(fault, load, &journal, heal_at);
    report.unsettled = if unsettled == u64::MAX { held_requests(&stack).await.unwrap_or(0) } else { unsettled };
    explain(&stack, &mut report).await;
    check_inbox(&stack, &journal, &mut report).await?;
    Ok(report)
}

/// Requests of `HERALD_IN` the functions have not settled: not yet delivered, or delivered and
/// not acknowledged (in hand, or naked and waiting for their next try).
async fn held_requests(stack: &ClusterStack) -> anyhow::Result<u64> {
    let stream = stack.js.get_stream(herald_core::subject::IN_STREAM).await?;
    let mut consumer: async_nats::jetstream::consumer::PullConsumer =
        stream.get_consumer("deliver").await.map_err(|e| anyhow::anyhow!("{e}"))?;
    let c = consumer.info().await?;
    Ok(c.num_pending + c.num_ack_pending as u64)
}

/// Looks for every lost notification in `HERALD_USER` (from the stream leader): there, the
/// gateway failed to send it; not there, the functions never stored it.
async fn explain(stack: &ClusterStack, report: &mut Report) {
    if report.lost_ids.is_empty() {
        return;
    }
    let url = stack.cluster.urls_as(0, NatsRole::Gateway);
    let client = match herald_core::nats::options_with(&url, Some(&stack.cluster.certs.tls))
        .custom_inbox_prefix(herald_core::subject::GATEWAY_INBOX_PREFIX)
        .connect(herald_core::nats::servers(&url).unwrap_or_default())
        .await
    {
        Ok(c) => c,
        Err(e) => {
            report.examples.push(format!("could not look into HERALD_USER: {e}"));
            return;
        }
    };
    let log = UserLog::new(client, Duration::from_secs(5));
    let mut stored: HashMap<String, HashMap<String, u64>> = HashMap::new();
    for (user, id) in report.lost_ids.clone() {
        if !stored.contains_key(&user) {
            let subject = herald_core::subject::user_subject(&user);
            let mut ids = HashMap::new();
            let mut from = 1;
            loop {
                match log.next_leader(&subject, from).await {
                    Ok(Some(e)) => {
                        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&e.payload)
                            && let Some(i) = v["id"].as_str()
                        {
                            ids.insert(i.to_owned(), e.seq);
                        }
                        from = e.seq + 1;
                    }
                    Ok(None) => break,
                    Err(e) => {
                        report.examples.push(format!("could not read {user}'s copies: {e}"));
                        return;
                    }
                }
            }
            stored.insert(user.clone(), ids);
        }
        let seq = stored.get(&user).and_then(|m| m.get(&id)).copied();
        if seq.is_none() {
            report.not_stored += 1;
        }
        if report.examples.len() < 5 {
            report.examples.push(match seq {
                Some(seq) => format!("{user}/{id}: stored at {seq}, not sent by the gateway"),
                None => format!("{user}/{id}: acknowledged by HERALD_IN, never stored in HERALD_USER"),
            });
        }
    }
}

/// Strikes and heals; returns when the fault healed.
async fn inject(
    stack: &mut ClusterStack,
    fault: Fault,
    publisher: &Arc<Publisher>,
    journal: &Shared,
) -> anyhow::Result<Instant> {
    match fault {
        Fault::None | Fault::SubscribeRace => {}
        Fault::KillGateway => {
            if let Some(t) = stack.gateways[0].1.take() {
                t.kill().await;
            }
        }
        Fault::DrainGateway => {
            if let Some(t) = stack.gateways[0].1.take() {
                t.stop().await;
            }
        }
        Fault::KillRunner => {
            if let Some(t) = stack.runners[0].take() {
                t.kill().await;
            }
            tokio::time::sleep(Duration::from_secs(3)).await;
            stack.start_runner(0).await?;
        }
        Fault::KillStreamLeader => {
            let leader = stack.user_stream_leader().await?;
            tracing::warn!(leader, "killing the HERALD_USER leader");
            stack.cluster.kill(leader);
            tokio::time::sleep(Duration::from_secs(5)).await;
            stack.cluster.restart(leader)?;
        }
        Fault::FreezeNode => {
            stack.cluster.pause(0)?;
            tokio::time::sleep(Duration::from_secs(10)).await;
            stack.cluster.unpause(0)?;
        }
        Fault::RestartStore => {
            stack.store.stop();
            tokio::time::sleep(Duration::from_secs(5)).await;
            stack.store.resume()?;
        }
        Fault::Burst => {
            let mut tasks = tokio::task::JoinSet::new();
            let limit = Arc::new(tokio::sync::Semaphore::new(400));
            for k in 0..400 {
                let permit = limit.clone().acquire_owned().await?;
                tasks.spawn(publish_one(
                    publisher.clone(),
                    user_name(0),
                    format!("burst-{k}"),
                    journal.clone(),
                    permit,
                ));
            }
            while tasks.join_next().await.is_some() {}
        }
    }
    Ok(Instant::now())
}

/// Each round: a fresh user connects once (its welcome cursor), leaves, then reconnects with
/// that cursor exactly while a notification for it is published (the two jittered by a few
/// milliseconds either way). The notification is owed to the second connection.
async fn subscribe_race(
    publisher: &Arc<Publisher>,
    load: &Load,
    journal: &Shared,
    urls: &[String],
) -> anyhow::Result<()> {
    let limit = Arc::new(tokio::sync::Semaphore::new(20));
    let mut rounds = tokio::task::JoinSet::new();
    for k in 0..load.race_rounds {
        let permit = limit.clone().acquire_owned().await?;
        let (publisher, journal, url) = (publisher.clone(), journal.clone(), urls[k % urls.len()].clone());
        let bound = load.bound;
        rounds.spawn(async move {
            let _permit = permit;
            let user = format!("race{k:05}");
            let token = token::user_token(SECRET, AUDIENCE, &user, 3600);
            let Ok(mut first) = RawClient::connect(&url, &token, None).await else { return };
            let Ok(Some(Frame::Welcome { cursor: Some(w) })) = first.next_within(Duration::from_secs(10)).await else {
                return;
            };
            first.close().await;
            let jitter = rand::rng().random_range(0..40u64);
            let id = format!("race-{k}");
            let publish = {
                let (publisher, journal, user, id) = (publisher.clone(), journal.clone(), user.clone(), id.clone());
                async move {
                    tokio::time::sleep(Duration::from_millis(jitter)).await;
                    let permit = Arc::new(tokio::sync::Semaphore::new(1)).acquire_owned().await.expect("open");
                    publish_one(publisher, user, id, journal, permit).await;
                }
            };
            let device = async {
                tokio::time::sleep(Duration::from_millis(20)).await;
                let Ok(mut c) = RawClient::connect(&url, &token, Some(&w)).await else { return };
                // The notification may take the pipeline's time; wait for it past the bound.
                let deadline = Instant::now() + bound + Duration::from_secs(8);
                while Instant::now() < deadline {
                    match c.next_within(Duration::from_millis(500)).await {
                        Ok(Some(Frame::Notification { cursor, id, .. })) => {
                            let n = Frame::cursor_number(&cursor);
                            journal.lock().unwrap().received.entry(user.clone()).or_default().push((
                                id,
                                n,
                                Instant::now(),
                            ));
                        }
                        Ok(Some(Frame::Reset)) => journal.lock().unwrap().resets += 1,
                        Ok(Some(Frame::Closed(_))) | Err(_) => return,
                        _ => {}
                    }
                }
                c.close().await;
            };
            tokio::join!(publish, device);
        });
    }
    while rounds.join_next().await.is_some() {}
    Ok(())
}

fn check(fault: Fault, load: &Load, journal: &Shared, heal_at: Instant) -> Report {
    let j = journal.lock().unwrap();
    let mut r = Report {
        scenario: fault.name().to_owned(),
        published: j.acked.len(),
        unacked: j.unacked,
        resets: j.resets,
        ..Default::default()
    };
    let mut seen: HashMap<(&str, &str), Vec<(u128, Instant)>> = HashMap::new();
    for (user, frames) in &j.received {
        let mut max = 0u128;
        for (id, cursor, at) in frames {
            let copies = seen.entry((user.as_str(), id.as_str())).or_default();
            if copies.is_empty() && *cursor <= max {
                r.reordered += 1;
            }
            max = max.max(*cursor);
            copies.push((*cursor, *at));
        }
    }
    for ((user, id), copies) in &seen {
        if copies.len() > 1 {
            r.duplicated += copies.len() - 1;
            let first = copies[0].0;
            r.copies += copies.iter().skip(1).filter(|(c, _)| *c != first).count();
        }
        let _ = (user, id);
    }
    for ((user, id), acked_at) in &j.acked {
        match seen.get(&(user.as_str(), id.as_str())) {
            None => {
                r.lost += 1;
                r.lost_ids.push((user.clone(), id.clone()));
            }
            Some(copies) => {
                r.delivered += 1;
                let at = copies[0].1;
                let owed_from = (*acked_at).max(heal_at);
                let after = at.saturating_duration_since(owed_from);
                if after > load.bound {
                    r.late += 1;
                }
                r.max_latency = r.max_latency.max(at.saturating_duration_since(*acked_at));
                if *acked_at <= heal_at {
                    r.recovery = r.recovery.max(at.saturating_duration_since(heal_at));
                }
            }
        }
    }
    r
}
