//! Read-state changes reach every device of a user on every gateway: the gateway that made a
//! change publishes it on `herald.state.<token>` (core NATS), as do the functions when they store
//! new unread copies (a count alone); every gateway subscribes once to `herald.state.>` and hands
//! the `read` and `unread` frames to its own sessions of that user.
//!
//! A session's mailbox here is a small queue (a few dozen bytes while empty, like the live
//! mailboxes); past [`MAILBOX`] frames the newest are dropped and counted. These frames are
//! hints on top of the inbox API, which stays the truth: a client that missed one corrects
//! itself at its next `unread` (after every change, `welcome` and `replayed`).
//!
//! Counts can arrive out of order (two changes at once, published by two processes), so each
//! carries the user's change number (`rev`), and a session never sends a count older than one
//! it has sent: an `unread` frame with a lower number is skipped (its `read` frame is not).

use std::collections::{HashMap, VecDeque};
use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;

use futures::StreamExt;
use futures::task::AtomicWaker;
pub use herald_core::state::ReadEvent;
use herald_core::subject::{STATE_PREFIX, state_subject, token};
use tracing::warn;

/// Frames one session may have waiting.
const MAILBOX: usize = 32;

/// A frame for a session, and for an `unread` frame the change number of its count.
type Frame = (Arc<str>, Option<u64>);

/// The frames a device gets for `event`: `read` (with `"read": false` when marked unread), `unread`.
pub fn frames(event: &ReadEvent) -> Vec<Frame> {
    let mut out = Vec::with_capacity(2);
    if !event.ids.is_empty() {
        let mut read = serde_json::json!({"type": "read", "ids": event.ids});
        if !event.read {
            read["read"] = false.into();
        }
        out.push((Arc::from(read.to_string()), None));
    }
    out.push((Arc::from(crate::protocol::unread(event.unread)), event.rev));
    out
}

#[derive(Default)]
struct Mailbox {
    queue: Mutex<VecDeque<Frame>>,
    /// A process-wide event happened since the session last looked (`crate::events`).
    events: AtomicBool,
    waker: AtomicWaker,
}

/// What a session's mailbox hands it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Note {
    /// A `read` or `unread` frame to send.
    Frame(Arc<str>),
    /// The process-wide events changed: look at `Events::current`.
    Events,
}

/// A user's sessions on this gateway: registration id and mailbox.
type Sessions = Vec<(u64, Arc<Mailbox>)>;

/// Every local session's mailbox, by user token.
#[derive(Default)]
pub struct ReadHub {
    users: Mutex<HashMap<Arc<str>, Sessions>>,
    next: AtomicU64,
    pub dropped: AtomicU64,
}

impl std::fmt::Debug for ReadHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadHub").finish_non_exhaustive()
    }
}

/// One session's registration; dropping it unregisters.
pub struct ReadSub {
    hub: Arc<ReadHub>,
    /// The map's own key, shared: one copy of the user's token per user, not one per session.
    key: Arc<str>,
    id: u64,
    mailbox: Arc<Mailbox>,
    /// The change number of the newest count this session sent (shared with the session, which
    /// also sends counts of its own after `welcome` and `replayed`).
    sent_rev: Arc<AtomicU64>,
}

impl ReadHub {
    /// Registers a session of `user`; `sent_rev` is its newest count's change number.
    pub fn register(self: &Arc<Self>, user: &str, sent_rev: Arc<AtomicU64>) -> ReadSub {
        let token = token(user);
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let mailbox = Arc::new(Mailbox::default());
        let mut users = self.users.lock().unwrap_or_else(|p| p.into_inner());
        let key = match users.get_key_value(token.as_str()) {
            Some((k, _)) => k.clone(),
            None => Arc::from(token),
        };
        // Most users have one session here: room for one, not the four a first push reserves.
        users.entry(key.clone()).or_insert_with(|| Vec::with_capacity(1)).push((id, mailbox.clone()));
        drop(users);
        ReadSub { hub: self.clone(), key, id, mailbox, sent_rev }
    }

    /// Tells every local session that the process-wide events changed (`crate::events`).
    /// Done under the lock: a wake only schedules the session's task, and copying 15,000
    /// mailbox pointers out first would cost more than the pass itself.
    pub fn wake_all(&self) {
        let users = self.users.lock().unwrap_or_else(|p| p.into_inner());
        for (_, m) in users.values().flatten() {
            m.events.store(true, Ordering::Release);
            m.waker.wake();
        }
    }

