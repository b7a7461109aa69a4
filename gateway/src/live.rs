//! Every session's live subscription, multiplexed over one dedicated NATS connection.
//!
//! An async-nats `Subscriber` costs ~4.9 KB even when idle (its channel preallocates a block of
//! 32 messages), which alone exceeds the per-connection budget. Here a subscription is a SUB on
//! a connection this module owns plus a small mailbox (a few dozen bytes while empty), and the
//! reader task parses `HMSG` straight into [`Entry`]s and drops each into its mailbox.
//!
//! A mailbox holds at most `MAILBOX` entries; past that a message is dropped, and the session
//! sees the gap (`Nats-Last-Sequence`) and fetches it from the stream, as for any live loss.
//! After a reconnect every SUB is sent again and [`Events::nats_reconnected`] lets each session
//! catch up from its last cursor. Plain `nats://` with optional `user:pass@` or `token@`; TLS is
//! not spoken here (see the README).

use std::collections::{HashMap, VecDeque};
use std::future::poll_fn;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use futures::task::AtomicWaker;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::events::Events;
use crate::log::Entry;
use herald_core::notification::HDR_ACCEPTED_AT;

/// Live messages one session may have waiting; more are dropped and refetched as a gap.
const MAILBOX: usize = 64;
/// SUB/UNSUB commands waiting for the connection task.
const COMMANDS: usize = 65_536;
/// A protocol line or message larger than this means a broken peer.
const MAX_MESSAGE: usize = 8 * 1024 * 1024;

#[derive(Default)]
struct Mailbox {
    queue: Mutex<VecDeque<Entry>>,
    waker: AtomicWaker,
}

enum Command {
    Sub(u64, String),
    Unsub(u64),
}

struct Shared {
    subs: Mutex<HashMap<u64, (String, Arc<Mailbox>)>>,
    next_sid: AtomicU64,
    commands: mpsc::Sender<Command>,
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
    pub fn start(url: &str, events: Arc<Events>, stop: tokio_util::sync::CancellationToken) -> Self {
        let (tx, rx) = mpsc::channel(COMMANDS);
        let shared = Arc::new(Shared { subs: Mutex::new(HashMap::new()), next_sid: AtomicU64::new(1), commands: tx });
        let target = Target::parse(url);
        tokio::spawn({
            let shared = shared.clone();
            async move {
                tokio::select! {
                    _ = stop.cancelled() => {}
                    _ = connection_loop(target, shared, rx, events) => {}
                }
            }
        });
        LiveRouter(shared)
    }

    pub fn subscribe(&self, subject: String) -> LiveSub {
        let sid = self.0.next_sid.fetch_add(1, Ordering::Relaxed);
        let mailbox = Arc::new(Mailbox::default());
        self.0.subs.lock().unwrap_or_else(|p| p.into_inner()).insert(sid, (subject.clone(), mailbox.clone()));
        // A full command queue only delays the SUB: it is also sent on every (re)connect, and a
        // late SUB shows up as a gap, which the session fills from the stream.
        let _ = self.0.commands.try_send(Command::Sub(sid, subject));
        LiveSub { sid, mailbox, router: self.0.clone() }
    }
}

