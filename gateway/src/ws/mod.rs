//! Herald's WebSocket codec (RFC 6455, server side, no extensions) on the connection's own TCP
//! stream.
//!
//! Why not tungstenite's: an idle socket there keeps a read buffer, a write buffer, two waker
//! proxies and the stream's context for its whole life (~1.1 KB measured with heaptrack at
//! 15,000 sockets). Here an idle socket is the TCP stream and a few empty vectors: bytes are read
//! through a buffer on the poll's stack and kept only when a frame is incomplete, and the write
//! buffer is released once the socket took it. The frames a client sends Herald are small
//! (hello, refresh, ack), so the copies cost nothing that matters.

mod frame;
mod socket;

pub use socket::WebSocket;

/// A whole message, as read or to be written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<CloseFrame>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseFrame {
    pub code: u16,
    pub reason: String,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The peer broke RFC 6455; the connection is failed (§7.1.7).
    #[error("protocol violation: {0}")]
    Protocol(&'static str),
    /// A frame or message over the limit; refused from its header, its payload never read.
    #[error("{size} bytes, over the limit of {max}")]
    TooLarge { size: usize, max: usize },
    /// A message after the close handshake began.
    #[error("the connection is closing")]
    Closed,
}
