//! The systems under test, started on loopback for one bench run and stopped on drop: Herald
//! (nats-server, the local DynamoDB server, the functions runner and gateway processes, all release binaries)
//! and the Socket.IO baseline (redis-server, Node gateways and a Node publisher).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use herald_core::config::DynamoConfig;
use herald_servers::{LocalDynamo, NatsServer, free_port, http_get, repo_root};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

use crate::inbox::InboxCount;
use crate::publish::Publisher;
use crate::wire::System;

/// What the systems need from the bench's configuration.
#[derive(Debug, Clone)]
pub struct SutConfig {
    pub gateways: usize,
    pub secret: String,
    pub audience: String,
    /// Socket.IO: users `u0 .. u<size>` share the fan-out team's room.
    pub big_team_size: u64,
    /// Herald: functions runner processes sharing the deliver consumer.
    pub runners: usize,
}

/// One server process of ours.
pub struct Server {
    pub addr: String,
    child: Child,
}

impl Server {
    pub fn pid(&self) -> u32 {
        self.child.id().unwrap_or(0)
    }

    /// SIGKILL, as a crash would: every socket of the process is cut at once.
    pub async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }

    /// `None` while the process runs; how it ended otherwise.
    pub fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(None) => None,
            Ok(Some(status)) => Some(status.to_string()),
            Err(e) => Some(format!("unknown: {e}")),
        }
    }
}

/// Gateway settings every scenario but `hostile` runs with: no per-IP limits, a long hello
/// deadline, a short drain.
const LIFTED_LIMITS: &[(&str, &str)] = &[
    ("HERALD_CONNECTS_PER_IP_PER_SEC", "1000000"),
    ("HERALD_CONNECT_BURST", "1000000"),
    ("HERALD_FRAMES_PER_IP_PER_SEC", "1000000"),
    ("HERALD_FRAME_BURST", "1000000"),
    ("HERALD_HELLO_TIMEOUT_SECONDS", "30"),
    ("HERALD_DRAIN_SECONDS", "1"),
];

/// Starts one herald-gateway on fresh loopback ports and waits until it is ready; returns it
/// and its internal plane's address.
async fn start_gateway(common: &[(&str, String)], extra: &[(&str, &str)]) -> anyhow::Result<(Server, String)> {
    let addr = format!("127.0.0.1:{}", free_port());
    let admin = format!("127.0.0.1:{}", free_port());
    let child = Command::new(bin("herald-gateway")?)
        .envs(common.iter().cloned())
        .envs(extra.iter().copied())
        .env("HERALD_LISTEN", &addr)
        .env("HERALD_ADMIN_LISTEN", &admin)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("starting herald-gateway")?;
    wait_ready(&addr, "herald-gateway").await?;
    Ok((Server { addr, child }, admin))
}

#[allow(dead_code)] // the guards are kept only to be dropped (which stops them)
enum Guards {
    Herald { nats: NatsServer, dynamo: LocalDynamo, runners: Vec<Child> },
    SocketIo { redis: Box<Child>, publisher: Box<Child> },
}

pub struct Sut {
    pub system: System,
    pub gateways: Vec<Server>,
    pub publisher: Publisher,
    /// Herald only: what the bench reads from and writes to the system directly.
    pub herald: Option<HeraldParts>,
    _guards: Guards,
}

/// Herald's parts the scenarios look into.
pub struct HeraldParts {
    /// Team memberships live in DynamoDB.
    pub store: herald_store::Store,
    /// Counts what was stored.
    pub stored: InboxCount,
    /// The runners' operations addresses (`/metrics`).
    pub runner_ops: Vec<String>,
    /// The gateways' internal planes (`/metrics`; never on the public port).
    pub gateway_ops: Vec<String>,
    /// Where the runners' progress is read (the deliver consumer's ack floor).
    pub js: async_nats::jetstream::Context,
    /// What every gateway of this system is started with (more can be added mid-run).
    gateway_env: Vec<(&'static str, String)>,
}

impl HeraldParts {
    /// Every runner's and gateway's operations address.
    pub fn ops(&self, _gateways: &[Server]) -> Vec<String> {
        self.runner_ops.iter().chain(&self.gateway_ops).cloned().collect()
    }

