//! A run's results as they are written to JSON (`bench/results/<unix time>.json`): what was
//! measured for each system and scenario, plus the machine and the configuration.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::hostile::Outcome;
use crate::opsmetrics::Stage;
use crate::publish::Sent;
use crate::wire::{PhaseReport, System};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Latency {
    pub count: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    /// (percentile, ms) from 0 to 99.99, log-spaced toward the tail, for the plot.
    pub curve: Vec<(f64, f64)>,
}

impl Latency {
    pub fn from_hist(h: &Histogram<u64>) -> Self {
        let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        // 1 - 10^(-x/10) for x in 0..=40: ten points per "nine".
        let curve = (0..=40)
            .map(|i| {
                let q = 1.0 - 10f64.powf(-(i as f64) / 10.0);
                (q * 100.0, ms(q))
            })
            .collect();
        Latency {
            count: h.len(),
            p50_ms: ms(0.5),
            p90_ms: ms(0.9),
            p99_ms: ms(0.99),
            p999_ms: ms(0.999),
            max_ms: h.max() as f64 / 1000.0,
            curve,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Loss {
    pub expected: u64,
    pub received: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub out_of_order: u64,
}

impl From<&PhaseReport> for Loss {
    fn from(r: &PhaseReport) -> Self {
        Loss {
            expected: r.expected,
            received: r.received,
            lost: r.lost,
            duplicated: r.duplicated,
            out_of_order: r.out_of_order,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Idle {
    pub gateways: usize,
    pub connections: u64,
    pub failed: u64,
    pub first_error: Option<String>,
    /// Wall time from launching the clients to every first connection settled.
    pub connect_secs: f64,
    pub connects_per_sec: f64,
    /// CPU the gateways spent during the connect phase, and connects+auths per CPU second.
    pub connect_cpu_secs: f64,
    pub connects_per_cpu_sec: f64,
    pub rss_before: Vec<u64>,
    pub rss_after: Vec<u64>,
    pub connections_per_gateway: Vec<u64>,
    /// (RSS after - RSS before) / connections, bytes, per gateway and mean.
    pub rss_per_conn: Vec<f64>,
    pub rss_per_conn_mean: f64,
    /// CPU at rest, % of one core, per gateway and mean.
    pub cpu_rest_pct: Vec<f64>,
    pub cpu_rest_pct_mean: f64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Rate {
    pub rate: f64,
    pub users: u64,
    pub sent: Sent,
    pub loss: Loss,
    pub latency: Latency,
    /// Sockets dropped during the phase (a slow client is closed with 4029 and comes back).
    pub drops: u64,
    /// Herald: what the runners and gateways said about the phase on `/metrics`.
    pub pipeline: Option<Pipeline>,
}

/// Herald's own account of a phase: what it stored, what it cost, where the time went.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Pipeline {
    /// Inbox items of the phase in the store at its end, against the acknowledged publishes.
    pub stored: Option<u64>,
    pub acked: u64,
    /// DynamoDB write requests per recipient (None: not exported).
    pub writes_per_recipient: Option<f64>,
    pub stages: Vec<Stage>,
}

/// The max-rate search: every step, and the highest rate that held the bound.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct MaxRate {
    pub p99_bound_ms: f64,
    pub steps: Vec<Rate>,
    /// The highest step rate with p99 within the bound and nothing lost or duplicated (None:
    /// not even the first).
    pub sustained: Option<f64>,
}

/// Recipient deliveries per second: a burst of one-recipient notifications through the runners.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Throughput {
    pub runners: usize,
    pub users: u64,
    pub sent: Sent,
    pub loss: Loss,
    /// From the first publish to the runners acknowledging the last request (stored and
    /// published for every recipient), and to the last delivery on a socket.
    pub acked_secs: Option<f64>,
    pub pushed_secs: f64,
    pub stored_and_published_per_sec: Option<f64>,
    pub pushed_per_sec: f64,
    pub pipeline: Pipeline,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FanoutOne {
    pub loss: Loss,
    pub first_delivery_ms: f64,
    pub last_delivery_ms: f64,
    pub deliveries_per_sec: f64,
    /// Herald: from the publish until the runners acknowledged the team request, i.e. every
    /// member's copy stored (None: not within the drain time).
    pub all_stored_ms: Option<f64>,
    /// Herald: the team's items in the store at the end.
    pub stored: Option<u64>,
    /// A one-recipient notification published right after the team one (to a connected user
    /// outside the team): its publish→socket latency, and whether it arrived once.
    pub probe_ms: Option<f64>,
    pub probe_loss: Loss,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Fanout {
    pub members: u64,
    pub notifications: Vec<FanoutOne>,
    pub latency: Latency,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Storm {
    pub clients: u64,
    pub rate: f64,
    pub cut_at_secs: f64,
    pub sent: Sent,
    /// Reconnections that reached welcome, and replays finished, after the cut.
    pub back: u64,
    pub replayed: u64,
    /// Herald reconnections without a cursor, and `reset` frames (each means a lost replay).
    #[serde(default)]
    pub without_cursor: u64,
    #[serde(default)]
    pub resets: u64,
    /// From the kill to the last client back / the last replay finished (None: not all).
    pub all_back_ms: Option<f64>,
    pub all_replayed_ms: Option<f64>,
    /// The warm-up notification each client gets before the cut.
    #[serde(default)]
    pub warmup: Loss,
    pub loss: Loss,
    pub latency: Latency,
}

/// Good clients' latency alone and then beside hostile sockets (Herald only).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Hostile {
    pub good_clients: u64,
    pub hostile_connections: u64,
    pub gateways: usize,
    pub rate: f64,
    pub quiet: Rate,
    pub hostile: Rate,
    /// p99 under attack over quiet p99, against the goal (at most `goal_ratio`).
    pub p99_ratio: f64,
    pub goal_ratio: f64,
    pub goal_met: bool,
    /// From launching the hostile sockets until each had connected once (at most 60 s; the
    /// hostile phase starts then).
    pub ramp_secs: f64,
    /// Hostile sockets open (connected, not yet ended), sampled each second of the hostile
    /// phase: lowest and mean; and sockets opened per second over the phase.
    pub in_play_min: u64,
    pub in_play_mean: f64,
    pub opens_per_sec: f64,
    /// What the hostile sockets got, by `"<kind> <outcome>"`, over the whole attack.
    pub outcomes: BTreeMap<String, Outcome>,
    /// Hostile sockets still open when the attack stopped, by kind (not in `outcomes`).
    pub still_open: BTreeMap<String, u64>,
    /// The hostile gateways' own counters over the attack (deltas): upgrades refused by reason,
    /// refused tokens and handshakes by reason, sessions closed for too many frames.
    pub gateway_refused: BTreeMap<String, f64>,
    pub gateway_auth_failures: BTreeMap<String, f64>,
    pub gateway_rate_limited: f64,
    /// Per hostile gateway: RSS before the attack, at its peak, and after it stopped; open files
    /// at their peak; CPU during the hostile phase (% of a core).
    pub rss_before: Vec<u64>,
    pub rss_peak: Vec<u64>,
    pub rss_after: Vec<u64>,
    pub open_files_peak: Vec<u64>,
    pub cpu_pct: Vec<f64>,
    /// CPU the hostile worker processes used during the hostile phase (% of a core), and the
    /// box's 1-minute load average at its end: the attack runs on the same cores as Herald.
    pub attackers_cpu_pct: f64,
    pub load_1m: f64,
    /// Gateways that exited during the scenario, with how (empty: all ran to the end).
    pub gateway_exits: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SystemResults {
    pub system: System,
    pub idle: Option<Idle>,
    pub latency: Vec<Rate>,
    pub maxrate: Option<MaxRate>,
    pub throughput: Option<Throughput>,
    pub fanout: Option<Fanout>,
    #[serde(default)]
    pub hostile: Option<Hostile>,
    pub storm: Option<Storm>,
    /// Scenarios that failed to run, with why.
    pub errors: Vec<String>,
}

impl SystemResults {
    pub fn new(system: System) -> Self {
        SystemResults {
            system,
            idle: None,
            latency: Vec::new(),
            maxrate: None,
            throughput: None,
            fanout: None,
            hostile: None,
            storm: None,
            errors: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub mem_gib: f64,
    pub kernel: String,
    /// /proc/loadavg (1, 5, 15 min) when the run started and when it ended: other work on the
    /// box shows here.
    #[serde(default)]
    pub load_start: Vec<f64>,
    #[serde(default)]
    pub load_end: Vec<f64>,
    /// The highest 1-minute load average sampled (every 5 s) during the run.
    #[serde(default)]
    pub load_max_1m: f64,
}

impl Machine {
    pub fn probe() -> Self {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        let cpuinfo = read("/proc/cpuinfo");
        let cpu = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name")?.split_once(':').map(|(_, v)| v.trim().to_owned()))
            .unwrap_or_default();
        let mem_kib: f64 = read("/proc/meminfo")
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:")?.trim().strip_suffix("kB")?.trim().parse().ok())
            .unwrap_or(0.0);
        Machine {
            cpu,
            cores: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            mem_gib: mem_kib / 1024.0 / 1024.0,
            kernel: read("/proc/sys/kernel/osrelease").trim().to_owned(),
            load_start: loadavg(),
            load_end: Vec::new(),
            load_max_1m: 0.0,
        }
    }
}

/// The 1, 5 and 15 minute load averages.
pub fn loadavg() -> Vec<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .filter_map(|v| v.parse().ok())
        .collect()
}

impl Machine {
    pub fn describe(&self) -> String {
        format!(
            "{} cores ({}), {:.0} GiB, Linux {}; load average at start {:?}, at end {:?}",
            self.cores, self.cpu, self.mem_gib, self.kernel, self.load_start, self.load_end
        )
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Results {
    pub unix_time: u64,
    pub command: String,
    pub smoke: bool,
    pub machine: Machine,
    pub config: serde_json::Value,
    pub systems: Vec<SystemResults>,
}

impl Results {
    pub fn of(&self, system: System) -> Option<&SystemResults> {
        self.systems.iter().find(|s| s.system == system)
    }
}
