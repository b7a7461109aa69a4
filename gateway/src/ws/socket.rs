//! The WebSocket itself: reads messages (answering pings and the close handshake) and writes
//! frames, as a `Stream` and a `Sink` on the bare `TcpStream`.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use futures::{Sink, Stream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::frame::{self, Header};
use super::{CloseFrame, Error, Message};

/// Encoded frames held before `poll_ready` asks the socket to take them: coalesces a burst into
/// few writes and bounds what a sender can pile up between flushes.
const WRITE_HIGH_WATER: usize = 16 * 1024;
/// One read from the socket, on the poll's stack.
const READ_CHUNK: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Open,
    /// The peer's close was read and our answer queued: nothing more is read or sent.
    CloseReceived,
    /// Our close was queued: reading goes on until the peer's answer.
    CloseSent,
    /// The peer broke the protocol: nothing more is read, but our close (the reason) may go.
    Failed,
    /// Both closes seen, the connection failed, or the peer went away.
    Done,
}

#[derive(Debug)]
pub struct WebSocket {
    io: TcpStream,
    /// Bytes read and not yet taken as frames, from `read_at` on: empty (no allocation) between
    /// frames. Frames are taken by moving the offset; the rest moves down once per socket read.
    read: Vec<u8>,
    read_at: usize,
    /// A fragmented message being put together: its opcode and its payload so far.
    partial: Option<(u8, Vec<u8>)>,
    /// Encoded frames the socket has not taken yet, from `written` on.
    write: Vec<u8>,
    written: usize,
    /// The payload of the newest ping not answered yet: a flood of pings is answered once
    /// (RFC 6455 §5.5.3), so it cannot pile up pongs.
    pong: Option<Vec<u8>>,
    /// The largest frame and message accepted from the peer.
    max: usize,
    state: State,
}

impl WebSocket {
    /// A socket after the 101, with whatever the client sent after its request that the HTTP
    /// server had already read.
    pub fn new(io: TcpStream, already_read: Vec<u8>, max_message: usize) -> Self {
        WebSocket {
            io,
            read: already_read,
            read_at: 0,
            partial: None,
            write: Vec::new(),
            written: 0,
            pong: None,
            // Bounded so that a header's length plus its payload cannot overflow.
            max: max_message.min(u32::MAX as usize),
            state: State::Open,
        }
    }

    /// Writes everything queued, then the pending pong. The pong joins the buffer only once
    /// the socket took the rest: while a client does not read, its pings replace one another
    /// instead of piling up pongs.
    fn poll_write_out(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        loop {
            while self.written < self.write.len() {
                match ready!(Pin::new(&mut self.io).poll_write(cx, &self.write[self.written..])) {
                    Ok(0) => return Poll::Ready(Err(io::Error::from(io::ErrorKind::WriteZero).into())),
                    Ok(n) => self.written += n,
                    Err(e) => return Poll::Ready(Err(e.into())),
                }
            }
            // Released, not cleared: an idle socket holds no buffer.
            self.write = Vec::new();
            self.written = 0;
            match self.pong.take() {
                Some(p) => frame::encode(&mut self.write, frame::PONG, &p),
                None => return Poll::Ready(Ok(())),
            }
        }
    }

    fn fail(&mut self, e: Error) -> Poll<Option<Result<Message, Error>>> {
        // Failed only from open: a close already begun stays closed.
        self.state = if self.state == State::Open { State::Failed } else { State::Done };
        self.read = Vec::new();
        self.read_at = 0;
        self.partial = None;
        Poll::Ready(Some(Err(e)))
    }

    /// The next whole frame in the read buffer, taken off it and unmasked.
    fn take_frame(&mut self) -> Result<Option<(Header, Vec<u8>)>, Error> {
        let unread = &self.read[self.read_at..];
        let Some(h) = Header::parse(unread, self.max)? else { return Ok(None) };
        // Refused from the header too, so at most one message's worth is ever held: a
        // continuation that would take its message past the limit, one with nothing to continue,
        // a new message inside a fragmented one.
        match (h.opcode, &self.partial) {
            (frame::CONTINUATION, Some((_, data))) if data.len() + h.payload > self.max => {
                return Err(Error::TooLarge { size: data.len() + h.payload, max: self.max });
            }
            (frame::CONTINUATION, None) => return Err(Error::Protocol("a continuation with no message to continue")),
            (frame::TEXT | frame::BINARY, Some(_)) => {
                return Err(Error::Protocol("a new message inside a fragmented one"));
            }
            _ => {}
        }
        let end = h.len + h.payload;
        if unread.len() < end {
            return Ok(None);
        }
        let mut payload = unread[h.len..end].to_vec();
        frame::unmask(&mut payload, h.mask);
        self.read_at += end;
        if self.read_at == self.read.len() {
            self.read = Vec::new();
            self.read_at = 0;
        } else if self.read_at >= READ_CHUNK {
            // Past a large frame: its buffer is not kept for the bytes after it.
            self.compact();
        }
        Ok(Some((h, payload)))
    }

