//! The seed's load balancer, for real: Debian's HAProxy running the shipped
//! `infra/haproxy/haproxy.cfg` in front of two gateways that require PROXY v2. Clients at several
//! 127.0.0.x addresses each get their own per-IP limit (without the header they would all be
//! HAProxy's one address), and when one gateway drains, its clients come back through HAProxy to
//! the other with every notification exactly once.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use herald_tests::procs::metric;
use herald_tests::raw::{Frame, RawClient};
use herald_tests::servers::Haproxy;
use herald_tests::stack::publish_paced;
use herald_tests::{Stack, StackOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const CLIENTS: u8 = 20;
const NOTIFICATIONS: usize = 150;

fn local(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

/// A WebSocket upgrade from `from` through `addr`: the answer's status and the open socket.
async fn upgrade_from(from: IpAddr, addr: &str) -> anyhow::Result<(u16, TcpStream)> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(from, 0))?;
    let mut s = socket.connect(addr.parse()?).await?;
    let req = format!(
        "GET /v1/ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await?;
    let mut buf = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await??;
    let text = String::from_utf8_lossy(&buf[..n]).to_string();
    Ok((text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0), s))
}

/// Gateway `i`'s open sessions (0 once it is gone).
async fn connections(stack: &Stack, i: usize) -> u64 {
    metric(stack.admin_addr(i), "herald_gateway_connections").await.unwrap_or(0)
}

/// One client at address 127.0.0.`last` through HAProxy until `until`: reconnects with its
/// cursor whenever told to or cut off; every notification id it got, in order (copies kept).
async fn client(url: String, token: String, last: u8, until: Instant) -> (Vec<String>, usize) {
    let (mut ids, mut cursor, mut reconnects) = (Vec::new(), None::<String>, 0);
    while Instant::now() < until {
        let Ok(mut c) = RawClient::connect_from(local(last), &url, &token, cursor.as_deref()).await else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        loop {
            let wait = until.saturating_duration_since(Instant::now());
            match c.next_within(wait).await {
                Ok(Some(Frame::Welcome { cursor: Some(w) })) if cursor.is_none() => cursor = Some(w),
                Ok(Some(Frame::Notification { cursor: k, id, .. })) => {
                    ids.push(id);
                    cursor = Some(k);
                }
                Ok(Some(Frame::Reconnect { after_ms })) => {
                    reconnects += 1;
                    tokio::time::sleep(Duration::from_millis(after_ms)).await;
                    c.close().await;
                    break;
                }
                Ok(Some(Frame::Closed(_))) | Err(_) => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    break;
                }
                Ok(None) => {
                    c.close().await;
                    return (ids, reconnects);
                }
                Ok(Some(_)) => {}
            }
        }
    }
    (ids, reconnects)
}

#[tokio::test]
async fn haproxy_gives_each_client_address_its_own_limit_and_moves_a_drained_gateways_clients_losing_nothing()
-> anyhow::Result<()> {
    let env = [("HERALD_PROXY_PROTOCOL", "true"), ("HERALD_MAX_CONNECTIONS_PER_IP", "2")];
    let mut stack = Stack::start(StackOptions {
        gateways: 2,
        drain_period: Duration::from_secs(3),
        env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        ..Default::default()
    })
    .await?;
    let haproxy = Haproxy::start([stack.gateway_addr(0), stack.gateway_addr(1)])?;
    let addr = haproxy.addr();

    // Each gateway lets one address hold 2 sockets, so HAProxy (least connections) fits 4 from
    // 127.0.0.2 and refuses the fifth; 127.0.0.3 has its own allowance. Behind HAProxy without
    // PROXY v2 both would be 127.0.0.1 and share one.
    let mut held = Vec::new();
    for k in 0..4 {
        let (status, s) = upgrade_from(local(2), &addr).await?;
        assert_eq!(status, 101, "socket {k} of 127.0.0.2");
        held.push(s);
    }
    assert_eq!(upgrade_from(local(2), &addr).await?.0, 429, "the fifth socket of 127.0.0.2");
    let (status, s) = upgrade_from(local(3), &addr).await?;
    assert_eq!(status, 101, "127.0.0.3 is not limited by 127.0.0.2's sockets");
    held.push(s);
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(10);
    while connections(&stack, 0).await + connections(&stack, 1).await > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // 20 clients at 20 addresses, spread over both gateways by HAProxy.
    let url = format!("ws://{addr}/v1/ws");
    let until = Instant::now() + Duration::from_secs(25);
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| tokio::spawn(client(url.clone(), stack.token(&format!("lb-{i}")), 10 + i, until)))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(15);
    let (mut on0, mut on1) = (0, 0);
    while on0 + on1 < u64::from(CLIENTS) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        (on0, on1) = (connections(&stack, 0).await, connections(&stack, 1).await);
    }
    assert_eq!(on0 + on1, u64::from(CLIENTS), "every client connected through HAProxy");
    assert!(on0 > 0 && on1 > 0, "HAProxy spreads clients over both gateways: {on0} and {on1}");

    // Notifications before, during and after gateway 0's drain.
    let mut expected: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut plan = Vec::new();
    for k in 0..NOTIFICATIONS {
        let users = vec![format!("lb-{}", k % 20), format!("lb-{}", (k * 7 + 3) % 20)];
        for u in BTreeSet::from_iter(users.clone()) {
            expected.entry(u).or_default().push(format!("lb-n-{k}"));
        }
        plan.push((format!("lb-n-{k}"), users));
    }
    let publisher = publish_paced(stack.publisher.clone(), plan, Duration::from_millis(20));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (_, gw0) = stack.gateways.remove(0);
    tokio::time::timeout(Duration::from_secs(15), gw0.stop()).await?;
    publisher.await?;

    // Everyone ends on the gateway left, through HAProxy.
    let deadline = Instant::now() + Duration::from_secs(15);
    while connections(&stack, 1).await < u64::from(CLIENTS) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(connections(&stack, 1).await, u64::from(CLIENTS), "every client is on the second gateway");

    let mut moved = 0;
    for (i, c) in clients.into_iter().enumerate() {
        let (ids, reconnects) = c.await?;
        let user = format!("lb-{i}");
        let want = expected.remove(&user).unwrap_or_default();
        let unique: BTreeSet<&String> = ids.iter().collect();
        assert_eq!(unique.len(), ids.len(), "{user} got a notification twice: {ids:?}");
        assert_eq!(unique, want.iter().collect::<BTreeSet<_>>(), "{user} lost a notification");
        moved += usize::from(reconnects > 0);
    }
    assert_eq!(moved as u64, on0, "every client of the drained gateway was told to reconnect");
    Ok(())
}