    /// Waits until the runners have acknowledged every `HERALD_IN` request up to `sequence`
    /// (so each was stored and published for every recipient); false after `within`.
    pub async fn acked_through(&self, sequence: u64, within: Duration) -> anyhow::Result<bool> {
        let deadline = Instant::now() + within;
        let stream = self.js.get_stream(herald_core::subject::IN_STREAM).await?;
        loop {
            let mut consumer = stream
                .get_consumer::<async_nats::jetstream::consumer::pull::Config>(DELIVER_CONSUMER)
                .await
                .map_err(|e| anyhow::anyhow!("the deliver consumer: {e}"))?;
            let info = consumer.info().await.map_err(|e| anyhow::anyhow!("consumer info: {e}"))?;
            if info.ack_floor.stream_sequence >= sequence {
                return Ok(true);
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The runner's durable consumer on `HERALD_IN` (`HERALD_DELIVER_CONSUMER`'s default).
const DELIVER_CONSUMER: &str = "deliver";

fn bin(name: &str) -> anyhow::Result<PathBuf> {
    let path = std::env::current_exe()?.parent().context("the binary's folder")?.join(name);
    if !path.exists() {
        bail!("{} is missing: scripts/bench builds it (cargo build --release -p {name})", path.display());
    }
    Ok(path)
}

async fn wait_ready(addr: &str, what: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if http_get(&format!("http://{addr}/readyz")).await.is_ok_and(|(s, _)| s == 200) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("{what} at {addr} not ready within 30 s")
}

async fn wait_port(addr: &str, what: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if TcpStream::connect(addr).await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("{what} did not listen on {addr} within 30 s")
}

/// Waits for a Node process's `ready` line, then keeps draining its stdout.
async fn wait_ready_line(child: &mut Child, what: &str) -> anyhow::Result<()> {
    let stdout = child.stdout.take().context("node stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .with_context(|| format!("{what} not ready within 30 s"))??
        .with_context(|| format!("{what} exited before it was ready"))?;
    if !line.starts_with("ready") {
        bail!("{what} said {line:?} instead of ready");
    }
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok(())
}

impl Sut {
    /// Herald: starts `n` more gateways with the defaults plus `extra` settings, appended to
    /// `gateways` (and their internal planes to `gateway_ops`); returns the first one's index.
    pub async fn add_gateways(&mut self, n: usize, extra: &[(&str, &str)]) -> anyhow::Result<usize> {
        let first = self.gateways.len();
        let h = self.herald.as_mut().context("only Herald's gateways can be added")?;
        for _ in 0..n {
            let (server, admin) = start_gateway(&h.gateway_env, extra).await?;
            self.gateways.push(server);
            h.gateway_ops.push(admin);
        }
        Ok(first)
    }

    /// Herald: stops the gateways from index `first` on (those [`Sut::add_gateways`] added).
    pub async fn remove_gateways(&mut self, first: usize) {
        for mut g in self.gateways.drain(first..) {
            g.kill().await;
        }
        if let Some(h) = self.herald.as_mut() {
            h.gateway_ops.truncate(first);
        }
    }

    pub async fn start(system: System, cfg: &SutConfig) -> anyhow::Result<Self> {
        match system {
            System::Herald => Self::herald(cfg).await,
            System::SocketIo => Self::socketio(cfg).await,
        }
    }

    async fn herald(cfg: &SutConfig) -> anyhow::Result<Self> {
        let nats = NatsServer::start()?;
        let dynamo = LocalDynamo::start()?;
        let common = vec![
            ("HERALD_NATS_URL", nats.url()),
            ("HERALD_DYNAMODB_ENDPOINT", dynamo.endpoint()),
            ("HERALD_JWT_SECRET", cfg.secret.clone()),
            ("HERALD_JWT_AUDIENCE", cfg.audience.clone()),
            ("HERALD_LOG", std::env::var("HERALD_BENCH_LOG").unwrap_or_else(|_| "warn".into())),
        ];
        let (mut runners, mut runner_ops) = (Vec::new(), Vec::new());
        for _ in 0..cfg.runners.max(1) {
            let ops = format!("127.0.0.1:{}", free_port());
            let runner = Command::new(bin("herald-functions")?)
                .envs(common.iter().cloned())
                .env("HERALD_FUNCTIONS_LISTEN", &ops)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .context("starting herald-functions")?;
            wait_ready(&ops, "herald-functions").await?;
            runners.push(runner);
            runner_ops.push(ops);
        }
        let (mut gateways, mut gateway_ops) = (Vec::new(), Vec::new());
        for _ in 0..cfg.gateways {
            // The bench's clients come from a few hundred loopback addresses at thousands per
            // second: lift the per-IP limits that protect a real gateway from one host.
            let (server, admin) = start_gateway(&common, LIFTED_LIMITS).await?;
            gateways.push(server);
            gateway_ops.push(admin);
        }
        let publisher = Publisher::herald(&nats.url()).await?;
        let dyn_config = DynamoConfig {
            endpoint: Some(dynamo.endpoint()),
            region: "us-east-1".into(),
            table_prefix: "herald_".into(),
        };
        let client = herald_store::client(&dyn_config).await;
        let herald = HeraldParts {
            store: herald_store::Store::new(client.clone(), &dyn_config),
            stored: InboxCount::new(client, &dyn_config.table_prefix).await?,
            runner_ops,
            gateway_ops,
            js: async_nats::jetstream::new(async_nats::connect(nats.url()).await?),
            gateway_env: common,
        };
        Ok(Sut {
            system: System::Herald,
            gateways,
            publisher,
            herald: Some(herald),
            _guards: Guards::Herald { nats, dynamo, runners },
        })
    }

    async fn socketio(cfg: &SutConfig) -> anyhow::Result<Self> {
        let redis_addr = format!("127.0.0.1:{}", free_port());
        let port = redis_addr.rsplit(':').next().expect("a port").to_owned();
        let redis = Command::new("redis-server")
            .args(["--port", &port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--protected-mode", "no", "--loglevel", "warning"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("starting redis-server (bench/baseline-socketio/install installs it)")?;
        wait_port(&redis_addr, "redis-server").await?;
        let script = repo_root().join("bench/baseline-socketio/server.js");
        let node = |role: &str, port: Option<u16>| {
            let mut c = Command::new("node");
            c.arg(&script)
                .env("ROLE", role)
                .env("REDIS_URL", format!("redis://{redis_addr}"))
                .env("JWT_SECRET", &cfg.secret)
                .env("JWT_AUDIENCE", &cfg.audience)
                .env("BIG_TEAM_SIZE", cfg.big_team_size.to_string())
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .kill_on_drop(true);
            if let Some(p) = port {
                c.env("PORT", p.to_string());
            }
            c
        };
        let mut gateways = Vec::new();
        for _ in 0..cfg.gateways {
            let port = free_port();
            let mut child = node("gateway", Some(port)).spawn().context("starting node (is Node.js installed?)")?;
            wait_ready_line(&mut child, "socket.io gateway").await?;
            gateways.push(Server { addr: format!("127.0.0.1:{port}"), child });
        }
        let mut publisher = node("publisher", None).spawn().context("starting the socket.io publisher")?;
        wait_ready_line(&mut publisher, "socket.io publisher").await?;
        Ok(Sut {
            system: System::SocketIo,
            gateways,
            publisher: Publisher::socketio(&redis_addr).await?,
            herald: None,
            _guards: Guards::SocketIo { redis: Box::new(redis), publisher: Box::new(publisher) },
        })
    }
}
