//! A session's bounded outbound queue and the one poll that drives its socket both ways.
//!
//! Live frames are queued, never awaited, so a slow reader cannot stall the session: when the
//! queue is past its frame or byte bound the client is closed with 4029, and its reconnect
//! replays what it missed from the stream. Everything queued goes out with one flush (write
//! coalescing), and frames are taken off the queue only once the socket accepted them, so a
//! poll interrupted by another event loses nothing.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::ws::{self, Message};
use futures::{Sink, Stream};
use tokio::time::Instant;

use crate::upgrade::Ws;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

#[derive(Debug)]
pub struct Outbound {
    queue: VecDeque<Message>,
    bytes: usize,
    max_frames: usize,
    max_bytes: usize,
    unflushed: bool,
    /// When the queue last went from empty to not, or the socket last took a frame.
    pub progress_at: Instant,
}

/// What the socket did.
#[derive(Debug)]
pub enum Io {
    Inbound(Option<Result<Message, ws::Error>>),
    WriteFailed,
}

impl Outbound {
    pub fn new(max_frames: usize, max_bytes: usize) -> Self {
        Outbound {
            queue: VecDeque::new(),
            bytes: 0,
            max_frames: max_frames.max(1),
            max_bytes,
            unflushed: false,
            progress_at: Instant::now(),
        }
    }

    pub fn push(&mut self, frame: String) -> Result<(), Full> {
        if self.queue.len() >= self.max_frames || self.bytes + frame.len() > self.max_bytes {
            return Err(Full);
        }
        self.push_message(Message::Text(frame));
        Ok(())
    }

    /// Queues a control or final frame past the bounds (there is at most one of each).
    pub fn push_message(&mut self, message: Message) {
        if self.queue.is_empty() {
            self.progress_at = Instant::now();
        }
        self.bytes += len(&message);
        self.queue.push_back(message);
    }

    /// Frames waiting for the socket.
    pub fn pending(&self) -> usize {
        self.queue.len()
    }

    /// Releases the queue's memory (after a burst, an idle session should cost nothing).
    pub fn shrink(&mut self) {
        if self.queue.is_empty() {
            self.queue = VecDeque::new();
        }
    }

    /// Writes everything queued and flushes, without reading: ready once the queue is empty
    /// (`Err` when the socket failed). Frames written directly after it keep their order.
    pub fn poll_flush_all(&mut self, socket: &mut Ws, cx: &mut Context<'_>) -> Poll<Result<(), ()>> {
        let mut socket = Pin::new(socket);
        while !self.queue.is_empty() {
            match socket.as_mut().poll_ready(cx) {
                Poll::Ready(Ok(())) => {
                    let frame = self.queue.pop_front().expect("checked non-empty");
                    self.bytes -= len(&frame);
                    if socket.as_mut().start_send(frame).is_err() {
                        return Poll::Ready(Err(()));
                    }
                    self.unflushed = true;
                    self.progress_at = Instant::now();
                }
                Poll::Ready(Err(_)) => return Poll::Ready(Err(())),
                Poll::Pending => return Poll::Pending,
            }
        }
        if self.unflushed {
            match socket.as_mut().poll_flush(cx) {
                Poll::Ready(Ok(())) => {
                    self.unflushed = false;
                    self.shrink();
                }
                Poll::Ready(Err(_)) => return Poll::Ready(Err(())),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Writes what the socket takes, flushes, then polls for an inbound message.
    pub fn poll_io(&mut self, socket: &mut Ws, cx: &mut Context<'_>) -> Poll<Io> {
        let mut socket = Pin::new(socket);
        while !self.queue.is_empty() {
            match socket.as_mut().poll_ready(cx) {
                Poll::Ready(Ok(())) => {
                    let frame = self.queue.pop_front().expect("checked non-empty");
                    self.bytes -= len(&frame);
                    if socket.as_mut().start_send(frame).is_err() {
                        return Poll::Ready(Io::WriteFailed);
                    }
                    self.unflushed = true;
                    self.progress_at = Instant::now();
                }
                Poll::Ready(Err(_)) => return Poll::Ready(Io::WriteFailed),
                Poll::Pending => break,
            }
        }
        if self.unflushed {
            match socket.as_mut().poll_flush(cx) {
                Poll::Ready(Ok(())) => {
                    self.unflushed = false;
                    self.shrink();
                }
                Poll::Ready(Err(_)) => return Poll::Ready(Io::WriteFailed),
                Poll::Pending => {}
            }
        }
        socket.poll_next(cx).map(Io::Inbound)
    }
}

fn len(m: &Message) -> usize {
    match m {
        Message::Text(t) => t.len(),
        Message::Binary(b) | Message::Ping(b) | Message::Pong(b) => b.len(),
        Message::Close(_) => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_in_frames_and_bytes() {
        let mut o = Outbound::new(2, 10);
        assert!(o.push("12345".into()).is_ok());
        assert_eq!(o.push("123456".into()), Err(Full), "bytes");
        assert!(o.push("1234".into()).is_ok());
        assert_eq!(o.push("1".into()), Err(Full), "frames");
        assert_eq!(o.pending(), 2);
    }
}