impl LiveSub {
    /// The next live entry.
    pub async fn next(&self) -> Entry {
        poll_fn(|cx| {
            if let Some(e) = self.mailbox.queue.lock().unwrap_or_else(|p| p.into_inner()).pop_front() {
                return Poll::Ready(e);
            }
            self.mailbox.waker.register(cx.waker());
            match self.mailbox.queue.lock().unwrap_or_else(|p| p.into_inner()).pop_front() {
                Some(e) => Poll::Ready(e),
                None => Poll::Pending,
            }
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

#[derive(Debug, Clone)]
struct Target {
    addr: String,
    user: Option<String>,
    pass: Option<String>,
}

impl Target {
    fn parse(url: &str) -> Self {
        let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
        let rest = rest.split(',').next().unwrap_or(rest).trim_end_matches('/');
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
        Target { addr, user, pass }
    }

    fn connect_line(&self) -> String {
        let mut o = serde_json::json!({"verbose": false, "pedantic": false, "headers": true, "protocol": 1,
            "name": "herald-gateway-live", "lang": "rust", "version": env!("CARGO_PKG_VERSION")});
        match (&self.user, &self.pass) {
            (Some(u), Some(p)) => {
                o["user"] = u.clone().into();
                o["pass"] = p.clone().into();
            }
            (Some(t), None) => o["auth_token"] = t.clone().into(),
            _ => {}
        }
        format!("CONNECT {o}\r\nPING\r\n")
    }
}

async fn connection_loop(
    target: Target,
    shared: Arc<Shared>,
    mut commands: mpsc::Receiver<Command>,
    events: Arc<Events>,
) {
    let mut first = true;
    let mut backoff = Duration::from_millis(100);
    loop {
        match serve_connection(&target, &shared, &mut commands, &events, &mut first).await {
            Ok(()) => return,
            Err(e) => warn!(error = %e, "live connection lost; reconnecting"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

async fn serve_connection(
    target: &Target,
    shared: &Shared,
    commands: &mut mpsc::Receiver<Command>,
    events: &Events,
    first: &mut bool,
) -> std::io::Result<()> {
    let stream = TcpStream::connect(&target.addr).await?;
    stream.set_nodelay(true)?;
    let (mut rd, wr) = stream.into_split();
    let mut wr = BufWriter::new(wr);
    let mut buf = BytesMut::with_capacity(64 * 1024);
    wr.write_all(target.connect_line().as_bytes()).await?;
    // Commands queued before this connection are covered by the full resubscription below.
    while commands.try_recv().is_ok() {}
    let subs: Vec<(u64, String)> =
        shared.subs.lock().unwrap_or_else(|p| p.into_inner()).iter().map(|(sid, (s, _))| (*sid, s.clone())).collect();
    for (sid, subject) in &subs {
        wr.write_all(format!("SUB {subject} {sid}\r\n").as_bytes()).await?;
    }
    wr.flush().await?;
    if !*first {
        info!(subscriptions = subs.len(), "live connection back; sessions catch up");
        events.nats_reconnected();
    }
    *first = false;
    loop {
        tokio::select! {
            cmd = commands.recv() => {
                let Some(cmd) = cmd else { return Ok(()) };
                write_command(&mut wr, cmd).await?;
                while let Ok(cmd) = commands.try_recv() {
                    write_command(&mut wr, cmd).await?;
                }
                wr.flush().await?;
            }
            n = rd.read_buf(&mut buf) => {
                if n? == 0 {
                    return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "server closed"));
                }
                let pong = parse_all(&mut buf, shared)?;
                if pong {
                    wr.write_all(b"PONG\r\n").await?;
                    wr.flush().await?;
                }
            }
        }
    }
}

async fn write_command(wr: &mut BufWriter<tokio::net::tcp::OwnedWriteHalf>, cmd: Command) -> std::io::Result<()> {
    match cmd {
        Command::Sub(sid, subject) => wr.write_all(format!("SUB {subject} {sid}\r\n").as_bytes()).await,
        Command::Unsub(sid) => wr.write_all(format!("UNSUB {sid}\r\n").as_bytes()).await,
    }
}

fn bad(msg: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg.to_owned())
}

/// Parses every complete operation in `buf`; true when the server asked for a PONG.
fn parse_all(buf: &mut BytesMut, shared: &Shared) -> std::io::Result<bool> {
    let mut pong = false;
    loop {
        let Some(eol) = buf.windows(2).position(|w| w == b"\r\n") else {
            if buf.len() > MAX_MESSAGE {
                return Err(bad("protocol line too long"));
            }
            return Ok(pong);
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
                    return Ok(pong); // wait for the rest
                }
                buf.advance(eol + 2);
                let body = buf.split_to(total).freeze();
                buf.advance(2);
                deliver(shared, sid, body, hdr_len);
            }
            "PING" => {
                pong = true;
                buf.advance(eol + 2);
            }
            "-ERR" => {
                warn!(error = %line, "NATS error on the live connection");
                buf.advance(eol + 2);
            }
            _ => buf.advance(eol + 2), // INFO, PONG, +OK
        }
    }
}

fn deliver(shared: &Shared, sid: u64, body: Bytes, hdr_len: usize) {
    let mailbox = match shared.subs.lock().unwrap_or_else(|p| p.into_inner()).get(&sid) {
        Some((_, m)) => m.clone(),
        None => return, // unsubscribed meanwhile
    };
    let headers = std::str::from_utf8(&body[..hdr_len]).unwrap_or("");
    let header = |name: &str| -> Option<u64> {
        headers.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim().parse().ok()).flatten()
        })
    };
    let Some(seq) = header("Nats-Sequence") else { return };
    let entry = Entry {
        seq,
        prev: header("Nats-Last-Sequence").unwrap_or(0),
        accepted_at_ms: header(HDR_ACCEPTED_AT).map(|v| v as i64),
        payload: body.slice(hdr_len..),
    };
    let mut q = mailbox.queue.lock().unwrap_or_else(|p| p.into_inner());
    if q.len() < MAILBOX {
        q.push_back(entry);
    }
    drop(q);
    mailbox.waker.wake();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls_with_and_without_credentials() {
        let t = Target::parse("nats://127.0.0.1:4333");
        assert_eq!((t.addr.as_str(), t.user, t.pass), ("127.0.0.1:4333", None, None));
        let t = Target::parse("nats://u:p@nats.internal");
        assert_eq!(
            (t.addr.as_str(), t.user.as_deref(), t.pass.as_deref()),
            ("nats.internal:4222", Some("u"), Some("p"))
        );
        let t = Target::parse("nats://s3cr3t@h:1,nats://other:2");
        assert_eq!((t.addr.as_str(), t.user.as_deref()), ("h:1", Some("s3cr3t")));
    }

    #[test]
    fn splits_messages_and_routes_them_by_sid() {
        let (tx, _rx) = mpsc::channel(1);
        let shared = Shared { subs: Mutex::new(HashMap::new()), next_sid: AtomicU64::new(1), commands: tx };
        let mb = Arc::new(Mailbox::default());
        shared.subs.lock().unwrap().insert(7, ("s".into(), mb.clone()));
        let hdr = "NATS/1.0\r\nNats-Sequence: 42\r\nNats-Last-Sequence: 40\r\n\r\n";
        let payload = "{\"id\":\"x\"}";
        let msg =
            format!("HMSG herald.live.x 7 {} {}\r\n{hdr}{payload}\r\nPING\r\n", hdr.len(), hdr.len() + payload.len());
        let mut buf = BytesMut::from(&msg.as_bytes()[..20]);
        assert!(!parse_all(&mut buf, &shared).unwrap(), "incomplete: waits");
        buf.extend_from_slice(&msg.as_bytes()[20..]);
        assert!(parse_all(&mut buf, &shared).unwrap(), "PING seen");
        let e = mb.queue.lock().unwrap().pop_front().unwrap();
        assert_eq!((e.seq, e.prev), (42, 40));
        assert_eq!(&e.payload[..], payload.as_bytes());
        assert!(buf.is_empty());
    }
}
