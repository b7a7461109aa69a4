//! Herald on a 3-node NATS cluster on loopback, as production runs it: every node started from
//! `infra/nats/cluster.conf` itself (R3 streams across three "zones", `sync_interval: always`,
//! the users and permissions of `permissions.conf`), the per-node values from the environment
//! as the deployment passes them, and only the ports overridden on the command line. On top:
//! the local store, function runners and gateways, each gateway talking to its own node.
//! Nodes can be killed (`kill -9`), restarted, frozen (SIGSTOP) and thawed.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use async_nats::jetstream;
use herald_client::Publisher;
use herald_core::config::Vars;
use herald_core::subject;

use crate::servers::{LocalDynamo, NatsRole, PortTaken, free_port, kill, repo_root, signal, tool, wait_for_port};
use crate::stack::{AUDIENCE, SECRET, Task, wait_ready};

const NODES: usize = 3;

fn password(role: NatsRole) -> String {
    format!("{}-chaos-password", role.user())
}

pub struct NatsNode {
    child: Option<Child>,
    pub name: String,
    pub port: u16,
    cluster_port: u16,
    monitor_port: u16,
    store: tempfile::TempDir,
}

pub struct NatsCluster {
    pub nodes: Vec<NatsNode>,
    routes: Vec<String>,
    /// The cluster's CA and every node's certificate (all three name 127.0.0.1), made by the
    /// deployment's own scripts; clients and routes speak TLS as in production.
    pub certs: Certs,
}

/// The CA (`ca.pem`) and the node certificate (`server.pem`, `server-key.pem`) of a test
/// cluster, made by `infra/nats/make-ca.sh` and `node-cert.sh` as the deployment makes them.
pub struct Certs {
    dir: tempfile::TempDir,
    pub tls: herald_core::nats_tls::NatsTls,
}

impl Certs {
    pub fn make() -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let nats = repo_root().join("infra/nats");
        let ca = dir.path().join("ca");
        let run = |cmd: &mut Command| -> anyhow::Result<()> {
            let out =
                cmd.stdout(Stdio::null()).stderr(Stdio::piped()).output().context("running a certificate script")?;
            anyhow::ensure!(
                out.status.success(),
                "certificate script failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            Ok(())
        };
        run(Command::new(nats.join("make-ca.sh")).arg(&ca).arg("herald-test-ca"))?;
        run(Command::new(nats.join("node-cert.sh"))
            .arg(ca.join("ca.pem"))
            .arg(ca.join("ca-key.pem"))
            .arg(dir.path().join("node"))
            .args(["nats.herald.test", "127.0.0.1"]))?;
        let tls = herald_core::nats_tls::NatsTls::from_pem(&std::fs::read(ca.join("ca.pem"))?)?;
        Ok(Certs { dir, tls })
    }

    /// The CA file clients are given (`HERALD_NATS_CA_FILE`).
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("node/ca.pem")
    }

    /// A file of the node certificate: `server.pem`, `server-key.pem`, `ca.pem`.
    pub fn node(&self, file: &str) -> PathBuf {
        self.dir.path().join("node").join(file)
    }
}

impl NatsCluster {
    /// Starts the three nodes; if a port was taken by another process meanwhile, all three again
    /// on new ports.
    pub fn start() -> anyhow::Result<Self> {
        let mut tries = 0;
        loop {
            match Self::start_once() {
                Err(e) if e.downcast_ref::<PortTaken>().is_some() && tries < 5 => tries += 1,
                other => return other,
            }
        }
    }

    fn start_once() -> anyhow::Result<Self> {
        let mut nodes = Vec::new();
        for i in 0..NODES {
            nodes.push(NatsNode {
                child: None,
                name: format!("herald-nats-{}", (b'a' + i as u8) as char),
                port: free_port(),
                cluster_port: free_port(),
                monitor_port: free_port(),
                store: tempfile::tempdir()?,
            });
        }
        let routes = nodes.iter().map(|n| format!("nats-route://127.0.0.1:{}", n.cluster_port)).collect();
        let mut cluster = NatsCluster { nodes, routes, certs: Certs::make()? };
        for i in 0..NODES {
            cluster.spawn(i)?;
        }
        for i in 0..NODES {
            cluster.wait_listening(i)?;
        }
        Ok(cluster)
    }

