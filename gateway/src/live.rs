//! Every session's live subscription, multiplexed over one dedicated NATS connection.
//!
//! An async-nats `Subscriber` costs ~4.9 KB even when idle (its channel preallocates a block of
//! 32 messages), which alone exceeds the per-connection budget. Here a subscription is a SUB on
//! a connection this module owns plus a small mailbox (a few dozen bytes while empty), and the
//! reader task parses `HMSG` straight into [`Entry`]s and drops each into its mailbox.
//!
//! Three promises the session builds on:
//! - **In force**: [`LiveSub::in_force`] resolves once the server answered a PING sent after
//!   the SUB, so the server that this connection talks to has the interest; anything stored
//!   later is either delivered here or found by the session's own read of the stream.
//! - **No silent loss**: a mailbox holds at most `MAILBOX` entries; past that the entry is
//!   dropped but the highest dropped sequence is kept, and the session is told at once
//!   ([`Live::Overflow`]) to catch up from the stream.
//! - **No silent death**: the connection PINGs the server every `ping_interval` and gives up on
//!   it when a PONG is later than `ping_deadline` (a half-open TCP connection, a stopped
//!   server); [`LiveRouter::healthy`] is false until the next connection is confirmed, which
//!   `/readyz` reports. After a reconnect every SUB is sent again and
//!   [`Events::nats_reconnected`] lets each session catch up from its last cursor.
//!
//! `nats://` or `tls://` with optional `user:pass@` or `token@`, or an nkey / credentials-file
//! login ([`herald_core::nats_auth`]) signing the INFO's nonce; every URL of a comma-separated
//! list is tried in turn, plus the servers the cluster announces (`connect_urls`), and a server
//! entering lame-duck mode is left for another. TLS, as NATS does it: the server's INFO comes in
//! the clear, then the handshake (when this gateway has a CA, the URL says `tls://`, or the
//! server requires it), checked against the configured CA only.

use std::collections::{HashMap, VecDeque};
use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use futures::task::AtomicWaker;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_rustls::rustls::pki_types::ServerName;
use tracing::{info, warn};

use crate::events::Events;
use crate::log::{Entry, raw_header};
use herald_core::notification::{HDR_ACCEPTED_AT, HDR_MUTED};

/// Live messages one session may have waiting; past that they are dropped and the session
/// catches up from the stream.
const MAILBOX: usize = 64;
/// SUB/UNSUB commands waiting for the connection task.
const COMMANDS: usize = 65_536;
/// A protocol line or message larger than this means a broken peer.
const MAX_MESSAGE: usize = 8 * 1024 * 1024;

#[derive(Default)]
struct Mailbox {
    queue: Mutex<VecDeque<Entry>>,
    waker: AtomicWaker,
    /// The highest sequence dropped because the queue was full (0: none since last taken).
    dropped: AtomicU64,
    /// The server has the SUB (a PING sent after it was answered).
    in_force: AtomicBool,
}

/// What a live subscription yields.
#[derive(Debug)]
pub enum Live {
    Entry(Entry),
    /// Entries up to this sequence were dropped (mailbox full): read them from the stream.
    Overflow(u64),
}

enum Command {
    Sub(u64, String),
    Unsub(u64),
}

struct Shared {
    subs: Mutex<HashMap<u64, (String, Arc<Mailbox>)>>,
    next_sid: AtomicU64,
    commands: mpsc::Sender<Command>,
    healthy: AtomicBool,
}

/// How the live connection finds and watches its server.
#[derive(Debug, Clone)]
pub struct LiveConfig {
    /// `nats://[user:pass@|token@]host[:port]`, comma-separated.
    pub urls: String,
    /// The CA to check servers against; TLS on every connection when set.
    pub tls: Option<herald_core::nats_tls::NatsTls>,
    /// An nkey or credentials-file login, answering the server's nonce.
    pub auth: Option<herald_core::nats_auth::NatsAuth>,
    pub ping_interval: Duration,
    /// A PING unanswered for this long ends the connection.
    pub ping_deadline: Duration,
}

