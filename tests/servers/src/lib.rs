//! Real nats-server, DynamoDB-API server (dynoxide) and HAProxy processes on free loopback ports,
//! killed on drop, and a bare HTTP GET for their neighbours' operations endpoints: what the integration
//! tests (`herald-tests`) and the benchmarks (`bench/loadgen`) both start their servers with.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

mod haproxy;
pub use haproxy::Haproxy;

/// The repository root (tools are installed under it by `scripts/test`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).ancestors().nth(2).expect("tests/servers/ has a grandparent").to_path_buf()
}

/// A pinned tool: `var` if set, else `default` under the repository root; an error names what installs it.
pub fn tool(var: &str, default: &str) -> anyhow::Result<PathBuf> {
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

/// Waits until `child` itself listens on `port`. Another process that got the same port a moment
/// earlier (a parallel test's server: `free_port` only says it was free) fails with
/// [`PortTaken`], so that the caller picks another port instead of sharing that process's server
/// and losing it when that test ends.
pub fn wait_for_port(port: u16, child: &mut Child, what: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait()? {
            if listener_pid_matches(port, None).is_some() {
                return Err(PortTaken(port).into());
            }
            bail!("{what} exited with {status} before listening on {port}");
        }
        match listener_pid_matches(port, Some(child.id())) {
            Some(true) => return Ok(()),
            Some(false) => {
                kill(child);
                return Err(PortTaken(port).into());
            }
            None => std::thread::sleep(Duration::from_millis(25)),
        }
    }
    bail!("{what} did not listen on {port} within 20 s")
}

/// The port a server was started on was taken by another process: pick another and start again.
#[derive(Debug)]
pub struct PortTaken(pub u16);

impl std::fmt::Display for PortTaken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "port {} is taken by another process", self.0)
    }
}

impl std::error::Error for PortTaken {}

/// Runs `start` with fresh free ports until one is not taken by another process (a few tries).
pub fn with_free_port<T>(mut start: impl FnMut(u16) -> anyhow::Result<T>) -> anyhow::Result<T> {
    let mut tries = 0;
    loop {
        match start(free_port()) {
            Err(e) if e.downcast_ref::<PortTaken>().is_some() && tries < 5 => tries += 1,
            other => return other,
        }
    }
}

/// Whether the socket listening on 127.0.0.1:`port` (IPv4, from `/proc/net/tcp`) belongs to
/// process `pid`: `None` while nothing listens there; with `pid` `None`, `Some(false)` if
/// anything does.
pub fn listener_pid_matches(port: u16, pid: Option<u32>) -> Option<bool> {
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    let wanted = format!("0100007F:{port:04X}");
    let inodes: Vec<String> = table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            (f.len() > 9 && f[1] == wanted && f[3] == "0A").then(|| f[9].to_owned())
        })
        .collect();
    if inodes.is_empty() {
        return None;
    }
    let Some(pid) = pid else { return Some(false) };
    // A process whose descriptors cannot be read is not one of ours.
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { return Some(false) };
    let owned = fds.flatten().any(|fd| {
        std::fs::read_link(fd.path())
            .map(|l| inodes.iter().any(|i| l.to_string_lossy() == format!("socket:[{i}]")))
            .unwrap_or(false)
    });
    Some(owned)
}

pub fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// The NATS users of `infra/nats/permissions.conf` and the test harness's own `inspector`, which
/// may do anything (tests look into the streams through it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NatsRole {
    Creator,
    Functions,
    Gateway,
    Admin,
    Inspector,
}

impl NatsRole {
    pub fn user(self) -> &'static str {
        match self {
            NatsRole::Creator => "creator",
            NatsRole::Functions => "functions",
            NatsRole::Gateway => "gateway",
            NatsRole::Admin => "admin",
            NatsRole::Inspector => "inspector",
        }
    }

    fn password(self) -> String {
        format!("{}-test-password", self.user())
    }
}

/// A nats-server with JetStream, its store in a temporary folder.
pub struct NatsServer {
    child: Child,
    pub port: u16,
    dir: tempfile::TempDir,
    /// Authorization on: the users and permissions `infra/` ships.
    secured: bool,
    /// Started from `nats.conf` in `dir` (users, TLS) rather than flags alone.
    config: bool,
}