    fn spawn(&mut self, i: usize) -> anyhow::Result<()> {
        let bin = tool("HERALD_NATS_SERVER", ".tools/py/bin/nats-server")?;
        let conf: PathBuf = repo_root().join("infra/nats/cluster.conf");
        let n = &self.nodes[i];
        let mut cmd = Command::new(bin);
        cmd.arg("-c")
            .arg(&conf)
            .args(["-a", "127.0.0.1", "-p", &n.port.to_string(), "-m", &n.monitor_port.to_string()])
            .args(["--cluster", &format!("nats://127.0.0.1:{}", n.cluster_port)])
            .env("NATS_SERVER_NAME", &n.name)
            .env("NATS_AZ_TAG", format!("az:zone-{i}"))
            .env("NATS_ROUTE_A", &self.routes[0])
            .env("NATS_ROUTE_B", &self.routes[1])
            .env("NATS_ROUTE_C", &self.routes[2])
            .env("NATS_CLIENT_ADVERTISE", format!("127.0.0.1:{}", n.port))
            .env("NATS_CLUSTER_ADVERTISE", format!("127.0.0.1:{}", n.cluster_port))
            .env("NATS_STORE_DIR", n.store.path())
            .env("NATS_JS_MAX_FILE", "4G")
            .env("NATS_JS_MAX_MEM", "256M")
            .env("NATS_TLS_CERT", self.certs.node("server.pem"))
            .env("NATS_TLS_KEY", self.certs.node("server-key.pem"))
            .env("NATS_TLS_CA", self.certs.node("ca.pem"))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for role in [NatsRole::Creator, NatsRole::Functions, NatsRole::Gateway, NatsRole::Admin] {
            cmd.env(format!("HERALD_NATS_{}_PASSWORD", role.user().to_ascii_uppercase()), password(role));
        }
        let child = cmd.spawn().context("starting a nats-server of the cluster")?;
        self.nodes[i].child = Some(child);
        Ok(())
    }

    fn wait_listening(&mut self, i: usize) -> anyhow::Result<()> {
        let port = self.nodes[i].port;
        let child = self.nodes[i].child.as_mut().context("node not running")?;
        wait_for_port(port, child, "nats-server")
    }

    /// The URL of node `i` with `role`'s credentials.
    pub fn url_as(&self, i: usize, role: NatsRole) -> String {
        format!("nats://{}:{}@127.0.0.1:{}", role.user(), password(role), self.nodes[i].port)
    }

    /// Every node's URL, node `first` first.
    pub fn urls_as(&self, first: usize, role: NatsRole) -> String {
        (0..NODES).map(|k| self.url_as((first + k) % NODES, role)).collect::<Vec<_>>().join(",")
    }

    /// `kill -9` of node `i`.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].child.take() {
            kill(&mut c);
        }
    }

    /// Starts a killed node again on its ports and store.
    pub fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        self.kill(i);
        self.spawn(i)?;
        self.wait_listening(i)
    }

    pub fn pause(&self, i: usize) -> anyhow::Result<()> {
        signal(self.nodes[i].child.as_ref().context("node not running")?, "-STOP")
    }

    pub fn unpause(&self, i: usize) -> anyhow::Result<()> {
        signal(self.nodes[i].child.as_ref().context("node not running")?, "-CONT")
    }

    pub fn node_named(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == name)
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for i in 0..NODES {
            // A frozen process must be thawed to die promptly and free its ports.
            if let Some(c) = &self.nodes[i].child {
                let _ = signal(c, "-CONT");
            }
            self.kill(i);
        }
    }
}

/// The whole system on the cluster: the local store, runners and gateways (gateway `i` on
/// node `i`), a creator's publisher, and a functions-role client for looking at the streams.
pub struct ClusterStack {
    // Dropped in this order: our processes before the servers they use.
    pub gateways: Vec<(String, Option<Task>)>,
    pub runners: Vec<Option<Task>>,
    pub cluster: NatsCluster,
    pub store: LocalDynamo,
    pub publisher: Publisher,
    /// The creator's connection (publishers for concurrent traffic are made from it).
    pub creator: async_nats::Client,
    pub js: jetstream::Context,
    pub env: Vec<(String, String)>,
}