/// The handle sessions subscribe through; cheap to clone.
#[derive(Clone)]
pub struct LiveRouter(Arc<Shared>);

impl std::fmt::Debug for LiveRouter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveRouter").finish_non_exhaustive()
    }
}

/// One session's subscription; dropping it unsubscribes.
pub struct LiveSub {
    sid: u64,
    mailbox: Arc<Mailbox>,
    router: Arc<Shared>,
}

impl LiveRouter {
    /// Starts the connection task; it runs until `stop` is cancelled.
    pub fn start(config: LiveConfig, events: Arc<Events>, stop: tokio_util::sync::CancellationToken) -> Self {
        let (tx, rx) = mpsc::channel(COMMANDS);
        let shared = Arc::new(Shared {
            subs: Mutex::new(HashMap::new()),
            next_sid: AtomicU64::new(1),
            commands: tx,
            healthy: AtomicBool::new(false),
        });
        tokio::spawn({
            let shared = shared.clone();
            async move {
                tokio::select! {
                    _ = stop.cancelled() => {}
                    _ = connection_loop(config, shared, rx, events) => {}
                }
            }
        });
        LiveRouter(shared)
    }

    pub fn subscribe(&self, subject: String) -> LiveSub {
        let sid = self.0.next_sid.fetch_add(1, Ordering::Relaxed);
        let mailbox = Arc::new(Mailbox::default());
        self.0.subs.lock().unwrap_or_else(|p| p.into_inner()).insert(sid, (subject.clone(), mailbox.clone()));
        // A full command queue only delays the SUB: it is also sent on every (re)connect.
        // Until it is sent and answered, `in_force` does not resolve.
        let _ = self.0.commands.try_send(Command::Sub(sid, subject));
        LiveSub { sid, mailbox, router: self.0.clone() }
    }

    /// Connected, and the server answered our last PING in time.
    pub fn healthy(&self) -> bool {
        self.0.healthy.load(Ordering::Relaxed)
    }
}

impl LiveSub {
    /// The next live entry, or the news that some were dropped.
    pub async fn next(&self) -> Live {
        poll_fn(|cx| {
            if let Some(l) = self.take() {
                return Poll::Ready(l);
            }
            self.mailbox.waker.register(cx.waker());
            match self.take() {
                Some(l) => Poll::Ready(l),
                None => Poll::Pending,
            }
        })
        .await
    }

    fn take(&self) -> Option<Live> {
        let mut q = self.mailbox.queue.lock().unwrap_or_else(|p| p.into_inner());
        let dropped = self.mailbox.dropped.swap(0, Ordering::AcqRel);
        if dropped > 0 {
            // What is queued is below or around the dropped ones; the catch-up reads it all.
            q.clear();
            *q = VecDeque::new();
            return Some(Live::Overflow(dropped));
        }
        q.pop_front().map(Live::Entry)
    }

    /// Resolves once the server has this subscription.
    pub async fn in_force(&self) {
        poll_fn(|cx| {
            if self.mailbox.in_force.load(Ordering::Acquire) {
                return Poll::Ready(());
            }
            self.mailbox.waker.register(cx.waker());
            if self.mailbox.in_force.load(Ordering::Acquire) { Poll::Ready(()) } else { Poll::Pending }
        })
        .await
    }
}

impl Drop for LiveSub {
    fn drop(&mut self) {
        self.router.subs.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.sid);
        // If the queue is full the server keeps the interest until the next reconnect; the
        // messages find no mailbox and are discarded.
        let _ = self.router.commands.try_send(Command::Unsub(self.sid));
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    addr: String,
    user: Option<String>,
    pass: Option<String>,
    /// The URL said `tls://`.
    tls: bool,
}

