//! Process-wide events that every session reacts to: revocations changed, NATS reconnected,
//! `HERALD_USER` recreated (a new epoch), the drain begun.
//!
//! The state is one small value behind a lock; telling the sessions goes through each one's
//! read-state mailbox ([`ReadHub::wake_all`]), which every session already has: a session then
//! waits on one mailbox for read frames and for these, not on a watch channel and a
//! cancellation token besides (~190 bytes of every idle session's future). A session that was
//! busy sees the latest state rather than a backlog, and a burst of changes (a revocation bucket
//! replayed after a reconnect: one change per entry) costs one pass over the sessions per round
//! of [`Events::tell_sessions`], not one per change.

use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use crate::read_events::ReadHub;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Generation {
    pub revocations: u64,
    pub nats_reconnects: u64,
    /// The stream epoch sessions must now use (cursors of another epoch are stale).
    pub epoch: u64,
    /// The gateway is shutting down: sessions announce `reconnect` and end by the deadline.
    pub draining: bool,
}

#[derive(Debug)]
pub struct Events {
    now: Mutex<Generation>,
    /// Holds one permit: the changes made while the sessions are being told make one more round.
    changed: Notify,
    sessions: Arc<ReadHub>,
}

impl Events {
    /// Events told to the sessions registered with `sessions`.
    pub fn new(sessions: Arc<ReadHub>) -> Self {
        Events { now: Mutex::default(), changed: Notify::new(), sessions }
    }

    pub fn current(&self) -> Generation {
        *self.now.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Tells the sessions of every change until dropped (one task per process).
    pub async fn tell_sessions(&self) {
        loop {
            self.changed.notified().await;
            self.sessions.wake_all();
        }
    }

    /// Changes the state with `f` and, when it changed, has every session told.
    fn change(&self, f: impl FnOnce(&mut Generation)) -> bool {
        let changed = {
            let mut g = self.now.lock().unwrap_or_else(|p| p.into_inner());
            let before = *g;
            f(&mut g);
            *g != before
        };
        if changed {
            self.changed.notify_one();
        }
        changed
    }

    pub fn revocations_changed(&self) {
        self.change(|g| g.revocations += 1);
    }

    pub fn nats_reconnected(&self) {
        self.change(|g| g.nats_reconnects += 1);
    }

    /// Records the stream's epoch; sessions hear of it only when it changes.
    pub fn set_epoch(&self, epoch: u64) -> bool {
        self.change(|g| g.epoch = epoch)
    }

    pub fn epoch(&self) -> u64 {
        self.current().epoch
    }

    /// Tells every session that the gateway is draining (once).
    pub fn drain(&self) {
        self.change(|g| g.draining = true);
    }
}