impl NatsServer {
    pub fn start() -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        with_free_port(|port| {
            let child = Self::spawn(port, dir.path(), false)?;
            Ok((child, port))
        })
        .map(|(child, port)| NatsServer { child, port, dir, secured: false, config: false })
    }

    /// A server with `infra/nats/permissions.conf` in force: every client must log in as one of
    /// the [`NatsRole`]s, and gets only that role's permissions.
    pub fn start_secured() -> anyhow::Result<Self> {
        Self::start_secured_with("")
    }

    /// [`Self::start_secured`] with more users, given as lines of the `users` list (tests of
    /// what a process does when NATS refuses it something).
    pub fn start_secured_with(extra_users: &str) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        // nats-server resolves includes relative to the including file only.
        std::fs::copy(repo_root().join("infra/nats/permissions.conf"), dir.path().join("permissions.conf"))?;
        let users = [NatsRole::Creator, NatsRole::Functions, NatsRole::Gateway, NatsRole::Admin]
            .iter()
            .map(|r| {
                let perms = format!("HERALD_{}", r.user().to_ascii_uppercase());
                format!("    {{ user: {}, password: \"{}\", permissions: ${perms} }}\n", r.user(), r.password())
            })
            .collect::<String>();
        let inspector = NatsRole::Inspector;
        let conf = format!(
            "include \"permissions.conf\"\nauthorization {{\n  users: [\n{users}{extra_users}\n    {{ user: {}, password: \"{}\" }}\n  ]\n}}\n",
            inspector.user(),
            inspector.password()
        );
        std::fs::write(dir.path().join("nats.conf"), conf)?;
        let (child, port) = with_free_port(|port| Ok((Self::spawn(port, dir.path(), true)?, port)))?;
        Ok(NatsServer { child, port, dir, secured: true, config: true })
    }

    /// A server that requires TLS, with the certificate and key given (PEM files): clients
    /// connect with `tls://` and must trust the CA that signed them.
    pub fn start_tls(cert: &Path, key: &Path) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let conf = format!("tls {{\n  cert_file: {:?}\n  key_file: {:?}\n}}\n", cert.display(), key.display());
        std::fs::write(dir.path().join("nats.conf"), conf)?;
        let (child, port) = with_free_port(|port| Ok((Self::spawn(port, dir.path(), true)?, port)))?;
        Ok(NatsServer { child, port, dir, secured: false, config: true })
    }

    fn spawn(port: u16, dir: &Path, config: bool) -> anyhow::Result<Child> {
        let bin = tool("HERALD_NATS_SERVER", ".tools/py/bin/nats-server")?;
        let mut cmd = Command::new(bin);
        if config {
            cmd.arg("-c").arg(dir.join("nats.conf"));
        }
        let mut child = cmd
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(dir.join("js"))
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
        self.child = Self::spawn(self.port, self.dir.path(), self.config)?;
        Ok(())
    }

    /// The URL to connect with: the inspector's on a secured server.
    pub fn url(&self) -> String {
        if self.secured { self.url_as(NatsRole::Inspector) } else { format!("nats://127.0.0.1:{}", self.port) }
    }

    /// The URL with `role`'s credentials (on an unsecured server, the plain URL).
    pub fn url_as(&self, role: NatsRole) -> String {
        if !self.secured {
            return format!("nats://127.0.0.1:{}", self.port);
        }
        format!("nats://{}:{}@127.0.0.1:{}", role.user(), role.password(), self.port)
    }

    pub fn secured(&self) -> bool {
        self.secured
    }

    /// Freezes the server (SIGSTOP): its connections stay open and say nothing, as a hung
    /// node or a half-open TCP connection would.
    pub fn pause(&self) -> anyhow::Result<()> {
        signal(&self.child, "-STOP")
    }

    /// Thaws a paused server (SIGCONT).
    pub fn unpause(&self) -> anyhow::Result<()> {
        signal(&self.child, "-CONT")
    }
}

/// Sends a signal (`-STOP`, `-CONT`, `-TERM`, `-KILL`) to a child process.
pub fn signal(child: &Child, sig: &str) -> anyhow::Result<()> {
    let status = Command::new("kill").arg(sig).arg(child.id().to_string()).status().context("running kill")?;
    if !status.success() {
        bail!("kill {sig} {} failed", child.id());
    }
    Ok(())
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}

/// A local DynamoDB-API server (dynoxide, `HERALD_DYNOXIDE` or `.tools/dynoxide/bin/dynoxide`)
/// with its SQLite file in a temporary folder; it can be stopped and started again on the same
/// port and data, as an outage would.
pub struct LocalDynamo {
    child: Option<Child>,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl LocalDynamo {
    pub fn start() -> anyhow::Result<Self> {
        let mut d = LocalDynamo { child: None, port: 0, dir: tempfile::tempdir()? };
        with_free_port(|port| {
            d.port = port;
            d.resume()
        })?;
        Ok(d)
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Freezes the server (SIGSTOP): requests are accepted and never answered, as a hung store
    /// would.
    pub fn pause(&self) -> anyhow::Result<()> {
        signal(self.child.as_ref().context("dynoxide is stopped")?, "-STOP")
    }

    /// Thaws a paused server (SIGCONT).
    pub fn unpause(&self) -> anyhow::Result<()> {
        signal(self.child.as_ref().context("dynoxide is stopped")?, "-CONT")
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            kill(&mut c);
        }
    }

    pub fn resume(&mut self) -> anyhow::Result<()> {
        let bin = tool("HERALD_DYNOXIDE", ".tools/dynoxide/bin/dynoxide")?;
        let mut child = Command::new(bin)
            .args(["serve", "--log", "quiet", "--host", "127.0.0.1", "--port", &self.port.to_string(), "--db-path"])
            .arg(self.dir.path().join("db.sqlite"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting dynoxide")?;
        wait_for_port(self.port, &mut child, "dynoxide")?;
        self.child = Some(child);
        Ok(())
    }
}

impl Drop for LocalDynamo {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A bare HTTP/1.1 GET over loopback: status and body.
pub async fn http_get(url: &str) -> anyhow::Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://").context("http:// URL")?;
    let (host, path) = rest.split_once('/').map(|(h, p)| (h, format!("/{p}"))).unwrap_or((rest, "/".into()));
    let mut s = tokio::net::TcpStream::connect(host).await?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes()).await?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await?;
    let text = String::from_utf8_lossy(&buf).to_string();
    let status = text.split(' ').nth(1).and_then(|c| c.parse().ok()).context("status line")?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    Ok((status, body))
}

#[cfg(test)]
mod tests {
    #[test]
    fn repo_root_is_the_workspace() {
        let manifest = std::fs::read_to_string(super::repo_root().join("Cargo.toml")).unwrap();
        assert!(manifest.contains("[workspace]"));
    }

    #[test]
    fn a_listener_is_told_apart_from_another_process_s() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        assert_eq!(super::listener_pid_matches(port, Some(std::process::id())), Some(true));
        assert_eq!(super::listener_pid_matches(port, Some(1)), Some(false));
        drop(listener);
        assert_eq!(super::listener_pid_matches(port, Some(std::process::id())), None);
    }
}
