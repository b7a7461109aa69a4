//! Real nats-server and dynalite processes on free loopback ports, killed on drop.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// The repository root (tools are installed under it by `scripts/test`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent").to_path_buf()
}

fn tool(var: &str, default: &str) -> anyhow::Result<PathBuf> {
    let path = std::env::var_os(var).map(PathBuf::from).unwrap_or_else(|| repo_root().join(default));
    if !path.exists() {
        bail!("{} not found: run scripts/test (or scripts/install-tools), or set {var}", path.display());
    }
    Ok(path)
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("binding an ephemeral port")
}

fn wait_for_port(port: u16, child: &mut Child, what: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if let Some(status) = child.try_wait()? {
            bail!("{what} exited with {status} before listening on {port}");
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    bail!("{what} did not listen on {port} within 20 s")
}

fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// A nats-server with JetStream, its store in a temporary folder.
pub struct NatsServer {
    child: Child,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl NatsServer {
    pub fn start() -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let port = free_port();
        let child = Self::spawn(port, dir.path())?;
        Ok(NatsServer { child, port, dir })
    }

    fn spawn(port: u16, dir: &Path) -> anyhow::Result<Child> {
        let bin = tool("HERALD_NATS_SERVER", ".tools/py/bin/nats-server")?;
        let mut child = Command::new(bin)
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting nats-server")?;
        wait_for_port(port, &mut child, "nats-server")?;
        Ok(child)
    }

    /// Kills the server and starts it again on the same port and store, as a crash and a
    /// restart would; clients see a disconnect and reconnect.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        kill(&mut self.child);
        self.child = Self::spawn(self.port, self.dir.path())?;
        Ok(())
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}

/// A dynalite server with a disk store; it can be stopped and started again on the same port
/// and data, as an outage would.
pub struct Dynalite {
    child: Option<Child>,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl Dynalite {
    pub fn start() -> anyhow::Result<Self> {
        let mut d = Dynalite { child: None, port: free_port(), dir: tempfile::tempdir()? };
        d.resume()?;
        Ok(d)
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            kill(&mut c);
        }
    }

    pub fn resume(&mut self) -> anyhow::Result<()> {
        let bin = tool("HERALD_DYNALITE", ".tools/dynalite/node_modules/.bin/dynalite")?;
        let mut child = Command::new(bin)
            .args(["--host", "127.0.0.1", "--createTableMs", "50", "--port", &self.port.to_string(), "--path"])
            .arg(self.dir.path().join("db"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting dynalite")?;
        wait_for_port(self.port, &mut child, "dynalite")?;
        self.child = Some(child);
        Ok(())
    }
}

impl Drop for Dynalite {
    fn drop(&mut self) {
        self.stop();
    }
}