    /// What is left of the read buffer moves to a buffer of its own size (before a read, or
    /// after a large frame): linear in what is read, however small the frames.
    fn compact(&mut self) {
        if self.read_at > 0 {
            self.read = self.read[self.read_at..].to_vec();
            self.read_at = 0;
        }
    }

    /// What a frame means: a message for the caller, or `None` when it is part of one.
    fn on_frame(&mut self, h: Header, payload: Vec<u8>) -> Result<Option<Message>, Error> {
        match h.opcode {
            frame::PING => {
                if self.state == State::Open {
                    self.pong = Some(payload.clone());
                }
                Ok(Some(Message::Ping(payload)))
            }
            frame::PONG => Ok(Some(Message::Pong(payload))),
            frame::CLOSE => {
                let close = frame::parse_close(&payload)?;
                if close.as_ref().is_some_and(|c| !frame::valid_close_code(c.code)) {
                    return Err(Error::Protocol("a close code a peer may not send"));
                }
                match self.state {
                    State::Open => {
                        // Answered with the peer's own code (RFC 6455 §5.5.1), behind anything
                        // queued before it.
                        self.pong = None;
                        let answer = close.as_ref().map(|c| CloseFrame { code: c.code, reason: String::new() });
                        frame::encode_close(&mut self.write, answer.as_ref());
                        self.state = State::CloseReceived;
                    }
                    State::CloseSent => self.state = State::Done,
                    State::CloseReceived | State::Failed | State::Done => {}
                }
                Ok(Some(Message::Close(close)))
            }
            // Their order against a fragmented message was checked from the header.
            frame::TEXT | frame::BINARY => {
                if h.fin {
                    return message(h.opcode, payload).map(Some);
                }
                self.partial = Some((h.opcode, payload));
                Ok(None)
            }
            _ => {
                let Some((opcode, mut data)) = self.partial.take() else {
                    return Err(Error::Protocol("a continuation with no message to continue"));
                };
                // The total was checked against the limit from the frame's header (`take_frame`).
                data.extend_from_slice(&payload);
                if h.fin {
                    return message(opcode, data).map(Some);
                }
                self.partial = Some((opcode, data));
                Ok(None)
            }
        }
    }
}

fn message(opcode: u8, data: Vec<u8>) -> Result<Message, Error> {
    if opcode == frame::BINARY {
        return Ok(Message::Binary(data));
    }
    String::from_utf8(data).map(Message::Text).map_err(|_| Error::Protocol("a text message that is not UTF-8"))
}

impl Stream for WebSocket {
    type Item = Result<Message, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        // Answers (a pong, our half of the close) go out whoever polls: a session only reading
        // still answers pings.
        if let Poll::Ready(Err(e)) = this.poll_write_out(cx) {
            return this.fail(e);
        }
        loop {
            if matches!(this.state, State::CloseReceived | State::Failed | State::Done) {
                return Poll::Ready(None);
            }
            match this.take_frame() {
                Err(e) => return this.fail(e),
                Ok(Some((h, payload))) => match this.on_frame(h, payload) {
                    Err(e) => return this.fail(e),
                    Ok(Some(m)) => {
                        if matches!(m, Message::Ping(_) | Message::Close(_)) {
                            // Try the answer now; if the socket is full, the next poll sends it.
                            let _ = this.poll_write_out(cx);
                        }
                        return Poll::Ready(Some(Ok(m)));
                    }
                    Ok(None) => continue,
                },
                Ok(None) => {}
            }
            let mut chunk = [0u8; READ_CHUNK];
            let mut buf = ReadBuf::new(&mut chunk);
            match ready!(Pin::new(&mut this.io).poll_read(cx, &mut buf)) {
                Err(e) => return this.fail(e.into()),
                // The peer went away without the closing handshake.
                Ok(()) if buf.filled().is_empty() => {
                    this.state = State::Done;
                    return Poll::Ready(None);
                }
                Ok(()) => {
                    this.compact();
                    this.read.extend_from_slice(buf.filled());
                }
            }
        }
    }
}

