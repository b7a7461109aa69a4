//! Process-wide events that every session reacts to: revocations changed, NATS reconnected,
//! `HERALD_USER` recreated (a new epoch).
//!
//! One watch channel carries a pair of counters. A session holds a receiver (a pointer, no
//! buffer), so telling 15,000 sessions costs one store and their wake-ups, and a session that
//! was busy sees the latest state rather than a backlog.

use tokio::sync::watch;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Generation {
    pub revocations: u64,
    pub nats_reconnects: u64,
    /// The stream epoch sessions must now use (cursors of another epoch are stale).
    pub epoch: u64,
}

#[derive(Debug)]
pub struct Events(watch::Sender<Generation>);

impl Default for Events {
    fn default() -> Self {
        Events(watch::Sender::new(Generation::default()))
    }
}

impl Events {
    pub fn subscribe(&self) -> watch::Receiver<Generation> {
        self.0.subscribe()
    }

    pub fn revocations_changed(&self) {
        self.0.send_modify(|g| g.revocations += 1);
    }

    pub fn nats_reconnected(&self) {
        self.0.send_modify(|g| g.nats_reconnects += 1);
    }

    /// Records the stream's epoch; sessions hear of it only when it changes.
    pub fn set_epoch(&self, epoch: u64) -> bool {
        self.0.send_if_modified(|g| std::mem::replace(&mut g.epoch, epoch) != epoch)
    }

    pub fn epoch(&self) -> u64 {
        self.0.borrow().epoch
    }
}
