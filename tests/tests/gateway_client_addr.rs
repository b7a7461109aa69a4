//! Real client addresses on the real gateway: with `HERALD_PROXY_PROTOCOL` a socket without a
//! valid PROXY v2 header is closed unanswered, and the per-IP limits apply to the address the
//! header carries, each client its own.

use std::net::Ipv4Addr;
use std::time::Duration;

use herald_tests::{Stack, StackOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn proxy_v2(client: Ipv4Addr, port: u16) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.extend([0x21, 0x11, 0x00, 12]);
    h.extend(client.octets());
    h.extend([127, 0, 0, 1]);
    h.extend(port.to_be_bytes());
    h.extend(8080u16.to_be_bytes());
    h
}

/// Sends `prefix` then a WebSocket upgrade; the status of the answer (0: closed unanswered).
async fn upgrade(addr: &str, prefix: &[u8]) -> anyhow::Result<u16> {
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(prefix).await?;
    let req = format!(
        "GET /v1/ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    let _ = s.write_all(req.as_bytes()).await;
    let mut buf = vec![0u8; 512];
    let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await?.unwrap_or(0);
    let text = String::from_utf8_lossy(&buf[..n]).to_string();
    Ok(text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0))
}

#[tokio::test]
async fn proxy_protocol_is_required_and_each_client_address_has_its_own_limit() -> anyhow::Result<()> {
    let env =
        [("HERALD_PROXY_PROTOCOL", "true"), ("HERALD_CONNECT_BURST", "2"), ("HERALD_CONNECTS_PER_IP_PER_SEC", "0.01")];
    let stack = Stack::start(StackOptions {
        env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        ..Default::default()
    })
    .await?;
    let addr = stack.gateway_addr(0);

    // No header: closed without an answer (and nothing gets past it to HTTP).
    assert_eq!(upgrade(addr, b"").await?, 0);
    // A header that is not PROXY v2 (v1 text) is refused the same way.
    assert_eq!(upgrade(addr, b"PROXY TCP4 1.2.3.4 127.0.0.1 5000 8080\r\n").await?, 0);

    // Two clients behind the same proxy address: each gets its own bucket of 2.
    let a = proxy_v2(Ipv4Addr::new(203, 0, 113, 7), 40000);
    let b = proxy_v2(Ipv4Addr::new(198, 51, 100, 9), 40001);
    assert_eq!(upgrade(addr, &a).await?, 101);
    assert_eq!(upgrade(addr, &a).await?, 101);
    assert_eq!(upgrade(addr, &a).await?, 429, "the third connect of one client is over its limit");
    assert_eq!(upgrade(addr, &b).await?, 101, "another client is not limited by the first");
    let metrics = stack.metrics(0).await?;
    assert!(metrics.contains("reason=\"proxy_protocol\"} 2"), "{metrics}");
    Ok(())
}