impl Sink<Message> for WebSocket {
    type Error = Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let this = self.get_mut();
        if this.write.len() - this.written >= WRITE_HIGH_WATER {
            ready!(this.poll_write_out(cx))?;
        }
        Poll::Ready(Ok(()))
    }

    fn start_send(self: Pin<&mut Self>, message: Message) -> Result<(), Error> {
        let this = self.get_mut();
        if !matches!(this.state, State::Open | State::Failed) {
            return Err(Error::Closed);
        }
        let out = &mut this.write;
        match message {
            Message::Text(t) => frame::encode(out, frame::TEXT, t.as_bytes()),
            Message::Binary(b) => frame::encode(out, frame::BINARY, &b),
            Message::Ping(p) => frame::encode(out, frame::PING, &p),
            Message::Pong(p) => frame::encode(out, frame::PONG, &p),
            Message::Close(c) => {
                // A ping read before our close is still owed its pong (RFC 6455 §5.5.2).
                if let Some(p) = this.pong.take() {
                    frame::encode(out, frame::PONG, &p);
                }
                frame::encode_close(out, c.as_ref());
                // After a failure the peer's answer is not waited for: its bytes are not frames.
                this.state = if this.state == State::Failed { State::Done } else { State::CloseSent };
            }
        }
        Ok(())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let this = self.get_mut();
        ready!(this.poll_write_out(cx))?;
        Pin::new(&mut this.io).poll_flush(cx).map_err(Error::from)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        ready!(self.as_mut().poll_flush(cx))?;
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx).map_err(Error::from)
    }
}

#[cfg(test)]
mod tests {
    //! Against tungstenite's client on a real TCP connection: a second implementation reading and
    //! writing what this one does. Frames a client would never send are written raw.

    use futures::{SinkExt, StreamExt};
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;
    use tokio_tungstenite::WebSocketStream;
    use tokio_tungstenite::tungstenite::Message as TMessage;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
    use tokio_tungstenite::tungstenite::protocol::{CloseFrame as TCloseFrame, Role, WebSocketConfig};

    use super::*;
    use crate::ws::frame::client as raw;

    const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

    /// A server socket and a tungstenite client on the two ends of one TCP connection.
    async fn pair(already_read: Vec<u8>, max: usize) -> (WebSocket, WebSocketStream<TcpStream>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let config = WebSocketConfig::default().max_frame_size(Some(1 << 20));
        let client = WebSocketStream::from_raw_socket(client, Role::Client, Some(config)).await;
        (WebSocket::new(server, already_read, max), client)
    }

    async fn write_raw(client: &mut WebSocketStream<TcpStream>, frames: &[(u8, &[u8])]) {
        let bytes: Vec<u8> = frames.iter().flat_map(|(first, payload)| raw(*first, payload, MASK)).collect();
        client.get_mut().write_all(&bytes).await.unwrap();
    }

    async fn next(server: &mut WebSocket) -> Message {
        server.next().await.unwrap().unwrap()
    }

    #[tokio::test]
    async fn messages_both_ways_fragmented_and_coalesced() {
        let (mut server, mut client) = pair(Vec::new(), 64 * 1024).await;
        client.send(TMessage::text("hello")).await.unwrap();
        assert_eq!(next(&mut server).await, Message::Text("hello".into()));
        // A fragmented text message split inside a character ("é" is C3 A9), a ping between
        // its fragments (RFC 6455 §5.4), many small frames in one read.
        let e = "é".as_bytes();
        write_raw(&mut client, &[(0x01, &[b'h', e[0]]), (0x89, b"p"), (0x00, &[e[1], b'!']), (0x80, b" ok")]).await;
        assert_eq!(next(&mut server).await, Message::Ping(b"p".to_vec()));
        assert_eq!(next(&mut server).await, Message::Text("hé! ok".into()));
        // The ping was answered without the server writing anything itself.
        assert_eq!(client.next().await.unwrap().unwrap(), TMessage::Pong(b"p".to_vec().into()));
        let many: Vec<(u8, &[u8])> = (0..500).map(|_| (0x81u8, &b"ack"[..])).collect();
        write_raw(&mut client, &many).await;
        for _ in 0..500 {
            assert_eq!(next(&mut server).await, Message::Text("ack".into()));
        }
        // Many frames, one flush; sizes across every length form.
        let sizes = [0, 1, 125, 126, 65_535, 65_536, 200_000];
        for n in sizes {
            server.feed(Message::Text("x".repeat(n))).await.unwrap();
        }
        server.flush().await.unwrap();
        for n in sizes {
            assert_eq!(client.next().await.unwrap().unwrap(), TMessage::text("x".repeat(n)));
        }
        assert!(server.write.capacity() == 0 && server.read.capacity() == 0, "an idle socket holds no buffer");
    }

