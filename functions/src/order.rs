//! Per-user order without head-of-line blocking.
//!
//! Every request in hand has a [`Pass`], keyed by its `HERALD_IN` sequence (its acceptance
//! order). Once its recipients are known it *declares* them; it may then send its copy for a
//! user as soon as (1) no request accepted before it is still undeclared, and (2) no request
//! accepted before it still has an unsent copy for that user. So a user's copies enter
//! `HERALD_USER` in acceptance order, while a small request passes a big one that does not
//! share its users (or has already sent its copies to them): a single-user notification waits
//! for a 10,000-member team only until the team is expanded and, if the user is a member,
//! until the team's copy for that user is sent.
//!
//! A request that fails transiently after declaring keeps its place for the copies it did not
//! send ([`Pass::hold`]): later requests for those users wait for its redelivery, which takes the
//! place back (same sequence), until the hold expires. What holds, exactly:
//!
//! - within one process, a user's copies are sent in the acceptance order of the requests in
//!   hand or on hold (sends on one connection are stored in order);
//! - a request redelivered after its hold expired, or to another process, may be stored after
//!   requests accepted later, and so may two requests handled at once by two processes.
//!
//! Every map here is bounded by the requests in hand plus those on hold (at most the consumer's
//! `max_ack_pending`); holds expire on their own.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

#[derive(Debug, Default)]
struct State {
    /// Requests in hand that have not declared their recipients yet.
    undeclared: BTreeSet<u64>,
    /// Per user, the requests that still have an unsent copy for them.
    waiting: HashMap<String, BTreeSet<u64>>,
    claims: HashMap<u64, Claim>,
    generation: u64,
}

#[derive(Debug)]
struct Claim {
    /// The pass that owns it; an older pass of the same request (a redelivery overtook it)
    /// changes nothing.
    generation: u64,
    users: HashSet<String>,
    held_until: Option<Instant>,
}

impl State {
    fn release(&mut self, seq: u64) {
        self.undeclared.remove(&seq);
        if let Some(claim) = self.claims.remove(&seq) {
            for u in claim.users {
                self.unwait(&u, seq);
            }
        }
    }

    fn unwait(&mut self, user: &str, seq: u64) {
        if let Some(w) = self.waiting.get_mut(user) {
            w.remove(&seq);
            if w.is_empty() {
                self.waiting.remove(user);
            }
        }
    }

    fn expire(&mut self, now: Instant) -> bool {
        let expired: Vec<u64> =
            self.claims.iter().filter(|(_, c)| c.held_until.is_some_and(|t| t <= now)).map(|(s, _)| *s).collect();
        for seq in &expired {
            self.release(*seq);
        }
        !expired.is_empty()
    }

    fn owns(&self, seq: u64, generation: u64) -> bool {
        self.claims.get(&seq).is_some_and(|c| c.generation == generation)
    }
}

/// The process's ordering of per-user sends; clones share it.
#[derive(Debug, Clone, Default)]
pub struct Gate {
    state: Arc<Mutex<State>>,
    changed: Arc<Notify>,
}

impl Gate {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A pass for the request with `HERALD_IN` sequence `seq`, taken when it is received. A
    /// redelivery takes back the place its earlier delivery held.
    pub fn enter(&self, seq: u64) -> Pass {
        let mut s = self.lock();
        s.expire(Instant::now());
        s.generation += 1;
        let generation = s.generation;
        match s.claims.get_mut(&seq) {
            Some(claim) => {
                claim.generation = generation;
                claim.held_until = None;
            }
            None => {
                s.claims.insert(seq, Claim { generation, users: HashSet::new(), held_until: None });
                s.undeclared.insert(seq);
            }
        }
        Pass { gate: self.clone(), seq, generation, done: false }
    }
}

/// One request's place in the [`Gate`]; dropping it gives the place up.
#[derive(Debug)]
pub struct Pass {
    gate: Gate,
    seq: u64,
    generation: u64,
    done: bool,
}

impl Pass {
    /// A pass outside any gate: for callers that handle one request at a time.
    pub fn alone(seq: u64) -> Pass {
        Gate::default().enter(seq)
    }