impl Target {
    /// Every server of a comma-separated list; credentials on the first apply to all that
    /// carry none.
    fn parse_all(urls: &str) -> Vec<Self> {
        let mut out: Vec<Target> = Vec::new();
        for url in urls.split(',').map(str::trim).filter(|u| !u.is_empty()) {
            let mut t = Target::parse(url);
            if t.user.is_none()
                && let Some(first) = out.first()
            {
                t.user = first.user.clone();
                t.pass = first.pass.clone();
            }
            out.push(t);
        }
        out
    }

    fn parse(url: &str) -> Self {
        let tls = url.starts_with("tls://");
        let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url).trim_end_matches('/');
        let (auth, addr) = match rest.rsplit_once('@') {
            Some((a, h)) => (Some(a), h),
            None => (None, rest),
        };
        let (user, pass) = match auth.map(|a| a.split_once(':')) {
            Some(Some((u, p))) => (Some(u.to_owned()), Some(p.to_owned())),
            Some(None) => (auth.map(str::to_owned), None),
            None => (None, None),
        };
        let addr = if addr.contains(':') { addr.to_owned() } else { format!("{addr}:4222") };
        Target { addr, user, pass, tls }
    }

    /// The host part of the address: the name the server's certificate must carry.
    fn host(&self) -> &str {
        let host = self.addr.rsplit_once(':').map_or(self.addr.as_str(), |(h, _)| h);
        host.trim_start_matches('[').trim_end_matches(']')
    }

    /// CONNECT, logged in with the URL's user and password or token, or with `auth` signing
    /// the server's `nonce`.
    fn connect_line(&self, auth: Option<&herald_core::nats_auth::NatsAuth>, nonce: Option<&str>) -> String {
        let mut o = serde_json::json!({"verbose": false, "pedantic": false, "headers": true, "protocol": 1,
            "name": "herald-gateway-live", "lang": "rust", "version": env!("CARGO_PKG_VERSION")});
        if let Some(auth) = auth {
            // A server without nkey users sends no nonce; then the URL's login, if any, counts.
            if let Some(nonce) = nonce {
                auth.add_to_connect(&mut o, nonce);
            }
        }
        match (&self.user, &self.pass) {
            (Some(u), Some(p)) => {
                o["user"] = u.clone().into();
                o["pass"] = p.clone().into();
            }
            (Some(t), None) => o["auth_token"] = t.clone().into(),
            _ => {}
        }
        format!("CONNECT {o}\r\n")
    }
}

/// The servers to try, in turn: the configured ones, then those the cluster announced.
struct Servers {
    list: Vec<Target>,
    next: usize,
}

impl Servers {
    fn next(&mut self) -> Target {
        let t = self.list[self.next % self.list.len()].clone();
        self.next = (self.next + 1) % self.list.len();
        t
    }

    fn learn(&mut self, addrs: &[String]) {
        let template = self.list[0].clone();
        for a in addrs {
            if !self.list.iter().any(|t| &t.addr == a) {
                self.list.push(Target { addr: a.clone(), ..template.clone() });
            }
        }
    }
}

