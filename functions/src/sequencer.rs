//! Keeps per-user order while requests are handled concurrently.
//!
//! Requests arrive from the consumer in stream order and take a [`Ticket`] each. Their slow part
//! (DynamoDB writes, team expansion) runs concurrently, but a request sends its per-user
//! publishes only when its ticket's turn comes, and releases the turn as soon as they are sent
//! (acks are awaited after). One connection delivers publishes in order, so within a runner
//! process `HERALD_USER` stores a user's notifications in the order they were accepted. A ticket
//! dropped early (a failure, a dead letter) releases its turn, so nothing waits forever.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

/// Something to await before publishing, and to release after.
pub trait Turn: Send {
    fn wait(&mut self) -> impl Future<Output = ()> + Send;
    fn release(self);
}

/// No ordering: for callers that handle one request at a time.
impl Turn for () {
    async fn wait(&mut self) {}
    fn release(self) {}
}

#[derive(Debug)]
struct State {
    issued: u64,
    next: u64,
    done: BTreeSet<u64>,
}

#[derive(Debug, Clone)]
pub struct Sequencer {
    state: Arc<Mutex<State>>,
    next: watch::Sender<u64>,
}

impl Default for Sequencer {
    fn default() -> Self {
        Sequencer {
            state: Arc::new(Mutex::new(State { issued: 0, next: 0, done: BTreeSet::new() })),
            next: watch::Sender::new(0),
        }
    }
}

impl Sequencer {
    /// The next ticket, in call order.
    pub fn ticket(&self) -> Ticket {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let n = s.issued;
        s.issued += 1;
        Ticket { n, seq: self.clone(), released: false }
    }

    fn release(&self, n: u64) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.done.insert(n);
        let mut next = s.next;
        while s.done.remove(&next) {
            next += 1;
        }
        if next != s.next {
            s.next = next;
            self.next.send_replace(next);
        }
    }
}

#[derive(Debug)]
pub struct Ticket {
    n: u64,
    seq: Sequencer,
    released: bool,
}

impl Turn for Ticket {
    async fn wait(&mut self) {
        let n = self.n;
        let mut rx = self.seq.next.subscribe();
        // The sender lives in `self.seq`, so the channel cannot close while we wait.
        let _ = rx.wait_for(|next| *next >= n).await;
    }

    fn release(mut self) {
        self.released = true;
        self.seq.release(self.n);
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if !self.released {
            self.seq.release(self.n);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn turns_come_in_ticket_order_and_dropped_tickets_do_not_block() {
        let s = Sequencer::default();
        let (a, b, mut c) = (s.ticket(), s.ticket(), s.ticket());
        let waiter = tokio::spawn(async move {
            c.wait().await;
            c.release();
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "c must wait for a and b");
        drop(b); // released out of order: a still holds the turn
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished());
        a.release();
        tokio::time::timeout(Duration::from_secs(1), waiter).await.unwrap().unwrap();
        let mut d = s.ticket();
        tokio::time::timeout(Duration::from_secs(1), d.wait()).await.unwrap();
    }
}