    /// The request's recipients are known: it will send (or skip) a copy for each.
    pub fn declare<'a>(&self, users: impl IntoIterator<Item = &'a String>) {
        let mut s = self.gate.lock();
        if !s.owns(self.seq, self.generation) {
            return;
        }
        let users: Vec<&String> = users.into_iter().collect();
        for u in &users {
            s.waiting.entry((*u).clone()).or_default().insert(self.seq);
        }
        let claim = s.claims.get_mut(&self.seq).expect("owned");
        claim.users.extend(users.into_iter().cloned());
        s.undeclared.remove(&self.seq);
        drop(s);
        self.gate.changed.notify_waiters();
    }

    /// Waits until this request may send its copy for `user` (see the module docs).
    pub async fn turn(&self, user: &str) {
        loop {
            let notified = self.gate.changed.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            {
                let mut s = self.gate.lock();
                if s.expire(Instant::now()) {
                    self.gate.changed.notify_waiters();
                }
                let earlier_undeclared = s.undeclared.range(..self.seq).next().is_some();
                let earlier_copy = s.waiting.get(user).is_some_and(|w| w.range(..self.seq).next().is_some());
                if !earlier_undeclared && !earlier_copy {
                    return;
                }
            }
            // Holds expire without anyone being notified: look again now and then.
            let _ = tokio::time::timeout(Duration::from_millis(250), notified).await;
        }
    }

    /// The copy for `user` is sent (or needs no sending): later requests may send theirs.
    pub fn sent(&self, user: &str) {
        let mut s = self.gate.lock();
        if !s.owns(self.seq, self.generation) {
            return;
        }
        let mut waited = false;
        if let Some(claim) = s.claims.get_mut(&self.seq) {
            waited = claim.users.remove(user);
        }
        if waited {
            s.unwait(user, self.seq);
            drop(s);
            self.gate.changed.notify_waiters();
        }
    }

    /// The request failed and comes again: keep its place for the copies it did not send
    /// until its redelivery takes it back, or for `for_at_most`.
    pub fn hold(mut self, for_at_most: Duration) {
        self.done = true;
        let mut s = self.gate.lock();
        if !s.owns(self.seq, self.generation) {
            return;
        }
        let declared = !s.undeclared.contains(&self.seq);
        let holds_users = s.claims.get(&self.seq).is_some_and(|c| !c.users.is_empty());
        if declared && holds_users {
            if let Some(c) = s.claims.get_mut(&self.seq) {
                c.held_until = Some(Instant::now() + for_at_most);
            }
        } else {
            s.release(self.seq);
        }
        drop(s);
        self.gate.changed.notify_waiters();
    }
}

impl Drop for Pass {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let mut s = self.gate.lock();
        if s.owns(self.seq, self.generation) {
            s.release(self.seq);
            drop(s);
            self.gate.changed.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    async fn passes(p: &Pass, user: &str) -> bool {
        tokio::time::timeout(Duration::from_millis(50), p.turn(user)).await.is_ok()
    }

    #[tokio::test]
    async fn a_later_request_waits_only_for_earlier_copies_of_its_users() {
        let gate = Gate::default();
        let big = gate.enter(1);
        let small = gate.enter(2);
        let other = gate.enter(3);
        small.declare(&users(&["x"]));
        other.declare(&users(&["y"]));
        assert!(!passes(&small, "x").await, "the big one is not expanded yet");
        big.declare(&users(&["x", "z"]));
        assert!(passes(&other, "y").await, "y is not the big one's");
        assert!(!passes(&small, "x").await, "x's copy of the big one comes first");
        big.sent("x");
        assert!(passes(&small, "x").await);
        assert!(passes(&big, "z").await);
    }

    #[tokio::test]
    async fn a_failed_request_keeps_its_place_until_redelivered_or_expired() {
        let gate = Gate::default();
        let first = gate.enter(10);
        first.declare(&users(&["u"]));
        first.hold(Duration::from_millis(300));
        let later = gate.enter(11);
        later.declare(&users(&["u"]));
        assert!(!passes(&later, "u").await, "held for the redelivery");
        let again = gate.enter(10);
        assert!(passes(&again, "u").await, "the redelivery has its place back");
        again.sent("u");
        assert!(passes(&later, "u").await);
        // An undeclared failure holds nothing; an expired hold frees its users.
        let gone = gate.enter(20);
        gone.declare(&users(&["v"]));
        gone.hold(Duration::from_millis(100));
        let next = gate.enter(21);
        next.declare(&users(&["v"]));
        assert!(tokio::time::timeout(Duration::from_secs(2), next.turn("v")).await.is_ok());
        drop(later);
    }

    #[tokio::test]
    async fn a_dropped_pass_frees_its_users() {
        let gate = Gate::default();
        let a = gate.enter(1);
        a.declare(&users(&["u"]));
        let b = gate.enter(2);
        b.declare(&users(&["u"]));
        drop(a);
        assert!(passes(&b, "u").await);
    }
}
