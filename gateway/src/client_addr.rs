//! The real client address behind a load balancer: PROXY protocol v2 on the listener
//! (`HERALD_PROXY_PROTOCOL`, what an AWS NLB and HAProxy's `send-proxy-v2` send) and
//! `X-Forwarded-For` read from the right, past the configured trusted proxies only.
//!
//! With PROXY protocol on, each accepted socket must start with a valid v2 header within
//! [`HEADER_TIMEOUT`]; the header is read exactly (nothing past it), so the rest of the stream
//! goes to HTTP untouched. A socket without one is closed: a gateway behind a proxy that can be
//! reached directly would otherwise let anyone claim any address. Headers are read concurrently
//! (a slow one never holds up the others), at most [`PENDING_HEADERS`] at a time; past that a
//! new socket is closed at once.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::http::HeaderMap;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tracing::debug;

/// How long a new socket has to deliver its PROXY header.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Sockets whose header is still being read; more are closed at once.
pub const PENDING_HEADERS: usize = 4096;
/// The longest address block accepted (addresses plus TLVs; AWS adds a few dozen bytes).
const MAX_BLOCK: usize = 1024;
const SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProxyError {
    #[error("not a PROXY protocol v2 header")]
    Signature,
    #[error("unsupported PROXY protocol version or command {0:#04x}")]
    Command(u8),
    #[error("PROXY address block of {0} bytes is too long")]
    TooLong(usize),
    #[error("PROXY address block too short for its family")]
    Short,
}

/// Parses the 16-byte fixed part: the length of the address block that follows.
pub fn parse_fixed(head: &[u8; 16]) -> Result<usize, ProxyError> {
    if head[..12] != SIGNATURE {
        return Err(ProxyError::Signature);
    }
    // High nibble: version 2; low nibble: 0 LOCAL (the proxy's own health check), 1 PROXY.
    if head[12] != 0x20 && head[12] != 0x21 {
        return Err(ProxyError::Command(head[12]));
    }
    let len = u16::from_be_bytes([head[14], head[15]]) as usize;
    if len > MAX_BLOCK {
        return Err(ProxyError::TooLong(len));
    }
    Ok(len)
}

/// The client's address from a complete header (fixed part and block); `None` for LOCAL and
/// for families without an IP (UNIX, UNSPEC): the socket's own peer address then stands.
pub fn parse_source(head: &[u8; 16], block: &[u8]) -> Result<Option<SocketAddr>, ProxyError> {
    if head[12] == 0x20 {
        return Ok(None);
    }
    match head[13] >> 4 {
        0x1 => {
            let b: &[u8; 12] = block.get(..12).and_then(|b| b.try_into().ok()).ok_or(ProxyError::Short)?;
            let ip = Ipv4Addr::new(b[0], b[1], b[2], b[3]);
            Ok(Some(SocketAddr::new(IpAddr::V4(ip), u16::from_be_bytes([b[8], b[9]]))))
        }
        0x2 => {
            let b: &[u8; 36] = block.get(..36).and_then(|b| b.try_into().ok()).ok_or(ProxyError::Short)?;
            let mut octets = [0u8; 16];
            octets.copy_from_slice(&b[..16]);
            let ip = Ipv6Addr::from(octets);
            Ok(Some(SocketAddr::new(IpAddr::V6(ip), u16::from_be_bytes([b[32], b[33]]))))
        }
        _ => Ok(None),
    }
}

/// Reads one header from `stream` and nothing more.
async fn read_header(stream: &mut TcpStream, peer: SocketAddr) -> Result<SocketAddr, ProxyError> {
    let mut head = [0u8; 16];
    stream.read_exact(&mut head).await.map_err(|_| ProxyError::Short)?;
    let len = parse_fixed(&head)?;
    let mut block = vec![0u8; len];
    stream.read_exact(&mut block).await.map_err(|_| ProxyError::Short)?;
    Ok(parse_source(&head, &block)?.unwrap_or(peer))
}