impl ClusterStack {
    pub async fn start(gateways: usize, runners: usize, env: Vec<(String, String)>) -> anyhow::Result<Self> {
        crate::init_logging();
        let cluster = NatsCluster::start()?;
        let store = LocalDynamo::start()?;
        let url = cluster.urls_as(0, NatsRole::Functions);
        let client = connect_retrying(&url, &cluster.certs.tls, subject::FUNCTIONS_INBOX_PREFIX).await?;
        let creator_url = cluster.urls_as(2, NatsRole::Creator);
        let creator = connect_retrying(&creator_url, &cluster.certs.tls, "_INBOX").await?;
        let js = jetstream::new(client);
        // JetStream answers once the nodes have met and elected a meta leader.
        let mut ready = false;
        for _ in 0..60 {
            if tokio::time::timeout(Duration::from_secs(2), js.query_account()).await.is_ok_and(|r| r.is_ok()) {
                ready = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        if !ready {
            bail!("the cluster's JetStream did not become ready in 60 s");
        }
        let mut stack = ClusterStack {
            js,
            publisher: Publisher::new(creator.clone()),
            creator,
            cluster,
            store,
            runners: Vec::new(),
            gateways: Vec::new(),
            env,
        };
        for i in 0..runners {
            stack.start_runner(i).await?;
        }
        for i in 0..gateways {
            stack.start_gateway(i).await?;
        }
        Ok(stack)
    }

    /// The runners get their node's URL alone (they learn the others from it); gateways the
    /// whole list, their node first.
    fn vars(&self, node: usize, role: NatsRole) -> Vars {
        let url =
            if role == NatsRole::Gateway { self.cluster.urls_as(node, role) } else { self.cluster.url_as(node, role) };
        let pairs: Vec<(String, String)> = vec![
            ("HERALD_NATS_URL".into(), url),
            ("HERALD_NATS_CA_FILE".into(), self.cluster.certs.ca_file().display().to_string()),
            ("HERALD_DYNAMODB_ENDPOINT".into(), self.store.endpoint()),
            ("HERALD_JWT_SECRET".into(), SECRET.into()),
            ("HERALD_JWT_AUDIENCE".into(), AUDIENCE.into()),
            ("HERALD_STREAM_REPLICAS".into(), "3".into()),
            ("HERALD_DRAIN_SECONDS".into(), "2".into()),
            ("HERALD_SHUTDOWN_GRACE_SECONDS".into(), "2".into()),
        ];
        let all: Vec<(String, String)> = pairs.into_iter().chain(self.env.iter().cloned()).collect();
        Vars::from_pairs(all.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    }

    /// The store the runners write, as they see it.
    pub async fn inbox(&self) -> herald_functions::dynamo::DynamoInbox {
        let config = herald_core::config::DynamoConfig::from_vars(&self.vars(0, NatsRole::Functions));
        herald_functions::dynamo::DynamoInbox::connect(&config).await
    }

    /// Starts runner `i` (again, after a kill), talking first to node `i`.
    pub async fn start_runner(&mut self, i: usize) -> anyhow::Result<()> {
        let config = herald_functions::Config::from_vars(&self.vars(i % NODES, NatsRole::Functions))?;
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let ops = listener.local_addr()?;
        let task = Task::spawn("runner", move |token| async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("a tokio listener");
            if let Err(e) = herald_functions::runner::run(listener, config, token).await {
                tracing::error!(error = %e, "runner failed");
            }
        });
        wait_long(&format!("http://{ops}/readyz")).await.context("runner did not become ready")?;
        while self.runners.len() <= i {
            self.runners.push(None);
        }
        self.runners[i] = Some(task);
        Ok(())
    }

    /// Starts gateway `i` (again), on node `i`.
    pub async fn start_gateway(&mut self, i: usize) -> anyhow::Result<()> {
        let vars = self
            .vars(i % NODES, NatsRole::Gateway)
            .with("HERALD_NATS_ADMIN_URL", self.cluster.url_as(i % NODES, NatsRole::Admin))
            // Each gateway's internal plane on a port of its own.
            .with("HERALD_ADMIN_LISTEN", "127.0.0.1:0".to_owned());
        let config = herald_gateway::Config::from_vars(&vars)?;
        let listener = match self.gateways.get(i) {
            // The same port again, so clients find it where it was.
            Some((addr, _)) => std::net::TcpListener::bind(addr.as_str())?,
            None => std::net::TcpListener::bind("127.0.0.1:0")?,
        };
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let task = Task::spawn("gateway", move |token| async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("a tokio listener");
            if let Err(e) = herald_gateway::run(listener, config, token).await {
                tracing::error!(error = %e, "gateway failed");
            }
        });
        wait_long(&format!("http://{addr}/readyz")).await.context("gateway did not become ready")?;
        if i < self.gateways.len() {
            self.gateways[i] = (addr.to_string(), Some(task));
        } else {
            self.gateways.push((addr.to_string(), Some(task)));
        }
        Ok(())
    }

    pub fn ws_url(&self, i: usize) -> String {
        format!("ws://{}/v1/ws", self.gateways[i].0)
    }

    /// The node that leads `HERALD_USER` now.
    pub async fn user_stream_leader(&self) -> anyhow::Result<usize> {
        let mut stream = self.js.get_stream(subject::USER_STREAM).await?;
        let info = stream.info().await?;
        let leader = info.cluster.as_ref().and_then(|c| c.leader.clone()).context("no leader")?;
        self.cluster.node_named(&leader).with_context(|| format!("unknown leader {leader}"))
    }
}

async fn wait_long(url: &str) -> anyhow::Result<()> {
    // A cluster elects its meta leader and places R3 streams first: allow more than one stack.
    for _ in 0..6 {
        if wait_ready(url).await.is_ok() {
            return Ok(());
        }
    }
    bail!("{url} not ready in 60 s")
}

async fn connect_retrying(
    url: &str,
    tls: &herald_core::nats_tls::NatsTls,
    inbox_prefix: &str,
) -> anyhow::Result<async_nats::Client> {
    let client = herald_core::nats::options_with(url, Some(tls))
        .custom_inbox_prefix(inbox_prefix)
        .retry_on_initial_connect()
        .connect(herald_core::nats::servers(url)?)
        .await?;
    let _ = tokio::time::timeout(Duration::from_secs(10), client.flush()).await;
    Ok(client)
}