    /// Hands an event to every local session of the user with subject token `key`.
    fn deliver(&self, key: &str, event: &ReadEvent) {
        let boxes: Vec<Arc<Mailbox>> = match self.users.lock().unwrap_or_else(|p| p.into_inner()).get(key) {
            Some(v) => v.iter().map(|(_, m)| m.clone()).collect(),
            None => return,
        };
        let frames = frames(event);
        for m in boxes {
            let mut q = m.queue.lock().unwrap_or_else(|p| p.into_inner());
            for f in &frames {
                if q.len() < MAILBOX {
                    q.push_back(f.clone());
                } else {
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
            drop(q);
            m.waker.wake();
        }
    }
}

impl ReadSub {
    /// The next note for this session (events first); counts older than one it sent are
    /// passed over.
    pub async fn next(&self) -> Note {
        poll_fn(|cx| {
            if let Some(f) = self.pop() {
                return Poll::Ready(f);
            }
            self.mailbox.waker.register(cx.waker());
            match self.pop() {
                Some(f) => Poll::Ready(f),
                None => Poll::Pending,
            }
        })
        .await
    }

    fn pop(&self) -> Option<Note> {
        if self.mailbox.events.swap(false, Ordering::AcqRel) {
            return Some(Note::Events);
        }
        let mut q = self.mailbox.queue.lock().unwrap_or_else(|p| p.into_inner());
        while let Some((frame, rev)) = q.pop_front() {
            match rev {
                Some(rev) if rev < self.sent_rev.fetch_max(rev, Ordering::AcqRel) => continue,
                _ => return Some(Note::Frame(frame)),
            }
        }
        None
    }
}

impl Drop for ReadSub {
    fn drop(&mut self) {
        let mut users = self.hub.users.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(v) = users.get_mut(&*self.key) {
            v.retain(|(id, _)| *id != self.id);
            if v.is_empty() {
                users.remove(&*self.key);
            }
        }
    }
}

/// Publishes a change for every device of `user` (this gateway's included: it hears its own).
pub async fn publish(client: &async_nats::Client, user: &str, event: &ReadEvent) {
    let body = serde_json::to_vec(event).expect("a read event serializes");
    if let Err(e) = client.publish(state_subject(user), body.into()).await {
        warn!(error = %e, "publishing a read-state change failed");
    }
}

/// Follows `herald.state.>` until the process ends, handing each event to the local sessions.
pub async fn follow(client: async_nats::Client, hub: Arc<ReadHub>) {
    loop {
        let mut sub = match client.subscribe(format!("{STATE_PREFIX}>")).await {
            Ok(s) => s,
            Err(e) => {
                warn!(error = %e, "subscribing to read-state changes failed; retrying");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                continue;
            }
        };
        while let Some(msg) = sub.next().await {
            let Some(key) = msg.subject.as_str().strip_prefix(STATE_PREFIX) else { continue };
            match serde_json::from_slice::<ReadEvent>(&msg.payload) {
                Ok(event) => hub.deliver(key, &event),
                Err(e) => warn!(error = %e, "unreadable read-state change; ignored"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_follow_the_protocol() {
        let e = ReadEvent { ids: vec!["a".into()], read: false, unread: 3, rev: Some(7) };
        let f: Vec<serde_json::Value> = frames(&e).iter().map(|(f, _)| serde_json::from_str(f).unwrap()).collect();
        assert_eq!(f[0], serde_json::json!({"type": "read", "ids": ["a"], "read": false}));
        assert_eq!(f[1], serde_json::json!({"type": "unread", "count": 3}));
        let all = ReadEvent { ids: vec!["*".into()], read: true, unread: 0, rev: None };
        let f: serde_json::Value = serde_json::from_str(&frames(&all)[0].0).unwrap();
        assert_eq!(f, serde_json::json!({"type": "read", "ids": ["*"]}));
    }

    async fn frame(s: &ReadSub) -> serde_json::Value {
        match s.next().await {
            Note::Frame(f) => serde_json::from_str(&f).unwrap(),
            Note::Events => panic!("a frame expected"),
        }
    }

    #[tokio::test]
    async fn a_count_older_than_one_sent_is_passed_over_but_its_read_frame_is_not() {
        let hub = Arc::new(ReadHub::default());
        let sent = Arc::new(AtomicU64::new(0));
        let s = hub.register("u", sent.clone());
        let key = token("u");
        hub.deliver(&key, &ReadEvent::count(5, 10));
        hub.deliver(&key, &ReadEvent { ids: vec!["x".into()], read: true, unread: 4, rev: Some(9) });
        hub.deliver(&key, &ReadEvent::count(6, 11));
        let got = [frame(&s).await, frame(&s).await, frame(&s).await];
        assert_eq!(got[0], serde_json::json!({"type": "unread", "count": 5}));
        assert_eq!(got[1], serde_json::json!({"type": "read", "ids": ["x"]}));
        assert_eq!(got[2], serde_json::json!({"type": "unread", "count": 6}));
        // The session sent a newer count itself (after `replayed`, say): an older one is skipped.
        sent.fetch_max(20, Ordering::AcqRel);
        hub.deliver(&key, &ReadEvent::count(2, 15));
        hub.deliver(&key, &ReadEvent { ids: vec![], read: false, unread: 1, rev: None });
        assert_eq!(frame(&s).await, serde_json::json!({"type": "unread", "count": 1}));
    }

    #[tokio::test]
    async fn every_session_hears_of_process_events_once_and_before_its_frames() {
        let hub = Arc::new(ReadHub::default());
        let (a, b) = (hub.register("a", Arc::default()), hub.register("b", Arc::default()));
        hub.deliver(&token("a"), &ReadEvent { ids: vec![], read: true, unread: 1, rev: None });
        hub.wake_all();
        hub.wake_all();
        assert_eq!(a.next().await, Note::Events, "events first, twice told once");
        assert_eq!(frame(&a).await, serde_json::json!({"type": "unread", "count": 1}));
        assert_eq!(b.next().await, Note::Events);
        assert!(a.pop().is_none() && b.pop().is_none());
    }

    #[test]
    fn only_the_users_sessions_get_it_and_a_dropped_registration_is_gone() {
        let hub = Arc::new(ReadHub::default());
        let a = hub.register("a.b", Arc::default());
        let b = hub.register("a", Arc::default());
        hub.deliver(&token("a.b"), &ReadEvent { ids: vec![], read: true, unread: 1, rev: None });
        assert_eq!(a.mailbox.queue.lock().unwrap().len(), 1);
        assert!(b.mailbox.queue.lock().unwrap().is_empty());
        drop(a);
        assert!(!hub.users.lock().unwrap().contains_key(token("a.b").as_str()));
    }
}
