//! Our own deployables for the functions tests: the real binaries as child processes (killed
//! with SIGKILL on drop or on demand), and in-process runners and bridges on their own runtimes,
//! each configured from a [`Vars`] derived from the stack's.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use aws_sdk_dynamodb::types::AttributeValue;
use herald_core::config::Vars;

use crate::Stack;
use crate::servers::{free_port, listener_pid_matches};
use crate::stack::{Task, http_get};

/// A binary of this workspace, built in the same profile as the running test or bench
/// (`cargo build --bins` first; `scripts/test` does).
pub fn bin_path(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let mut dir = exe.parent().context("the test binary's folder")?.to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let path = dir.join(name);
    if !path.exists() {
        bail!(
            "{} is missing: run `cargo build -p herald-functions --bins` (with --release for a \
             release bench) first",
            path.display()
        );
    }
    Ok(path)
}

/// A child process of ours, killed (SIGKILL) on drop.
pub struct Proc {
    child: Option<Child>,
    /// Its operations address, where it has one.
    pub ops: Option<String>,
}

impl Proc {
    /// Starts `bin` with exactly `vars` as its environment.
    pub fn spawn(bin: &str, vars: &Vars, args: &[&str]) -> anyhow::Result<Self> {
        let path = bin_path(bin)?;
        let log = std::env::var("HERALD_TEST_LOG").unwrap_or_else(|_| "warn".into());
        let child = Command::new(&path)
            .args(args)
            .env_clear()
            .envs(vars.iter())
            .env("HERALD_LOG", log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", path.display()))?;
        Ok(Proc { child: Some(child), ops: None })
    }

    /// Starts the `herald-functions` runner binary and waits until it is ready.
    pub async fn runner(vars: &Vars) -> anyhow::Result<Self> {
        // A port taken meanwhile by another test's process would answer /readyz for it.
        for _ in 0..5 {
            let port = free_port();
            let ops = format!("127.0.0.1:{port}");
            let mut p =
                Proc::spawn("herald-functions", &vars.clone().with("HERALD_FUNCTIONS_LISTEN", ops.clone()), &[])?;
            wait_ready(&ops).await?;
            let pid = p.child.as_ref().map(|c| c.id());
            if listener_pid_matches(port, pid) == Some(true) {
                p.ops = Some(ops);
                return Ok(p);
            }
            p.kill9();
        }
        bail!("no free port for the runner's operations endpoint in 5 tries")
    }

    /// `kill -9`: nothing after this point runs in the process.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Waits for `/readyz` at `addr` to answer 200.
pub async fn wait_ready(addr: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if http_get(&format!("http://{addr}/readyz")).await.is_ok_and(|(s, _)| s == 200) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("{addr} not ready within 20 s")
}

/// A runner in this process on its own runtime, configured by `vars`; returns it with its
/// operations address.
pub async fn runner(vars: &Vars) -> anyhow::Result<(Task, String)> {
    let config = herald_functions::Config::from_vars(vars)?;
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let ops = listener.local_addr()?.to_string();
    let task = Task::spawn("runner", move |token| async move {
        let listener = tokio::net::TcpListener::from_std(listener).expect("a tokio listener");
        if let Err(e) = herald_functions::run(listener, config, token).await {
            tracing::error!(error = %e, "runner failed");
        }
    });
    wait_ready(&ops).await?;
    Ok((task, ops))
}

/// A Lambda bridge in this process on its own runtime, configured by `vars`.
pub async fn bridge(vars: &Vars) -> anyhow::Result<(Task, String)> {
    let config = herald_functions::bridge::BridgeConfig::from_vars(vars)?;
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let ops = listener.local_addr()?.to_string();
    let task = Task::spawn("bridge", move |token| async move {
        let listener = tokio::net::TcpListener::from_std(listener).expect("a tokio listener");
        if let Err(e) = herald_functions::bridge::run(listener, config, token).await {
            tracing::error!(error = %e, "bridge failed");
        }
    });
    wait_ready(&ops).await?;
    Ok((task, ops))
}

/// The value of an unlabelled counter in a `/metrics` page at `ops`.
pub async fn metric(ops: &str, name: &str) -> anyhow::Result<u64> {
    let (_, body) = http_get(&format!("http://{ops}/metrics")).await?;
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .with_context(|| format!("{name} not in /metrics"))
}

/// How many inbox items hold notification `id`, over every user (a consistent scan).
pub async fn stored_copies(stack: &Stack, id: &str) -> anyhow::Result<usize> {
    let mut total = 0;
    let mut start = None;
    loop {
        let page = stack
            .dynamo
            .scan()
            .table_name("herald_notifications")
            .filter_expression("nid = :n")
            .expression_attribute_values(":n", AttributeValue::S(id.into()))
            .select(aws_sdk_dynamodb::types::Select::Count)
            .consistent_read(true)
            .set_exclusive_start_key(start)
            .send()
            .await?;
        total += page.count as usize;
        match page.last_evaluated_key {
            Some(k) if !k.is_empty() => start = Some(k),
            _ => return Ok(total),
        }
    }
}

/// Messages per subject in `HERALD_USER` under `herald.user.>`: (subjects, the largest count).
pub async fn user_stream_subjects(stack: &Stack) -> anyhow::Result<(usize, u64)> {
    use futures::StreamExt;
    let stream = stack.js.get_stream(herald_core::subject::USER_STREAM).await?;
    let mut info = stream.info_with_subjects("herald.user.>").await?;
    let (mut subjects, mut most) = (0, 0);
    while let Some(s) = info.next().await {
        let (_, n) = s?;
        subjects += 1;
        most = most.max(n as u64);
    }
    Ok((subjects, most))
}

/// Polls `check` every 50 ms until it holds or `within` passes.
pub async fn eventually<F, Fut>(within: Duration, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<bool>>,
{
    let deadline = Instant::now() + within;
    loop {
        if check().await? {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("not reached within {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
