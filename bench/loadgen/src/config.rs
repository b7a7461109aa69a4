//! The bench's configuration: one typed struct, from the full-run defaults or the smoke preset,
//! then from flags (every size can be set, so each scenario runs alone at any scale).

use std::path::PathBuf;

use anyhow::{Context, bail};
use serde::Serialize;

use crate::wire::System;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scenario {
    Idle,
    Latency,
    /// Herald only: the highest rate whose p99 stays within a bound (a step search).
    Maxrate,
    /// Herald only: recipient deliveries per second through the runners.
    Throughput,
    Fanout,
    /// Herald only: good clients' latency, quiet and then beside thousands of hostile sockets.
    Hostile,
    Storm,
}

#[derive(Debug, Clone, Serialize)]
pub struct BenchConfig {
    pub smoke: bool,
    pub systems: Vec<System>,
    pub scenarios: Vec<Scenario>,
    /// Idle: gateway processes and connections held by each.
    pub gateways: usize,
    pub per_gateway: u64,
    /// Seconds over which CPU at rest is sampled.
    pub rest_secs: f64,
    /// Latency: connected users (over two gateways), rates (notifications/s), seconds per rate.
    pub users: u64,
    pub rates: Vec<f64>,
    pub phase_secs: f64,
    /// How long to wait for the tail of a phase before what is missing counts as lost.
    pub drain_secs: f64,
    /// Max-rate search: the first rate, the floor and the cap, the p99 bound (ms) and seconds
    /// per step.
    pub search_from: f64,
    pub search_min: f64,
    pub search_max: f64,
    pub search_p99_ms: f64,
    pub step_secs: f64,
    /// Throughput: notifications (one recipient each) published at once to the latency users.
    pub throughput_count: u64,
    /// Herald: functions runner processes.
    pub runners: usize,
    /// Fan-out: team size and notifications sent to it, one after the other.
    pub members: u64,
    pub fanout_notifications: u64,
    /// Reconnect storm: clients on the gateway that is killed, the rate that keeps flowing,
    /// how long it flows, and when (seconds into it) the gateway dies.
    pub storm_clients: u64,
    pub storm_rate: f64,
    pub storm_secs: f64,
    pub storm_cut_at: f64,
    /// Hostile load (Herald only): good clients, and the hostile sockets kept in play beside them
    /// on their own gateways, started with the gateway's production limits.
    pub good_clients: u64,
    pub hostile_connections: u64,
    pub hostile_gateways: usize,
    /// Notifications/s to the good clients, and seconds, in each phase (quiet, then hostile).
    pub hostile_rate: f64,
    pub hostile_secs: f64,
    /// A hostile socket re-opens this long (±50 %) after it ends.
    pub hostile_reopen_ms: u64,
    /// How long a hostile socket waits for the gateway to close it before giving up.
    pub hostile_hold_secs: f64,
    /// Source addresses: good clients and hostile sockets per address.
    pub good_per_source: u64,
    pub hostile_per_source: u64,
    /// The hostile gateways' hello deadline (`HERALD_HELLO_TIMEOUT_SECONDS`; production: 10).
    pub hostile_hello_secs: f64,
    pub out: PathBuf,
    #[serde(skip)]
    pub secret: String,
    pub audience: String,
}

impl BenchConfig {
    fn full() -> Self {
        BenchConfig {
            smoke: false,
            systems: vec![System::Herald, System::SocketIo],
            scenarios: vec![
                Scenario::Idle,
                Scenario::Latency,
                Scenario::Maxrate,
                Scenario::Throughput,
                Scenario::Fanout,
                Scenario::Hostile,
                Scenario::Storm,
            ],
            gateways: 5,
            per_gateway: 15_000,
            rest_secs: 10.0,
            users: 20_000,
            rates: vec![500.0, 2000.0, 5000.0],
            phase_secs: 10.0,
            drain_secs: 60.0,
            search_from: 500.0,
            search_min: 50.0,
            search_max: 20_000.0,
            search_p99_ms: 50.0,
            step_secs: 10.0,
            throughput_count: 20_000,
            runners: 1,
            members: 10_000,
            fanout_notifications: 3,
            storm_clients: 15_000,
            storm_rate: 1000.0,
            storm_secs: 12.0,
            storm_cut_at: 3.0,
            good_clients: 1000,
            hostile_connections: 10_000,
            hostile_gateways: 2,
            hostile_rate: 200.0,
            hostile_secs: 30.0,
            hostile_reopen_ms: 250,
            hostile_hold_secs: 120.0,
            good_per_source: 10,
            hostile_per_source: 20,
            hostile_hello_secs: 10.0,
            out: herald_servers::repo_root().join("bench/results"),
            secret: "bench-secret-not-for-production-use".into(),
            audience: "herald".into(),
        }
    }

    fn smoke() -> Self {
        BenchConfig {
            smoke: true,
            gateways: 1,
            per_gateway: 500,
            rest_secs: 2.0,
            users: 500,
            rates: vec![200.0],
            phase_secs: 2.0,
            drain_secs: 15.0,
            // One step: the search's code runs, its figure is meaningless at this size.
            search_from: 100.0,
            search_min: 100.0,
            search_max: 100.0,
            step_secs: 1.0,
            throughput_count: 500,
            members: 500,
            fanout_notifications: 1,
            storm_clients: 500,
            storm_rate: 200.0,
            storm_secs: 4.0,
            storm_cut_at: 1.0,
            good_clients: 50,
            hostile_connections: 300,
            hostile_rate: 100.0,
            hostile_secs: 3.0,
            // Short enough that the silent sockets meet it within the smoke's few seconds.
            hostile_hello_secs: 1.0,
            ..Self::full()
        }
    }

