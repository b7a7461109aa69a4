//! Read-state changes reach every device of a user on every gateway: the gateway that made a
//! change publishes it on `herald.state.<token>` (core NATS), as do the functions when they store
//! new unread copies (a count alone); every gateway subscribes once to `herald.state.>` and hands
//! the `read` and `unread` frames to its own sessions of that user.
//!
//! A session's mailbox here is a small queue (a few dozen bytes while empty, like the live
//! mailboxes); past [`MAILBOX`] frames the newest are dropped and counted. These frames are
//! hints on top of the inbox API, which stays the truth: a client that missed one corrects
//! itself at its next `unread` (after every change, `welcome` and `replayed`).

use std::collections::{HashMap, VecDeque};
use std::future::poll_fn;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;

use futures::StreamExt;
use futures::task::AtomicWaker;
pub use herald_core::state::ReadEvent;
use herald_core::subject::{STATE_PREFIX, state_subject, token};
use tracing::warn;

/// Frames one session may have waiting.
const MAILBOX: usize = 32;

/// The frames a device gets for `event`: `read` (with `"read": false` when marked unread), `unread`.
pub fn frames(event: &ReadEvent) -> Vec<Arc<str>> {
    let mut out = Vec::with_capacity(2);
    if !event.ids.is_empty() {
        let mut read = serde_json::json!({"type": "read", "ids": event.ids});
        if !event.read {
            read["read"] = false.into();
        }
        out.push(Arc::from(read.to_string()));
    }
    out.push(Arc::from(crate::protocol::unread(event.unread)));
    out
}

#[derive(Default)]
struct Mailbox {
    queue: Mutex<VecDeque<Arc<str>>>,
    waker: AtomicWaker,
}

/// A user's sessions on this gateway: registration id and mailbox.
type Sessions = Vec<(u64, Arc<Mailbox>)>;

/// Every local session's mailbox, by user token.
#[derive(Default)]
pub struct ReadHub {
    users: Mutex<HashMap<String, Sessions>>,
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
    key: String,
    id: u64,
    mailbox: Arc<Mailbox>,
}

impl ReadHub {
    pub fn register(self: &Arc<Self>, user: &str) -> ReadSub {
        let key = token(user);
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let mailbox = Arc::new(Mailbox::default());
        self.users
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key.clone())
            .or_default()
            .push((id, mailbox.clone()));
        ReadSub { hub: self.clone(), key, id, mailbox }
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
    /// The next frame for this session.
    pub async fn next(&self) -> Arc<str> {
        poll_fn(|cx| {
            if let Some(f) = self.mailbox.queue.lock().unwrap_or_else(|p| p.into_inner()).pop_front() {
                return Poll::Ready(f);
            }
            self.mailbox.waker.register(cx.waker());
            match self.mailbox.queue.lock().unwrap_or_else(|p| p.into_inner()).pop_front() {
                Some(f) => Poll::Ready(f),
                None => Poll::Pending,
            }
        })
        .await
    }
}

impl Drop for ReadSub {
    fn drop(&mut self) {
        let mut users = self.hub.users.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(v) = users.get_mut(&self.key) {
            v.retain(|(id, _)| *id != self.id);
            if v.is_empty() {
                users.remove(&self.key);
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
        let e = ReadEvent { ids: vec!["a".into()], read: false, unread: 3 };
        let f: Vec<serde_json::Value> = frames(&e).iter().map(|f| serde_json::from_str(f).unwrap()).collect();
        assert_eq!(f[0], serde_json::json!({"type": "read", "ids": ["a"], "read": false}));
        assert_eq!(f[1], serde_json::json!({"type": "unread", "count": 3}));
        let all = ReadEvent { ids: vec!["*".into()], read: true, unread: 0 };
        let f: serde_json::Value = serde_json::from_str(&frames(&all)[0]).unwrap();
        assert_eq!(f, serde_json::json!({"type": "read", "ids": ["*"]}));
    }

    #[test]
    fn only_the_users_sessions_get_it_and_a_dropped_registration_is_gone() {
        let hub = Arc::new(ReadHub::default());
        let a = hub.register("a.b");
        let b = hub.register("a");
        hub.deliver(&token("a.b"), &ReadEvent { ids: vec![], read: true, unread: 1 });
        assert_eq!(a.mailbox.queue.lock().unwrap().len(), 1);
        assert!(b.mailbox.queue.lock().unwrap().is_empty());
        drop(a);
        assert!(!hub.users.lock().unwrap().contains_key(&token("a.b")));
    }
}