async fn connection_loop(
    config: LiveConfig,
    shared: Arc<Shared>,
    mut commands: mpsc::Receiver<Command>,
    events: Arc<Events>,
) {
    let mut servers = Servers { list: Target::parse_all(&config.urls), next: 0 };
    if servers.list.is_empty() {
        servers.list.push(Target::parse("nats://127.0.0.1:4222"));
    }
    let mut first = true;
    let mut backoff = Duration::from_millis(50);
    loop {
        let target = servers.next();
        let result =
            serve_connection(&config, &target, &mut servers, &shared, &mut commands, &events, &mut first).await;
        shared.healthy.store(false, Ordering::Relaxed);
        match result {
            Ok(()) => return,
            Err(e) => warn!(error = %e, server = %target.addr, "live connection lost; reconnecting"),
        }
        // A whole round over the list without success waits; moving to the next server does not.
        if servers.next == 0 {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    }
}

fn io_err(kind: std::io::ErrorKind, msg: &str) -> std::io::Error {
    std::io::Error::new(kind, msg.to_owned())
}

async fn serve_connection(
    config: &LiveConfig,
    target: &Target,
    servers: &mut Servers,
    shared: &Shared,
    commands: &mut mpsc::Receiver<Command>,
    events: &Events,
    first: &mut bool,
) -> std::io::Result<()> {
    let (stream, mut buf, nonce) = open(config, target).await?;
    let (mut rd, wr) = tokio::io::split(stream);
    let mut wr = BufWriter::new(wr);
    wr.write_all(target.connect_line(config.auth.as_ref(), nonce.as_deref()).as_bytes()).await?;
    // Commands queued before this connection are covered by the full resubscription below.
    while commands.try_recv().is_ok() {}
    let subs: Vec<(u64, String)> =
        shared.subs.lock().unwrap_or_else(|p| p.into_inner()).iter().map(|(sid, (s, _))| (*sid, s.clone())).collect();
    for (sid, subject) in &subs {
        wr.write_all(format!("SUB {subject} {sid}\r\n").as_bytes()).await?;
    }
    // PONGs come back in the order of our PINGs: each confirms the SUBs written before it.
    let mut pings: VecDeque<(Instant, Vec<u64>)> = VecDeque::new();
    wr.write_all(b"PING\r\n").await?;
    pings.push_back((Instant::now(), subs.iter().map(|(sid, _)| *sid).collect()));
    wr.flush().await?;
    let mut confirmed_once = false;
    let mut tick = tokio::time::interval(config.ping_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        let deadline = pings.front().map(|(at, _)| *at + config.ping_deadline);
        tokio::select! {
            cmd = commands.recv() => {
                let Some(cmd) = cmd else { return Ok(()) };
                let mut sids = Vec::new();
                write_command(&mut wr, cmd, &mut sids).await?;
                while let Ok(cmd) = commands.try_recv() {
                    write_command(&mut wr, cmd, &mut sids).await?;
                }
                if !sids.is_empty() {
                    wr.write_all(b"PING\r\n").await?;
                    pings.push_back((Instant::now(), sids));
                }
                wr.flush().await?;
            }
            n = rd.read_buf(&mut buf) => {
                if n? == 0 {
                    return Err(io_err(std::io::ErrorKind::UnexpectedEof, "server closed"));
                }
                let seen = parse_all(&mut buf, shared)?;
                if seen.ping {
                    wr.write_all(b"PONG\r\n").await?;
                    wr.flush().await?;
                }
                if !seen.connect_urls.is_empty() {
                    servers.learn(&seen.connect_urls);
                }
                for _ in 0..seen.pongs {
                    let Some((_, sids)) = pings.pop_front() else { break };
                    confirm(shared, &sids);
                    if !confirmed_once {
                        confirmed_once = true;
                        shared.healthy.store(true, Ordering::Relaxed);
                        if !*first {
                            info!(subscriptions = subs.len(), server = %target.addr, "live connection back; sessions catch up");
                            events.nats_reconnected();
                        }
                        *first = false;
                    }
                }
                if seen.lame_duck {
                    return Err(io_err(std::io::ErrorKind::ConnectionAborted, "server entered lame-duck mode"));
                }
            }
            _ = tick.tick() => {
                // Only one keepalive PING in flight: a queue of them says nothing more.
                if pings.is_empty() {
                    wr.write_all(b"PING\r\n").await?;
                    wr.flush().await?;
                    pings.push_back((Instant::now(), Vec::new()));
                }
            }
            _ = sleep_until_opt(deadline) => {
                return Err(io_err(std::io::ErrorKind::TimedOut, "no PONG within the deadline"));
            }
        }
    }
}

/// A connection to one server, plain or TLS.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

type Writer = BufWriter<tokio::io::WriteHalf<Box<dyn Io>>>;

/// Connects to `target`, reads its INFO and upgrades to TLS when asked to (module docs).
/// Returns the stream, what was read of it so far (the INFO line, which the parser then reads
/// like any other) and the nonce the INFO carried, for an nkey login.
async fn open(config: &LiveConfig, target: &Target) -> std::io::Result<(Box<dyn Io>, BytesMut, Option<String>)> {
    use std::io::ErrorKind;
    let mut tcp = tokio::time::timeout(config.ping_deadline, TcpStream::connect(&target.addr))
        .await
        .map_err(|_| io_err(ErrorKind::TimedOut, "connect timed out"))??;
    tcp.set_nodelay(true)?;
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let info_end = tokio::time::timeout(config.ping_deadline, async {
        loop {
            if let Some(i) = buf.windows(2).position(|w| w == b"\r\n") {
                return Ok(i);
            }
            if buf.len() > MAX_MESSAGE {
                return Err(io_err(ErrorKind::InvalidData, "no end to the server's INFO"));
            }
            if tcp.read_buf(&mut buf).await? == 0 {
                return Err(io_err(ErrorKind::UnexpectedEof, "server closed before its INFO"));
            }
        }
    })
    .await
    .map_err(|_| io_err(ErrorKind::TimedOut, "no INFO from the server"))??;
    let info: serde_json::Value =
        buf[..info_end]
            .strip_prefix(b"INFO ")
            .and_then(|j| serde_json::from_slice(j).ok())
            .ok_or_else(|| io_err(ErrorKind::InvalidData, "the server did not start with INFO"))?;
    let nonce = info["nonce"].as_str().map(str::to_owned);
    let required = info["tls_required"].as_bool().unwrap_or(false);
    if !(required || target.tls || config.tls.is_some()) {
        return Ok((Box::new(tcp), buf, nonce));
    }
    let Some(tls) = &config.tls else {
        return Err(io_err(
            ErrorKind::InvalidInput,
            "the server requires TLS: set HERALD_NATS_CA_PEM or HERALD_NATS_CA_FILE to its CA",
        ));
    };
    let name = ServerName::try_from(target.host().to_owned())
        .map_err(|_| io_err(ErrorKind::InvalidInput, "the server's address is not a TLS name"))?;
    let stream = tokio::time::timeout(
        config.ping_deadline,
        tokio_rustls::TlsConnector::from(tls.client_config()).connect(name, tcp),
    )
    .await
    .map_err(|_| io_err(ErrorKind::TimedOut, "TLS handshake timed out"))??;
    Ok((Box::new(stream), buf, nonce))
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn confirm(shared: &Shared, sids: &[u64]) {
    let subs = shared.subs.lock().unwrap_or_else(|p| p.into_inner());
    for sid in sids {
        if let Some((_, m)) = subs.get(sid) {
            m.in_force.store(true, Ordering::Release);
            m.waker.wake();
        }
    }
}

async fn write_command(wr: &mut Writer, cmd: Command, subscribed: &mut Vec<u64>) -> std::io::Result<()> {
    match cmd {
        Command::Sub(sid, subject) => {
            subscribed.push(sid);
            wr.write_all(format!("SUB {subject} {sid}\r\n").as_bytes()).await
        }
        Command::Unsub(sid) => wr.write_all(format!("UNSUB {sid}\r\n").as_bytes()).await,
    }
}

fn bad(msg: &str) -> std::io::Error {
    io_err(std::io::ErrorKind::InvalidData, msg)
}

/// What one pass over the read buffer saw besides messages.
#[derive(Debug, Default)]
struct Seen {
    ping: bool,
    pongs: usize,
    lame_duck: bool,
    connect_urls: Vec<String>,
}

#[derive(serde::Deserialize)]
struct Info {
    #[serde(default)]
    connect_urls: Vec<String>,
    #[serde(default)]
    ldm: bool,
}

/// Parses every complete operation in `buf`.
fn parse_all(buf: &mut BytesMut, shared: &Shared) -> std::io::Result<Seen> {
    let mut seen = Seen::default();
    loop {
        let Some(eol) = buf.windows(2).position(|w| w == b"\r\n") else {
            if buf.len() > MAX_MESSAGE {
                return Err(bad("protocol line too long"));
            }
            return Ok(seen);
        };
        let line = std::str::from_utf8(&buf[..eol]).map_err(|_| bad("non-UTF-8 protocol line"))?.to_owned();
        let mut parts = line.split_ascii_whitespace();
        let op = parts.next().unwrap_or("").to_ascii_uppercase();
        match op.as_str() {
            "HMSG" | "MSG" => {
                let args: Vec<&str> = parts.collect();
                let (sid, hdr_len, total) = match (op.as_str(), args.len()) {
                    ("HMSG", 4) => (args[1], args[2], args[3]),
                    ("HMSG", 5) => (args[1], args[3], args[4]),
                    ("MSG", 3) => (args[1], "0", args[2]),
                    ("MSG", 4) => (args[1], "0", args[3]),
                    _ => return Err(bad("malformed MSG")),
                };
                let sid: u64 = sid.parse().map_err(|_| bad("bad sid"))?;
                let hdr_len: usize = hdr_len.parse().map_err(|_| bad("bad header length"))?;
                let total: usize = total.parse().map_err(|_| bad("bad length"))?;
                if total > MAX_MESSAGE || hdr_len > total {
                    return Err(bad("message too large"));
                }
                if buf.len() < eol + 2 + total + 2 {
                    return Ok(seen); // wait for the rest
                }
                buf.advance(eol + 2);
                let body = buf.split_to(total).freeze();
                buf.advance(2);
                deliver(shared, sid, body, hdr_len);
            }
            "PING" => {
                seen.ping = true;
                buf.advance(eol + 2);
            }
            "PONG" => {
                seen.pongs += 1;
                buf.advance(eol + 2);
            }
            "INFO" => {
                if let Ok(info) = serde_json::from_str::<Info>(line[4..].trim()) {
                    seen.connect_urls = info.connect_urls;
                    seen.lame_duck |= info.ldm;
                }
                buf.advance(eol + 2);
            }
            "-ERR" => {
                warn!(error = %line, "NATS error on the live connection");
                buf.advance(eol + 2);
                // Authorization and most other server errors close the connection anyway.
                if line.to_ascii_lowercase().contains("authorization") {
                    return Err(bad("not authorized"));
                }
            }
            _ => buf.advance(eol + 2), // +OK
        }
    }
}

fn deliver(shared: &Shared, sid: u64, body: Bytes, hdr_len: usize) {
    let mailbox = match shared.subs.lock().unwrap_or_else(|p| p.into_inner()).get(&sid) {
        Some((_, m)) => m.clone(),
        None => return, // unsubscribed meanwhile
    };
    let headers = std::str::from_utf8(&body[..hdr_len]).unwrap_or("");
    let header = |name: &str| -> Option<u64> { raw_header(headers, name)?.parse().ok() };
    let Some(seq) = header("Nats-Sequence") else { return };
    let entry = Entry {
        seq,
        prev: header("Nats-Last-Sequence").unwrap_or(0),
        accepted_at_ms: header(HDR_ACCEPTED_AT).map(|v| v as i64),
        muted: raw_header(headers, HDR_MUTED) == Some("1"),
        payload: body.slice(hdr_len..),
    };
    let mut q = mailbox.queue.lock().unwrap_or_else(|p| p.into_inner());
    if q.len() < MAILBOX {
        q.push_back(entry);
    } else {
        mailbox.dropped.fetch_max(seq, Ordering::AcqRel);
    }
    drop(q);
    mailbox.waker.wake();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared() -> Shared {
        let (tx, _rx) = mpsc::channel(1);
        Shared { subs: Mutex::new(HashMap::new()), next_sid: AtomicU64::new(1), commands: tx, healthy: false.into() }
    }

    #[test]
    fn parses_urls_with_and_without_credentials() {
        let t = Target::parse("nats://127.0.0.1:4333");
        assert_eq!((t.addr.as_str(), t.user, t.pass), ("127.0.0.1:4333", None, None));
        let t = Target::parse("nats://u:p@nats.internal");
        assert_eq!(
            (t.addr.as_str(), t.user.as_deref(), t.pass.as_deref()),
            ("nats.internal:4222", Some("u"), Some("p"))
        );
        let all = Target::parse_all("nats://s3cr3t@h:1, nats://other:2");
        assert_eq!(all.len(), 2);
        assert_eq!((all[0].addr.as_str(), all[0].user.as_deref()), ("h:1", Some("s3cr3t")));
        assert_eq!((all[1].addr.as_str(), all[1].user.as_deref()), ("other:2", Some("s3cr3t")));
    }

    #[test]
    fn tls_urls_and_hosts_are_read() {
        let t = Target::parse("tls://u:p@nats.herald.test:4222");
        assert!(t.tls);
        assert_eq!(t.host(), "nats.herald.test");
        let t = Target::parse("nats://[::1]:4222");
        assert!(!t.tls);
        assert_eq!(t.host(), "::1");
        assert_eq!(Target::parse("127.0.0.1").host(), "127.0.0.1");
    }

    #[test]
    fn splits_messages_and_routes_them_by_sid() {
        let shared = shared();
        let mb = Arc::new(Mailbox::default());
        shared.subs.lock().unwrap().insert(7, ("s".into(), mb.clone()));
        let hdr = "NATS/1.0\r\nNats-Sequence: 42\r\nNats-Last-Sequence: 40\r\nHerald-Muted: 1\r\n\r\n";
        let payload = "{\"id\":\"x\"}";
        let msg = format!(
            "HMSG herald.live.x 7 {} {}\r\n{hdr}{payload}\r\nPING\r\nPONG\r\nINFO {{\"connect_urls\":[\"a:1\"],\"ldm\":true}}\r\n",
            hdr.len(),
            hdr.len() + payload.len()
        );
        let mut buf = BytesMut::from(&msg.as_bytes()[..20]);
        assert!(!parse_all(&mut buf, &shared).unwrap().ping, "incomplete: waits");
        buf.extend_from_slice(&msg.as_bytes()[20..]);
        let seen = parse_all(&mut buf, &shared).unwrap();
        assert!(seen.ping && seen.lame_duck);
        assert_eq!((seen.pongs, seen.connect_urls), (1, vec!["a:1".to_owned()]));
        let e = mb.queue.lock().unwrap().pop_front().unwrap();
        assert_eq!((e.seq, e.prev, e.muted), (42, 40, true));
        assert_eq!(&e.payload[..], payload.as_bytes());
        assert!(buf.is_empty());
    }

    #[test]
    fn a_full_mailbox_reports_what_it_dropped() {
        let shared = shared();
        let mb = Arc::new(Mailbox::default());
        shared.subs.lock().unwrap().insert(1, ("s".into(), mb.clone()));
        let sub = LiveSub { sid: 1, mailbox: mb, router: Arc::new(shared) };
        for seq in 1..=(MAILBOX as u64 + 5) {
            let hdr = format!("NATS/1.0\r\nNats-Sequence: {seq}\r\n\r\n");
            deliver(&sub.router, 1, Bytes::from(hdr.clone()), hdr.len());
        }
        match sub.take() {
            Some(Live::Overflow(s)) => assert_eq!(s, MAILBOX as u64 + 5),
            other => panic!("expected an overflow, got {other:?}"),
        }
        assert!(sub.take().is_none(), "the overflow replaces what was queued");
    }
}
