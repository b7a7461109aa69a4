//! Property tests of Herald's WebSocket codec on a real TCP connection: whatever the fragments,
//! the masks, where the HTTP server stopped reading and how the bytes are cut by the network,
//! the server reads back exactly the messages the client sent, in order.

use std::time::Duration;

use futures::StreamExt;
use herald_gateway::ws::{Message, WebSocket};
use proptest::prelude::*;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

/// What a client sends: a data message in `fragments` pieces, or a ping.
#[derive(Debug, Clone)]
enum Sent {
    Text(String, usize),
    Binary(Vec<u8>, usize),
    Ping(Vec<u8>),
}

fn sent() -> impl Strategy<Value = Sent> {
    prop_oneof![
        ("\\PC{0,300}", 1usize..5).prop_map(|(t, f)| Sent::Text(t, f)),
        (prop::collection::vec(any::<u8>(), 0..2000), 1usize..5).prop_map(|(b, f)| Sent::Binary(b, f)),
        prop::collection::vec(any::<u8>(), 0..126).prop_map(Sent::Ping),
    ]
}

/// One client frame: FIN, opcode, the mask, the masked payload.
fn frame(out: &mut Vec<u8>, fin: bool, opcode: u8, payload: &[u8], mask: [u8; 4]) {
    out.push(if fin { 0x80 } else { 0 } | opcode);
    match payload.len() {
        n @ 0..=125 => out.push(0x80 | n as u8),
        n @ 126..=0xFFFF => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
}

/// The bytes of a message cut into `pieces` fragments (anywhere, even inside a character).
fn fragments(out: &mut Vec<u8>, opcode: u8, payload: &[u8], pieces: usize, mask: [u8; 4]) {
    let size = payload.len().div_ceil(pieces).max(1);
    let chunks: Vec<&[u8]> = if payload.is_empty() { vec![&[][..]] } else { payload.chunks(size).collect() };
    for (i, chunk) in chunks.iter().enumerate() {
        frame(out, i + 1 == chunks.len(), if i == 0 { opcode } else { 0 }, chunk, mask);
    }
}

async fn round_trip(messages: Vec<Sent>, mask: [u8; 4], already: usize, cuts: Vec<usize>) -> Vec<Message> {
    let mut bytes = Vec::new();
    for m in &messages {
        match m {
            Sent::Text(t, f) => fragments(&mut bytes, 1, t.as_bytes(), *f, mask),
            Sent::Binary(b, f) => fragments(&mut bytes, 2, b, *f, mask),
            Sent::Ping(p) => frame(&mut bytes, true, 9, p, mask),
        }
    }
    let already = already.min(bytes.len());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
    let (server, _) = listener.accept().await.unwrap();
    let mut ws = WebSocket::new(server, bytes[..already].to_vec(), 64 * 1024);
    let rest = bytes[already..].to_vec();
    let writer = tokio::spawn(async move {
        let mut at = 0;
        for cut in cuts.iter().cycle() {
            if at >= rest.len() {
                break;
            }
            let end = (at + cut).min(rest.len());
            client.write_all(&rest[at..end]).await.unwrap();
            client.flush().await.unwrap();
            tokio::task::yield_now().await;
            at = end;
        }
        client
    });
    let mut got = Vec::new();
    for _ in 0..messages.len() {
        let next = tokio::time::timeout(Duration::from_secs(5), ws.next()).await;
        got.push(next.expect("a message within 5 s").expect("not the end").expect("not an error"));
    }
    drop(writer.await.unwrap());
    got
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn the_server_reads_back_what_the_client_sent(
        messages in prop::collection::vec(sent(), 1..12),
        mask in any::<[u8; 4]>(),
        already in 0usize..64,
        cuts in prop::collection::vec(1usize..700, 1..8),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let got = runtime.block_on(round_trip(messages.clone(), mask, already, cuts));
        let want: Vec<Message> = messages
            .into_iter()
            .map(|m| match m {
                Sent::Text(t, _) => Message::Text(t),
                Sent::Binary(b, _) => Message::Binary(b),
                Sent::Ping(p) => Message::Ping(p),
            })
            .collect();
        prop_assert_eq!(got, want);
    }
}
