//! A run's results as they are written to JSON (`bench/results/<unix time>.json`): what was
//! measured for each system and scenario, plus the machine and the configuration.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

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
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FanoutOne {
    pub loss: Loss,
    pub first_delivery_ms: f64,
    pub last_delivery_ms: f64,
    pub deliveries_per_sec: f64,
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
    /// From the kill to the last client back / the last replay finished (None: not all).
    pub all_back_ms: Option<f64>,
    pub all_replayed_ms: Option<f64>,
    pub loss: Loss,
    pub latency: Latency,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SystemResults {
    pub system: System,
    pub idle: Option<Idle>,
    pub latency: Vec<Rate>,
    pub fanout: Option<Fanout>,
    pub storm: Option<Storm>,
    /// Scenarios that failed to run, with why.
    pub errors: Vec<String>,
}

impl SystemResults {
    pub fn new(system: System) -> Self {
        SystemResults { system, idle: None, latency: Vec::new(), fanout: None, storm: None, errors: Vec::new() }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub mem_gib: f64,
    pub kernel: String,
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
        }
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