    /// Issue 8's figures: Herald alone, 2,000 users, 20,000 notifications at 2,000/s, the
    /// max-rate search, runner throughput and a 10,000-member team.
    fn pipeline() -> Self {
        BenchConfig {
            systems: vec![System::Herald],
            scenarios: vec![Scenario::Latency, Scenario::Maxrate, Scenario::Throughput, Scenario::Fanout],
            users: 2000,
            rates: vec![2000.0],
            fanout_notifications: 1,
            ..Self::full()
        }
    }

    /// Parses `bench` flags; `--smoke` or `--pipeline` first picks a preset the other flags adjust.
    pub fn from_args(args: &[String]) -> anyhow::Result<Self> {
        let preset = |p: &str| args.iter().any(|a| a == p);
        let mut c = match (preset("--smoke"), preset("--pipeline")) {
            (true, true) => bail!("--smoke and --pipeline are two presets; pick one"),
            (true, false) => Self::smoke(),
            (false, true) => Self::pipeline(),
            (false, false) => Self::full(),
        };
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            if flag == "--smoke" || flag == "--pipeline" {
                continue;
            }
            let v = it.next().with_context(|| format!("{flag} needs a value"))?;
            let num = |v: &str| v.parse::<f64>().with_context(|| format!("{flag}: {v:?} is not a number"));
            match flag.as_str() {
                "--systems" => c.systems = v.split(',').map(parse_system).collect::<anyhow::Result<_>>()?,
                "--scenarios" => c.scenarios = v.split(',').map(parse_scenario).collect::<anyhow::Result<_>>()?,
                "--gateways" => c.gateways = num(v)? as usize,
                "--per-gateway" => c.per_gateway = num(v)? as u64,
                "--rest-secs" => c.rest_secs = num(v)?,
                "--users" => c.users = num(v)? as u64,
                "--rates" => c.rates = v.split(',').map(num).collect::<anyhow::Result<_>>()?,
                "--phase-secs" => c.phase_secs = num(v)?,
                "--drain-secs" => c.drain_secs = num(v)?,
                "--search-from" => c.search_from = num(v)?,
                "--search-min" => c.search_min = num(v)?,
                "--search-max" => c.search_max = num(v)?,
                "--search-p99-ms" => c.search_p99_ms = num(v)?,
                "--step-secs" => c.step_secs = num(v)?,
                "--throughput-count" => c.throughput_count = num(v)? as u64,
                "--runners" => c.runners = num(v)? as usize,
                "--members" => c.members = num(v)? as u64,
                "--fanout-notifications" => c.fanout_notifications = num(v)? as u64,
                "--storm-clients" => c.storm_clients = num(v)? as u64,
                "--storm-rate" => c.storm_rate = num(v)?,
                "--storm-secs" => c.storm_secs = num(v)?,
                "--storm-cut-at" => c.storm_cut_at = num(v)?,
                "--good-clients" => c.good_clients = num(v)? as u64,
                "--hostile-connections" => c.hostile_connections = num(v)? as u64,
                "--hostile-gateways" => c.hostile_gateways = num(v)? as usize,
                "--hostile-rate" => c.hostile_rate = num(v)?,
                "--hostile-secs" => c.hostile_secs = num(v)?,
                "--hostile-reopen-ms" => c.hostile_reopen_ms = num(v)? as u64,
                "--hostile-hold-secs" => c.hostile_hold_secs = num(v)?,
                "--good-per-source" => c.good_per_source = num(v)? as u64,
                "--hostile-per-source" => c.hostile_per_source = num(v)? as u64,
                "--hostile-hello-secs" => c.hostile_hello_secs = num(v)?,
                "--out" => c.out = PathBuf::from(v),
                _ => bail!("unknown flag {flag}; see docs/benchmarks.md"),
            }
        }
        if c.gateways == 0 || c.rates.iter().any(|r| *r <= 0.0) || c.storm_cut_at >= c.storm_secs {
            bail!("need at least one gateway, positive rates, and --storm-cut-at < --storm-secs");
        }
        if c.good_clients == 0 || c.hostile_gateways == 0 || c.hostile_rate <= 0.0 || c.hostile_secs <= 0.0 {
            bail!("need --good-clients, --hostile-gateways, --hostile-rate and --hostile-secs above 0");
        }
        if c.good_per_source == 0 || c.hostile_per_source == 0 {
            bail!("--good-per-source and --hostile-per-source must be at least 1");
        }
        if c.runners == 0 || c.search_min <= 0.0 || c.search_from < c.search_min || c.search_max < c.search_from {
            bail!("need at least one runner and 0 < --search-min <= --search-from <= --search-max");
        }
        Ok(c)
    }

    /// Gateways each system starts: the idle fleet, and at least two (latency spreads over
    /// two; the storm kills one and its clients come back on the other).
    pub fn fleet_size(&self) -> usize {
        self.gateways.max(2)
    }
}

fn parse_system(s: &str) -> anyhow::Result<System> {
    match s {
        "herald" => Ok(System::Herald),
        "socketio" => Ok(System::SocketIo),
        _ => bail!("unknown system {s:?} (herald, socketio)"),
    }
}

fn parse_scenario(s: &str) -> anyhow::Result<Scenario> {
    match s {
        "idle" => Ok(Scenario::Idle),
        "latency" => Ok(Scenario::Latency),
        "maxrate" => Ok(Scenario::Maxrate),
        "throughput" => Ok(Scenario::Throughput),
        "fanout" => Ok(Scenario::Fanout),
        "hostile" => Ok(Scenario::Hostile),
        "storm" => Ok(Scenario::Storm),
        _ => bail!("unknown scenario {s:?} (idle, latency, maxrate, throughput, fanout, hostile, storm)"),
    }
}
