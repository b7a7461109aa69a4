//! The systems under test, started on loopback for one bench run and stopped on drop: Herald
//! (nats-server, dynalite, the functions runner and gateway processes, all release binaries)
//! and the Socket.IO baseline (redis-server, Node gateways and a Node publisher).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use herald_core::config::DynamoConfig;
use herald_functions::dynamo::{self, DynamoInbox};
use herald_tests::servers::{free_port, repo_root};
use herald_tests::stack::http_get;
use herald_tests::{Dynalite, NatsServer};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

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
}

#[allow(dead_code)] // the guards are kept only to be dropped (which stops them)
enum Guards {
    Herald { nats: NatsServer, dynalite: Dynalite, runner: Child },
    SocketIo { redis: Child, publisher: Child },
}

pub struct Sut {
    pub system: System,
    pub gateways: Vec<Server>,
    pub publisher: Publisher,
    /// Herald's team memberships live in DynamoDB.
    pub inbox: Option<DynamoInbox>,
    _guards: Guards,
}

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
    pub async fn start(system: System, cfg: &SutConfig) -> anyhow::Result<Self> {
        match system {
            System::Herald => Self::herald(cfg).await,
            System::SocketIo => Self::socketio(cfg).await,
        }
    }

    async fn herald(cfg: &SutConfig) -> anyhow::Result<Self> {
        let nats = NatsServer::start()?;
        let dynalite = Dynalite::start()?;
        let common = [
            ("HERALD_NATS_URL", nats.url()),
            ("HERALD_DYNAMODB_ENDPOINT", dynalite.endpoint()),
            ("HERALD_JWT_SECRET", cfg.secret.clone()),
            ("HERALD_JWT_AUDIENCE", cfg.audience.clone()),
            ("HERALD_LOG", std::env::var("HERALD_BENCH_LOG").unwrap_or_else(|_| "warn".into())),
        ];
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
        let mut gateways = Vec::new();
        for _ in 0..cfg.gateways {
            let addr = format!("127.0.0.1:{}", free_port());
            let child = Command::new(bin("herald-gateway")?)
                .envs(common.iter().cloned())
                .env("HERALD_LISTEN", &addr)
                // The bench's clients come from a few hundred loopback addresses at thousands
                // per second: lift the per-IP limits that protect a real gateway from one host.
                .env("HERALD_CONNECTS_PER_IP_PER_SEC", "1000000")
                .env("HERALD_CONNECT_BURST", "1000000")
                .env("HERALD_FRAMES_PER_IP_PER_SEC", "1000000")
                .env("HERALD_FRAME_BURST", "1000000")
                .env("HERALD_HELLO_TIMEOUT_SECONDS", "30")
                .env("HERALD_DRAIN_SECONDS", "1")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .context("starting herald-gateway")?;
            wait_ready(&addr, "herald-gateway").await?;
            gateways.push(Server { addr, child });
        }
        let publisher = Publisher::herald(&nats.url()).await?;
        let dyn_config = DynamoConfig {
            endpoint: Some(dynalite.endpoint()),
            region: "us-east-1".into(),
            table_prefix: "herald_".into(),
        };
        let inbox = DynamoInbox::new(dynamo::client(&dyn_config).await, &dyn_config);
        Ok(Sut {
            system: System::Herald,
            gateways,
            publisher,
            inbox: Some(inbox),
            _guards: Guards::Herald { nats, dynalite, runner },
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
            inbox: None,
            _guards: Guards::SocketIo { redis, publisher },
        })
    }
}