/// A listener for `axum::serve` whose address is the real client's.
pub struct ClientListener {
    rx: mpsc::Receiver<(TcpStream, SocketAddr)>,
    local: SocketAddr,
    acceptor: tokio::task::JoinHandle<()>,
}

impl Drop for ClientListener {
    fn drop(&mut self) {
        // Closes the socket: a draining gateway accepts nothing more.
        self.acceptor.abort();
    }
}

impl ClientListener {
    /// `proxy_protocol`: require a PROXY v2 header on every socket. `refused` is called for
    /// each socket closed for a missing or bad header.
    pub fn new(
        listener: TcpListener,
        proxy_protocol: bool,
        refused: impl Fn(&ProxyError) + Send + Sync + 'static,
    ) -> std::io::Result<Self> {
        let local = listener.local_addr()?;
        let (tx, rx) = mpsc::channel(1024);
        let refused = Arc::new(refused);
        let pending = Arc::new(Semaphore::new(PENDING_HEADERS));
        let acceptor = tokio::spawn(async move {
            loop {
                let (mut stream, peer) = match listener.accept().await {
                    Ok(s) => s,
                    Err(e) => {
                        // Out of files and the like: back off instead of spinning.
                        debug!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                if !proxy_protocol {
                    if tx.send((stream, peer)).await.is_err() {
                        return;
                    }
                    continue;
                }
                let Ok(permit) = pending.clone().try_acquire_owned() else {
                    refused(&ProxyError::Short);
                    continue;
                };
                let (tx, refused) = (tx.clone(), refused.clone());
                tokio::spawn(async move {
                    let _permit = permit;
                    match tokio::time::timeout(HEADER_TIMEOUT, read_header(&mut stream, peer)).await {
                        Ok(Ok(client)) => {
                            let _ = tx.send((stream, client)).await;
                        }
                        Ok(Err(e)) => refused(&e),
                        Err(_) => refused(&ProxyError::Short),
                    }
                });
            }
        });
        Ok(ClientListener { rx, local, acceptor })
    }
}

impl axum::serve::Listener for ClientListener {
    type Io = TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(conn) => conn,
            // The acceptor only ends when this listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

/// An IP network from `HERALD_TRUSTED_PROXIES` (`10.0.0.0/8`, `fd00::/8`, or one address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    addr: IpAddr,
    prefix: u8,
}

impl std::str::FromStr for Network {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (ip, prefix) = s.trim().split_once('/').map_or((s.trim(), None), |(a, p)| (a, Some(p)));
        let addr: IpAddr = ip.parse().map_err(|e| format!("{s:?}: {e}"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(|| format!("{s:?}: bad prefix"))?,
        };
        Ok(Network { addr, prefix })
    }
}

impl Network {
    pub fn contains(&self, ip: IpAddr) -> bool {
        let bits = |ip: IpAddr| match ip {
            IpAddr::V4(v4) => (u128::from(v4.to_bits()) << 96, 32),
            IpAddr::V6(v6) => (v6.to_bits(), 128),
        };
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        let ((net, net_len), (candidate, len)) = (bits(self.addr), bits(ip));
        if net_len != len {
            return false;
        }
        let mask = if self.prefix == 0 { 0 } else { u128::MAX << (128 - u32::from(self.prefix)) };
        net & mask == candidate & mask
    }
}

/// Parses a comma-separated list of networks.
pub fn parse_networks(s: &str) -> Result<Vec<Network>, String> {
    s.split(',').map(str::trim).filter(|n| !n.is_empty()).map(str::parse).collect()
}

/// The client IP: the peer, unless the peer is a trusted proxy; then `X-Forwarded-For` read
/// from the right, skipping trusted proxies, and the first untrusted hop is the client (entries
/// to its left were written by the client itself and prove nothing). Unparseable entries stop
/// the walk at the last trusted hop.
pub fn client_ip(peer: SocketAddr, headers: &HeaderMap, trusted: &[Network]) -> IpAddr {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|n| n.contains(ip));
    let mut client = peer.ip();
    if !is_trusted(client) {
        return client;
    }
    let hops = headers.get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok()).collect::<Vec<_>>();
    for hop in hops.iter().rev().flat_map(|v| v.rsplit(',')) {
        match hop.trim().parse::<IpAddr>() {
            Ok(ip) => {
                client = ip;
                if !is_trusted(ip) {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(cmd: u8, fam: u8, block: &[u8]) -> Vec<u8> {
        let mut h = SIGNATURE.to_vec();
        h.extend([cmd, fam]);
        h.extend((block.len() as u16).to_be_bytes());
        h.extend(block);
        h
    }

    fn parse(bytes: &[u8]) -> Result<Option<SocketAddr>, ProxyError> {
        let head: [u8; 16] = bytes[..16].try_into().unwrap();
        let len = parse_fixed(&head)?;
        parse_source(&head, &bytes[16..16 + len])
    }

    #[test]
    fn reads_v4_v6_and_local_headers() {
        let v4 = header(0x21, 0x11, &[203, 0, 113, 7, 10, 0, 0, 1, 0x1f, 0x90, 0x00, 0x50]);
        assert_eq!(parse(&v4).unwrap(), Some("203.0.113.7:8080".parse().unwrap()));
        let mut block = vec![0u8; 36];
        block[..16].copy_from_slice(&"2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
        block[32..34].copy_from_slice(&443u16.to_be_bytes());
        // TLVs after the addresses (AWS sends its VPC endpoint id this way) are skipped.
        block.extend([0xEA, 0x00, 0x02, 0x01, 0x02]);
        assert_eq!(parse(&header(0x21, 0x21, &block)).unwrap(), Some("[2001:db8::1]:443".parse().unwrap()));
        assert_eq!(parse(&header(0x20, 0x00, &[])).unwrap(), None);
    }

    #[test]
    fn refuses_what_is_not_a_v2_header() {
        let mut http = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
        http.resize(32, 0);
        assert_eq!(parse(&http), Err(ProxyError::Signature));
        assert_eq!(parse(&header(0x11, 0x11, &[0; 12])), Err(ProxyError::Command(0x11)));
        assert_eq!(parse(&header(0x21, 0x11, &[1, 2, 3])), Err(ProxyError::Short));
        let mut long = header(0x21, 0x11, &[]);
        long[14..16].copy_from_slice(&2000u16.to_be_bytes());
        assert_eq!(parse_fixed(&long[..16].try_into().unwrap()), Err(ProxyError::TooLong(2000)));
    }

    #[test]
    fn forwarded_for_is_read_from_the_right_past_trusted_proxies_only() {
        let trusted = parse_networks("10.0.0.0/8, 192.168.1.1").unwrap();
        let xff = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert("x-forwarded-for", v.parse().unwrap());
            h
        };
        let proxy: SocketAddr = "10.1.2.3:5000".parse().unwrap();
        // The client put a fake address first; the rightmost untrusted hop is the real one.
        assert_eq!(
            client_ip(proxy, &xff("1.1.1.1, 198.51.100.4, 192.168.1.1"), &trusted),
            "198.51.100.4".parse::<IpAddr>().unwrap()
        );
        // A peer that is not a trusted proxy is the client, whatever it claims.
        let direct: SocketAddr = "198.51.100.9:5000".parse().unwrap();
        assert_eq!(client_ip(direct, &xff("1.1.1.1"), &trusted), direct.ip());
        // Garbage stops the walk at the last trusted hop.
        assert_eq!(client_ip(proxy, &xff("1.1.1.1, nonsense"), &trusted), proxy.ip());
        assert_eq!(client_ip(proxy, &HeaderMap::new(), &trusted), proxy.ip());
        assert!(parse_networks("10.0.0.0/33").is_err());
        let v6 = parse_networks("fd00::/8").unwrap();
        assert!(v6[0].contains("fd12::1".parse().unwrap()) && !v6[0].contains("10.0.0.1".parse().unwrap()));
    }
}
