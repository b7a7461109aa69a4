//! What the orchestrator and its worker processes say to each other: one JSON object per line,
//! the worker's spec and commands on its stdin, its events and replies on its stdout.

use serde::{Deserialize, Serialize};

/// The system a worker's sockets speak to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum System {
    Herald,
    SocketIo,
}

impl System {
    pub fn label(self) -> &'static str {
        match self {
            System::Herald => "Herald",
            System::SocketIo => "Socket.IO",
        }
    }
}

/// Everything one worker process needs: which users it plays and where they connect.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerSpec {
    pub worker: usize,
    pub system: System,
    /// Gateways (`host:port`); user `g` first connects to `targets[g % len]`.
    pub targets: Vec<String>,
    /// Where a dropped user reconnects: `reconnect_targets[(g + attempt) % len]`.
    pub reconnect_targets: Vec<String>,
    /// Global user indexes `first_user .. first_user + users`; user `g` is `u<g>`.
    pub first_user: u64,
    pub users: u64,
    pub secret: String,
    pub audience: String,
    /// Source addresses are `127.<source_net>.<a>.<b>`, a few hundred sockets each, so that no
    /// address runs out of ephemeral ports and per-address limits see many clients.
    pub source_net: u8,
    /// Handshakes in flight at once in this worker.
    pub connect_concurrency: usize,
    /// Whether a dropped socket reconnects (with its cursor, for Herald).
    pub reconnect: bool,
    /// Sockets per source address.
    #[serde(default = "default_per_source")]
    pub per_source: u64,
    /// When set, the worker plays `users` hostile sockets instead of users.
    #[serde(default)]
    pub hostile: Option<crate::hostile::HostileSpec>,
}

/// Each address has ~28k ephemeral ports: a few hundred sockets each leaves room for reconnects.
pub fn default_per_source() -> u64 {
    250
}

/// Which notifications of a phase each user should have received.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Expected {
    /// Notification `k` of `count` went to user `k % users` with per-user sequence `k / users`.
    Direct { count: u64, users: u64 },
    /// `count` notifications, sequences `0..count`, went to every user below `members`.
    Team { count: u64, members: u64 },
    /// `count` notifications, sequences `0..count`, went to user `user` alone.
    One { count: u64, user: u64 },
}

impl Expected {
    /// How many notifications user `g` should have (sequences `0..n`).
    pub fn for_user(self, g: u64) -> u64 {
        match self {
            Expected::Direct { count, users } if g < users => count / users + u64::from(g < count % users),
            Expected::Direct { .. } => 0,
            Expected::Team { count, members } => {
                if g < members {
                    count
                } else {
                    0
                }
            }
            Expected::One { count, user } => {
                if g == user {
                    count
                } else {
                    0
                }
            }
        }
    }

    /// User `g`'s sequences among `unacked` (the plan's indexes `k` that JetStream never
    /// acknowledged): the receiver is not owed them.
    pub fn unacked_for(self, g: u64, unacked: &[u64]) -> Vec<u64> {
        match self {
            Expected::Direct { users, .. } => unacked.iter().filter(|&&k| k % users == g).map(|k| k / users).collect(),
            Expected::Team { .. } | Expected::One { .. } if self.for_user(g) > 0 => unacked.to_vec(),
            _ => Vec::new(),
        }
    }
}

/// Orchestrator → worker, after the spec line.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "lowercase")]
pub enum Command {
    /// Count one phase against what was sent and acknowledged (`unacked`: the plan's indexes
    /// whose publish JetStream never acknowledged).
    Account {
        phase: u32,
        expected: Expected,
        #[serde(default)]
        unacked: Vec<u64>,
    },
    /// Connection and reconnection state.
    Status,
    /// A hostile worker's tally of what its sockets got.
    Hostile,
    /// Close every socket and exit.
    Stop,
}

/// Worker → orchestrator.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "ev", rename_all = "lowercase")]
pub enum Event {
    /// Once a second while the worker runs.
    Progress {
        connected: u64,
        received: u64,
        reconnects: u64,
    },
    /// Every user has had its first connection attempt settled.
    Connected {
        ok: u64,
        failed: u64,
        secs: f64,
        first_error: Option<String>,
    },
    Account(PhaseReport),
    Status(StatusReport),
    Hostile(crate::hostile::HostileReport),
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PhaseReport {
    pub expected: u64,
    /// Distinct expected notifications that arrived.
    pub received: u64,
    pub lost: u64,
    /// Arrivals of a sequence already seen.
    pub duplicated: u64,
    /// Arrivals of a sequence lower than one already seen, for the same user.
    pub out_of_order: u64,
    /// Publish→receive latency of each first arrival, µs, as a base64 V2 HDR histogram.
    pub histogram: String,
    /// Unix µs of the first and the last arrival (0: none).
    pub first_us: u64,
    pub last_us: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StatusReport {
    /// Sockets open and authenticated now.
    pub connected: u64,
    /// Of those, the ones whose session start is over (Herald: the first `unread` arrived;
    /// Socket.IO: connected), so the servers are at rest with them.
    pub started: u64,
    /// Sockets that were dropped (by the server or the network) since the start.
    pub drops: u64,
    /// Reconnections that reached `welcome` (Herald) or the socket.io `CONNECT` ack.
    pub back: u64,
    /// Reconnections whose replay finished (`replayed`; for Socket.IO, the same as `back`).
    pub replayed: u64,
    /// Herald reconnections that had no cursor to resume from (the client lost its place:
    /// what was sent while it was away cannot be replayed), and `reset` frames received.
    pub without_cursor: u64,
    pub resets: u64,
    pub last_back_us: u64,
    pub last_replayed_us: u64,
}

/// The payload every bench notification carries in its `data`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Stamp {
    /// Unix µs at which the open-loop schedule meant it to leave (not when the publish call
    /// actually started: a publisher that falls behind must not hide its lag from the latency).
    pub sent_us: u64,
    /// The phase and the per-recipient sequence within it.
    pub p: u32,
    pub seq: u64,
}

pub fn now_us() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0)
}
