//! Open-loop publishing: notification `k` of a plan leaves at `start + k / rate` whatever became
//! of the earlier ones, so a slow path shows up as latency and cannot lower the offered rate.
//!
//! Herald gets each notification through its front door (JetStream `herald.in.bench` with the
//! SDK, so through the runner, DynamoDB and `HERALD_USER`); the baseline gets it the way the
//! seed's services did, as a Redis pub/sub entry that its publisher emits to a room.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use herald_client::{NotificationRequest, Recipients};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::Mutex;
use tokio::task::JoinSet;

use crate::wire::{Stamp, now_us};

/// Herald publishes awaiting their acknowledgement at most: async-nats stalls at 5,000 (a
/// burst waits here instead, and that wait counts as latency since t0 is the scheduled time).
const MAX_IN_FLIGHT: usize = 1000;

/// The Redis channel the baseline's publisher listens on (server.js `INGEST_CHANNEL`).
const INGEST_CHANNEL: &str = "herald:publish";

pub enum Publisher {
    Herald(Box<herald_client::Publisher>),
    SocketIo { redis: Arc<Mutex<OwnedWriteHalf>>, errors: Arc<AtomicU64> },
}

/// Who a plan's notifications go to.
#[derive(Debug, Clone)]
pub enum Audience {
    /// Notification `k` goes to user `u<k % users>` (sequence `k / users`).
    Users(u64),
    /// Every notification goes to one team (sequence `k`).
    Team(String),
    /// Every notification goes to user `u<index>` (sequence `k`).
    One(u64),
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub phase: u32,
    pub audience: Audience,
    pub count: u64,
    pub rate: f64,
}

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Sent {
    pub count: u64,
    pub failed: u64,
    /// Herald: the plan's indexes `k` whose publish JetStream never acknowledged (the receivers
    /// are owed only what was acknowledged).
    pub unacked: Vec<u64>,
    /// Herald: the highest `HERALD_IN` sequence acknowledged (0: none).
    pub last_sequence: u64,
    pub secs: f64,
    /// How far the loop itself fell behind its schedule, at worst (ms).
    pub max_lag_ms: f64,
}

impl Publisher {
    pub async fn herald(nats_url: &str) -> anyhow::Result<Self> {
        let client = async_nats::connect(nats_url).await.context("connecting the publisher to NATS")?;
        Ok(Publisher::Herald(Box::new(herald_client::Publisher::new(client))))
    }

    pub async fn socketio(redis_addr: &str) -> anyhow::Result<Self> {
        let (mut rd, wr) = TcpStream::connect(redis_addr).await.context("connecting to redis")?.into_split();
        let errors = Arc::new(AtomicU64::new(0));
        let errs = errors.clone();
        // Replies are `:<receivers>` or `-ERR …`; only errors matter.
        tokio::spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            while let Ok(n) = rd.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                let e = buf[..n].iter().filter(|&&b| b == b'-').count() as u64;
                errs.fetch_add(e, Ordering::Relaxed);
            }
        });
        Ok(Publisher::SocketIo { redis: Arc::new(Mutex::new(wr)), errors })
    }

    /// Publishes `plan` open loop; a rate of `f64::INFINITY` sends everything at once.
    pub async fn run(&self, plan: &Plan) -> anyhow::Result<Sent> {
        let start = Instant::now();
        let start_us = now_us();
        let in_flight = Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT));
        let mut tasks = JoinSet::new();
        let mut sent = Sent::default();
        let mut lag = Duration::ZERO;
        let errors_before = match self {
            Publisher::SocketIo { errors, .. } => errors.load(Ordering::Relaxed),
            Publisher::Herald(_) => 0,
        };
        for k in 0..plan.count {
            let due = start + Duration::from_secs_f64(k as f64 / plan.rate);
            tokio::time::sleep_until(due.into()).await;
            lag = lag.max(Instant::now().saturating_duration_since(due));
            let (to_user, team, seq) = match &plan.audience {
                Audience::Users(n) => (Some(format!("u{}", k % n)), None, k / n),
                Audience::Team(t) => (None, Some(t.clone()), k),
                Audience::One(u) => (Some(format!("u{u}")), None, k),
            };
            // t0 is the scheduled time: a loop that lags shows up in the latency, not hidden by it.
            let scheduled_us = start_us + (k as f64 / plan.rate * 1e6) as u64;
            let stamp = Stamp { sent_us: scheduled_us, p: plan.phase, seq };
            let id = format!("bench-p{}-{k}", plan.phase);
            match self {
                Publisher::Herald(p) => {
                    let request = NotificationRequest {
                        id,
                        recipients: Recipients {
                            users: to_user.into_iter().collect(),
                            teams: team.into_iter().collect(),
                        },
                        kind: "bench".into(),
                        title: "bench".into(),
                        body: None,
                        data: Some(serde_json::to_value(stamp)?),
                        created_at: None,
                    };
                    let p = (**p).clone();
                    let permit = in_flight.clone().acquire_owned().await.expect("never closed");
                    tasks.spawn(async move {
                        let acked = p.publish("bench", &request).await.ok().map(|a| a.sequence);
                        drop(permit);
                        (k, acked)
                    });
                    // Reap finished publishes as we go, so the set stays small.
                    while let Some(done) = tasks.try_join_next() {
                        sent.acked(done);
                    }
                }
                Publisher::SocketIo { redis, .. } => {
                    let to = match (to_user, team) {
                        (Some(u), _) => format!("user:{u}"),
                        (None, t) => format!("team:{}", t.unwrap_or_default()),
                    };
                    let entry = json!({
                        "to": to,
                        "notification": {"id": id, "kind": "bench", "title": "bench", "data": stamp},
                    })
                    .to_string();
                    redis.lock().await.write_all(&resp_publish(INGEST_CHANNEL, &entry)).await?;
                }
            }
            sent.count += 1;
        }
        while let Some(done) = tasks.join_next().await {
            sent.acked(done);
        }
        if let Publisher::SocketIo { errors, .. } = self {
            // Give the last replies a moment to come back before counting errors.
            tokio::time::sleep(Duration::from_millis(100)).await;
            sent.failed += errors.load(Ordering::Relaxed) - errors_before;
        }
        sent.secs = start.elapsed().as_secs_f64();
        sent.max_lag_ms = lag.as_secs_f64() * 1000.0;
        Ok(sent)
    }
}

impl Sent {
    /// Counts one finished Herald publish: `(k, Some(HERALD_IN sequence))` when acknowledged.
    fn acked(&mut self, done: Result<(u64, Option<u64>), tokio::task::JoinError>) {
        match done {
            Ok((_, Some(seq))) => self.last_sequence = self.last_sequence.max(seq),
            Ok((k, None)) => {
                self.failed += 1;
                self.unacked.push(k);
            }
            // A publish task that panicked: its index is unknown, so it cannot be excused.
            Err(_) => self.failed += 1,
        }
    }
}

/// `PUBLISH channel message` in RESP.
fn resp_publish(channel: &str, message: &str) -> Vec<u8> {
    format!("*3\r\n$7\r\nPUBLISH\r\n${}\r\n{channel}\r\n${}\r\n{message}\r\n", channel.len(), message.len())
        .into_bytes()
}

#[cfg(test)]
mod tests {
    #[test]
    fn resp_counts_bytes_not_chars() {
        let r = String::from_utf8(super::resp_publish("c", "é")).unwrap();
        assert_eq!(r, "*3\r\n$7\r\nPUBLISH\r\n$1\r\nc\r\n$2\r\né\r\n");
    }
}