    #[tokio::test]
    async fn bytes_the_http_server_read_past_the_request_come_first() {
        let (mut server, mut client) = pair(raw(0x81, b"early", MASK), 1024).await;
        client.send(TMessage::text("later")).await.unwrap();
        assert_eq!(next(&mut server).await, Message::Text("early".into()));
        assert_eq!(next(&mut server).await, Message::Text("later".into()));
    }

    #[tokio::test]
    async fn pings_from_a_client_that_does_not_read_are_answered_once() {
        let (mut server, mut client) = pair(Vec::new(), 1024).await;
        // Fill the socket until the kernel takes no more (a flush that is pending: the client
        // reads nothing, so it stays full).
        let mut sent = 0;
        loop {
            server.feed(Message::Text("y".repeat(60_000))).await.unwrap();
            sent += 1;
            let flushed = std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut server).poll_flush(cx))).await;
            if flushed.is_pending() {
                break;
            }
        }
        // One more frame past the high-water mark, left unwritten: whatever the kernel takes
        // later, the pongs have writes to wait behind.
        Pin::new(&mut server).start_send(Message::Text("z".repeat(60_000))).unwrap();
        sent += 1;
        let held = server.write.len();
        for i in 0..100u8 {
            write_raw(&mut client, &[(0x89, &[i])]).await;
        }
        for i in 0..100u8 {
            assert_eq!(next(&mut server).await, Message::Ping(vec![i]));
        }
        assert_eq!(server.write.len(), held, "no pong piled up behind the blocked writes");
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(Ok(m)) = client.next().await {
                got.push(m);
            }
            got
        });
        server.flush().await.unwrap();
        server.send(Message::Close(None)).await.unwrap();
        // A client reads on until the server closes the TCP connection.
        drop(server);
        let got = reader.await.unwrap();
        let texts = got.iter().filter(|m| matches!(m, TMessage::Text(_))).count();
        let pongs: Vec<_> = got.iter().filter(|m| matches!(m, TMessage::Pong(_))).collect();
        assert_eq!(texts, sent);
        assert_eq!(pongs, [&TMessage::Pong(vec![99].into())], "one pong, for the newest ping");
    }

    #[tokio::test]
    async fn the_close_handshake_either_way() {
        // The client closes in the middle of a fragmented message (control frames may come
        // between fragments): the server reads it, answers with the same code, reads no more.
        let (mut server, mut client) = pair(Vec::new(), 1024).await;
        write_raw(&mut client, &[(0x01, b"half")]).await;
        let bye = TCloseFrame { code: CloseCode::Normal, reason: "bye".into() };
        client.send(TMessage::Close(Some(bye))).await.unwrap();
        assert_eq!(next(&mut server).await, Message::Close(Some(CloseFrame { code: 1000, reason: "bye".into() })));
        assert!(server.next().await.is_none());
        assert!(matches!(server.send(Message::Text("late".into())).await, Err(Error::Closed)));
        server.flush().await.unwrap();
        match client.next().await.unwrap().unwrap() {
            TMessage::Close(Some(c)) => assert_eq!(c.code, CloseCode::Normal),
            other => panic!("expected the close answer, got {other:?}"),
        }
        // The server closes: the client sees the code, and the server reads until its answer.
        let (mut server, mut client) = pair(Vec::new(), 1024).await;
        server.send(Message::Close(Some(CloseFrame { code: 4008, reason: "protocol".into() }))).await.unwrap();
        assert!(matches!(server.send(Message::Text("late".into())).await, Err(Error::Closed)));
        match client.next().await.unwrap().unwrap() {
            TMessage::Close(Some(c)) => assert_eq!((u16::from(c.code), c.reason.as_str()), (4008, "protocol")),
            other => panic!("expected the close, got {other:?}"),
        }
        // Data the client sent before reading our close is read and passed on, then its close.
        write_raw(&mut client, &[(0x81, b"in flight")]).await;
        assert_eq!(next(&mut server).await, Message::Text("in flight".into()));
        // tungstenite answers the close as it reads it; flushing sends the answer.
        let _ = client.flush().await;
        assert!(matches!(next(&mut server).await, Message::Close(Some(CloseFrame { code: 4008, .. }))));
        assert!(server.next().await.is_none());
        // A close code no peer may send, or a one-byte close payload, fails the connection.
        for payload in [&[0x03, 0xED][..], &[0x03]] {
            let (mut server, mut client) = pair(Vec::new(), 1024).await;
            write_raw(&mut client, &[(0x88, payload)]).await;
            assert!(matches!(server.next().await.unwrap(), Err(Error::Protocol(_))), "{payload:?}");
        }
    }

    #[tokio::test]
    async fn a_frame_over_the_limit_is_refused_from_its_header() {
        let (mut server, mut client) = pair(Vec::new(), 1000).await;
        // Only the header: the payload is never sent, and the refusal does not wait for it.
        client.get_mut().write_all(&raw(0x81, &[0; 70_000], MASK)[..14]).await.unwrap();
        let refused = tokio::time::timeout(std::time::Duration::from_secs(5), server.next()).await;
        assert!(matches!(refused, Ok(Some(Err(Error::TooLarge { size: 70_000, max: 1000 })))));
        assert!(server.next().await.is_none(), "a failed connection reads nothing more");
        // The reason still reaches the client.
        server.send(Message::Close(Some(CloseFrame { code: 4008, reason: "too large".into() }))).await.unwrap();
        match client.next().await.unwrap().unwrap() {
            TMessage::Close(Some(c)) => assert_eq!(u16::from(c.code), 4008),
            other => panic!("expected the close, got {other:?}"),
        }
        // A message over the limit in fragments: refused from the header of the fragment that
        // would pass it, before its payload.
        let (mut server, mut client) = pair(Vec::new(), 1000).await;
        write_raw(&mut client, &[(0x01, &[b'z'; 400]), (0x00, &[b'z'; 400])]).await;
        client.get_mut().write_all(&raw(0x80, &[b'z'; 400], MASK)[..8]).await.unwrap();
        // Bounded: without the check from the header it would wait for the payload forever.
        let refused = tokio::time::timeout(std::time::Duration::from_secs(5), server.next()).await;
        assert!(matches!(refused, Ok(Some(Err(Error::TooLarge { size: 1200, max: 1000 })))));
    }

    #[tokio::test]
    async fn a_large_frame_leaves_no_large_buffer_behind() {
        let (mut server, mut client) = pair(Vec::new(), 64 * 1024).await;
        // A frame at the limit and the first byte of the next, then nothing.
        let mut bytes = raw(0x81, &[b'a'; 64 * 1024], MASK);
        bytes.push(0x81);
        client.get_mut().write_all(&bytes).await.unwrap();
        assert_eq!(next(&mut server).await, Message::Text("a".repeat(64 * 1024)));
        assert!(server.read.capacity() < 64, "{} bytes kept for one", server.read.capacity());
    }

    #[tokio::test]
    async fn what_is_not_websocket_fails_the_connection() {
        let cases: [&[u8]; 4] = [
            // Text that is not UTF-8 (tungstenite's client would refuse to send it).
            &raw(0x81, &[0xC3, 0x28], MASK),
            // A continuation with nothing to continue; a new message inside a fragmented one.
            &raw(0x80, b"x", MASK),
            &[raw(0x01, b"x", MASK), raw(0x81, b"y", MASK)].concat(),
            b"GET / HTTP/1.1\r\n\r\n",
        ];
        for bytes in cases {
            let (mut server, mut client) = pair(Vec::new(), 1000).await;
            client.get_mut().write_all(bytes).await.unwrap();
            assert!(matches!(server.next().await.unwrap(), Err(Error::Protocol(_))), "{bytes:?}");
        }
        // A peer that goes away without a close is the stream's end.
        let (mut server, client) = pair(Vec::new(), 1000).await;
        drop(client);
        assert!(server.next().await.is_none());
    }
}
