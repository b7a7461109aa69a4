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
    /// Bytes read past the last whole frame: empty (no allocation) between frames.
    read: Vec<u8>,
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
            partial: None,
            write: Vec::new(),
            written: 0,
            pong: None,
            max: max_message,
            state: State::Open,
        }
    }

    /// Writes everything queued (a pending pong first joins the queue).
    fn poll_write_out(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        if let Some(p) = self.pong.take() {
            frame::encode(&mut self.write, frame::PONG, &p);
        }
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
        Poll::Ready(Ok(()))
    }

    fn fail(&mut self, e: Error) -> Poll<Option<Result<Message, Error>>> {
        self.state = State::Failed;
        self.read = Vec::new();
        self.partial = None;
        Poll::Ready(Some(Err(e)))
    }

    /// The next whole frame in the read buffer, taken off it and unmasked.
    fn take_frame(&mut self) -> Result<Option<(Header, Vec<u8>)>, Error> {
        let Some(h) = Header::parse(&self.read, self.max)? else { return Ok(None) };
        let end = h.len + h.payload;
        if self.read.len() < end {
            return Ok(None);
        }
        let mut payload = self.read[h.len..end].to_vec();
        frame::unmask(&mut payload, h.mask);
        if self.read.len() == end {
            self.read = Vec::new();
        } else {
            self.read.drain(..end);
        }
        Ok(Some((h, payload)))
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
            frame::TEXT | frame::BINARY => {
                if self.partial.is_some() {
                    return Err(Error::Protocol("a new message inside a fragmented one"));
                }
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
                let size = data.len() + payload.len();
                if size > self.max {
                    return Err(Error::TooLarge { size, max: self.max });
                }
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
                Ok(()) => this.read.extend_from_slice(buf.filled()),
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
                frame::encode_close(out, c.as_ref());
                this.pong = None;
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
    //! writing what this one does.

    use futures::{SinkExt, StreamExt};
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;
    use tokio_tungstenite::WebSocketStream;
    use tokio_tungstenite::tungstenite::Message as TMessage;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
    use tokio_tungstenite::tungstenite::protocol::{CloseFrame as TCloseFrame, Role, WebSocketConfig};

    use super::*;

    /// A server socket and a tungstenite client on the two ends of one TCP connection.
    async fn pair(already_read: Vec<u8>, max: usize) -> (WebSocket, WebSocketStream<TcpStream>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let config = WebSocketConfig::default().max_frame_size(Some(1 << 20));
        let client = WebSocketStream::from_raw_socket(client, Role::Client, Some(config)).await;
        (WebSocket::new(server, already_read, max), client)
    }

    #[tokio::test]
    async fn messages_both_ways_fragmented_and_coalesced() {
        let (mut server, mut client) = pair(Vec::new(), 64 * 1024).await;
        client.send(TMessage::text("hello")).await.unwrap();
        assert_eq!(server.next().await.unwrap().unwrap(), Message::Text("hello".into()));
        // A fragmented text message with a ping between its fragments (RFC 6455 §5.4).
        let raw = client.get_mut();
        let frames: [(u8, &[u8]); 3] = [(0x01, "héllo, ".as_bytes()), (0x89, b"p"), (0x80, "wörld".as_bytes())];
        for (first, payload) in frames {
            let mut f = Vec::new();
            frame::encode(&mut f, first & 0x0F, payload);
            f[0] = first;
            f[1] |= 0x80;
            f.splice(2..2, [0, 0, 0, 0]);
            raw.write_all(&f).await.unwrap();
        }
        assert_eq!(server.next().await.unwrap().unwrap(), Message::Ping(b"p".to_vec()));
        assert_eq!(server.next().await.unwrap().unwrap(), Message::Text("héllo, wörld".into()));
        // The ping was answered without the server writing anything itself.
        assert_eq!(client.next().await.unwrap().unwrap(), TMessage::Pong(b"p".to_vec().into()));
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
        let mut early = Vec::new();
        frame::encode(&mut early, frame::TEXT, b"early");
        early[1] |= 0x80;
        early.splice(2..2, [0, 0, 0, 0]);
        let (mut server, mut client) = pair(early, 1024).await;
        client.send(TMessage::text("later")).await.unwrap();
        assert_eq!(server.next().await.unwrap().unwrap(), Message::Text("early".into()));
        assert_eq!(server.next().await.unwrap().unwrap(), Message::Text("later".into()));
    }

    #[tokio::test]
    async fn the_close_handshake_either_way() {
        // The client closes: the server reads it, answers with the same code, and reads no more.
        let (mut server, mut client) = pair(Vec::new(), 1024).await;
        let bye = TCloseFrame { code: CloseCode::Normal, reason: "bye".into() };
        client.send(TMessage::Close(Some(bye))).await.unwrap();
        assert_eq!(
            server.next().await.unwrap().unwrap(),
            Message::Close(Some(CloseFrame { code: 1000, reason: "bye".into() }))
        );
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
        match client.next().await.unwrap().unwrap() {
            TMessage::Close(Some(c)) => assert_eq!((u16::from(c.code), c.reason.as_str()), (4008, "protocol")),
            other => panic!("expected the close, got {other:?}"),
        }
        // tungstenite answers the close as it reads it; flushing sends the answer.
        let _ = client.flush().await;
        assert!(matches!(server.next().await.unwrap().unwrap(), Message::Close(Some(CloseFrame { code: 4008, .. }))));
        assert!(server.next().await.is_none());
    }

    #[tokio::test]
    async fn a_frame_over_the_limit_is_refused_from_its_header() {
        let (mut server, mut client) = pair(Vec::new(), 1000).await;
        client.send(TMessage::text("y".repeat(1001))).await.unwrap();
        assert!(matches!(server.next().await.unwrap(), Err(Error::TooLarge { size: 1001, max: 1000 })));
        assert!(server.next().await.is_none(), "a failed connection reads nothing more");
        // The reason still reaches the client.
        server.send(Message::Close(Some(CloseFrame { code: 4008, reason: "too large".into() }))).await.unwrap();
        match client.next().await.unwrap().unwrap() {
            TMessage::Close(Some(c)) => assert_eq!(u16::from(c.code), 4008),
            other => panic!("expected the close, got {other:?}"),
        }
        // A message over the limit in small fragments is refused too.
        let (mut server, mut client) = pair(Vec::new(), 1000).await;
        let raw = client.get_mut();
        for first in [0x01u8, 0x00, 0x00] {
            let mut f = Vec::new();
            frame::encode(&mut f, first, &[b'z'; 400]);
            f[0] = first;
            f[1] |= 0x80;
            f.splice(4..4, [0, 0, 0, 0]);
            raw.write_all(&f).await.unwrap();
        }
        assert!(matches!(server.next().await.unwrap(), Err(Error::TooLarge { size: 1200, max: 1000 })));
    }

    #[tokio::test]
    async fn what_is_not_websocket_fails_the_connection() {
        let (mut server, mut client) = pair(Vec::new(), 1000).await;
        // Text that is not UTF-8, written raw (tungstenite's client would refuse to send it).
        client.get_mut().write_all(&[0x81, 0x82, 0, 0, 0, 0, 0xC3, 0x28]).await.unwrap();
        assert!(matches!(server.next().await.unwrap(), Err(Error::Protocol(_))));
        let (mut server, mut client) = pair(Vec::new(), 1000).await;
        client.get_mut().write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        assert!(matches!(server.next().await.unwrap(), Err(Error::Protocol(_))));
        // A peer that goes away without a close is the stream's end.
        let (mut server, client) = pair(Vec::new(), 1000).await;
        drop(client);
        assert!(server.next().await.is_none());
    }
}
