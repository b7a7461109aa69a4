//! Per-user order without head-of-line blocking.
//!
//! Every request in hand has a [`Pass`], keyed by its `HERALD_IN` sequence (its acceptance
//! order). Once its recipients are known it *declares* them; it may then send its copy for a
//! user as soon as (1) every request accepted before it has declared, or is expanding teams the
//! user was found not to be in (below), and (2) no request accepted before it still has an
//! unsent copy for that user. So a user's copies enter `HERALD_USER` in acceptance order, while
//! a small request passes a big one that does not share its users (or has already sent its
//! copies to them).
//!
//! A team is expanded by reading every member, which takes a while for a big one. Meanwhile a
//! later request with at most [`ASK_UP_TO`] recipients asks the store, for each of its users,
//! whether the user is in the team (a consistent read), and waits only if so. It waits without
//! asking when the user is named directly by the earlier request, when that request names more
//! than [`ASK_TEAMS_UP_TO`] teams or is not parsed yet, when it has asked [`ASK_BUDGET`]
//! questions already, and when the store fails to answer. A user found outside is left out of
//! the team's copies even if the expansion, read a moment later, finds them (they joined in
//! between), also by a redelivery of the team within the hold: membership is taken, per user,
//! at some moment between acceptance and expansion.
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
//! `max_ack_pending`), and what was asked about a team by their users ([`ASK_UP_TO`] each);
//! holds expire on their own.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// A request with more recipients than this waits for earlier teams to be expanded rather than
/// asking about each of its users.
pub const ASK_UP_TO: usize = 100;
/// Questions one request may ask in all (one per user and team); past them it waits.
const ASK_BUDGET: usize = 100;
/// A request naming more teams than this is waited for, not asked about.
const ASK_TEAMS_UP_TO: usize = 4;
/// How often a waiting request looks again on its own (holds expire without a wake-up).
const LOOK_AGAIN: Duration = Duration::from_millis(250);

/// Whether a user is in a team, asked while the team is being expanded.
pub trait Membership: Sync {
    /// Whether `user` is in `team` now (a consistent read); a failure counts as yes (wait).
    fn is_member(&self, team: &str, user: &str) -> impl Future<Output = bool> + Send;
}

#[derive(Debug, Default)]
struct State {
    /// Requests in hand that have not declared their recipients yet.
    undeclared: BTreeSet<u64>,
    /// Per user, the requests that still have an unsent copy for them.
    waiting: HashMap<String, BTreeSet<u64>>,
    claims: HashMap<u64, Claim>,
    /// The `outside` of requests released on a failure, until their redelivery takes it back
    /// or the hold would have expired.
    left_out: HashMap<u64, (HashSet<String>, Instant)>,
    generation: u64,
}

#[derive(Debug)]
struct Claim {
    /// The pass that owns it; an older pass of the same request (a redelivery overtook it)
    /// changes nothing.
    generation: u64,
    users: HashSet<String>,
    held_until: Option<Instant>,
    /// Undeclared and expanding teams: what later requests may ask about.
    expanding: Option<Expanding>,
    /// Users later requests found outside the request's teams: left out when it declares.
    outside: HashSet<String>,
    /// Declared with at most [`ASK_UP_TO`] recipients.
    may_ask: bool,
}

/// What is known of a request whose teams are being expanded.
#[derive(Debug, Default)]
struct Expanding {
    /// Its users named directly.
    users: HashSet<String>,
    teams: Vec<String>,
    /// Users found in one of the teams: later requests wait for the declaration.
    members: HashSet<String>,
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
        self.left_out.retain(|_, (_, until)| *until > now);
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

    /// For the request `seq`'s copy for `user`, given no earlier request has an unsent copy for
    /// them: `Some` of the earlier expanding requests whose teams must be asked about (empty:
    /// the copy may go now), or `None` when it must wait for an earlier declaration.
    fn to_ask(&self, seq: u64, user: &str) -> Option<Vec<(u64, Vec<String>)>> {
        let may_ask = self.claims.get(&seq).is_some_and(|c| c.may_ask);
        let mut ask = Vec::new();
        for earlier in self.undeclared.range(..seq) {
            let claim = self.claims.get(earlier)?;
            let expanding = claim.expanding.as_ref()?;
            if claim.outside.contains(user) {
                continue;
            }
            if !may_ask
                || expanding.teams.len() > ASK_TEAMS_UP_TO
                || expanding.users.contains(user)
                || expanding.members.contains(user)
            {
                return None;
            }
            ask.push((*earlier, expanding.teams.clone()));
        }
        Some(ask)
    }

    /// Whether `earlier` is still expanding its teams (answers about it still count).
    fn still_expanding(&self, earlier: u64) -> bool {
        self.undeclared.contains(&earlier) && self.claims.get(&earlier).is_some_and(|c| c.expanding.is_some())
    }

    /// A later request asked whether `user` is in the teams of `earlier`, still expanding.
    fn found(&mut self, earlier: u64, user: &str, member: bool) {
        if !self.undeclared.contains(&earlier) {
            return;
        }
        let Some(claim) = self.claims.get_mut(&earlier) else { return };
        match (member, claim.expanding.as_mut()) {
            (true, Some(e)) => {
                e.members.insert(user.to_owned());
            }
            (false, Some(_)) => {
                claim.outside.insert(user.to_owned());
            }
            (_, None) => {}
        }
    }
}

/// The process's ordering of per-user sends; clones share it.
#[derive(Debug, Clone, Default)]
pub struct Gate {
    state: Arc<Mutex<State>>,
    changed: Arc<Notify>,
    /// [`LOOK_AGAIN`]; tests lengthen it to show that a wake-up came.
    look_again: Option<Duration>,
}

impl Gate {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A gate whose waiting requests never look again on their own: only a wake-up moves them.
    #[cfg(test)]
    pub(crate) fn deaf() -> Gate {
        Gate { look_again: Some(Duration::from_secs(3600)), ..Gate::default() }
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
                let claim = Claim {
                    generation,
                    users: HashSet::new(),
                    held_until: None,
                    expanding: None,
                    outside: s.left_out.remove(&seq).map(|(o, _)| o).unwrap_or_default(),
                    may_ask: false,
                };
                s.claims.insert(seq, claim);
                s.undeclared.insert(seq);
            }
        }
        Pass { gate: self.clone(), seq, generation, done: false, asked: AtomicUsize::new(0) }
    }
}

/// One request's place in the [`Gate`]; dropping it gives the place up.
#[derive(Debug)]
pub struct Pass {
    gate: Gate,
    seq: u64,
    generation: u64,
    done: bool,
    /// Questions asked so far (at most [`ASK_BUDGET`]).
    asked: AtomicUsize,
}

impl Pass {
    /// A pass outside any gate: for callers that handle one request at a time.
    pub fn alone(seq: u64) -> Pass {
        Gate::default().enter(seq)
    }

    /// The request's `teams` are being expanded; `users` are the ones it names directly. Later
    /// requests may ask about their users meanwhile instead of waiting (see the module docs).
    pub fn expanding(&self, users: &[String], teams: &[String]) {
        let mut s = self.gate.lock();
        if !s.owns(self.seq, self.generation) || !s.undeclared.contains(&self.seq) {
            return;
        }
        let claim = s.claims.get_mut(&self.seq).expect("owned");
        claim.expanding =
            Some(Expanding { users: users.iter().cloned().collect(), teams: teams.to_vec(), members: HashSet::new() });
        drop(s);
        // Requests already waiting behind this one may ask now.
        self.gate.changed.notify_waiters();
    }

    /// The request's recipients are known: it will send (or skip) a copy for each. Users a
    /// later request found outside its teams meanwhile are taken out of `users`.
    pub fn declare(&self, users: &mut Vec<String>) {
        let mut s = self.gate.lock();
        // Even for a pass a redelivery overtook (whose claim may be released by now, its
        // findings kept): later requests went ahead of these users.
        let outside = match s.claims.get(&self.seq) {
            Some(claim) => Some(&claim.outside),
            None => s.left_out.get(&self.seq).map(|(o, _)| o),
        };
        if let Some(outside) = outside.filter(|o| !o.is_empty()) {
            users.retain(|u| !outside.contains(u));
        }
        if !s.owns(self.seq, self.generation) {
            return;
        }
        let claim = s.claims.get_mut(&self.seq).expect("owned");
        claim.users.extend(users.iter().cloned());
        claim.expanding = None;
        claim.may_ask = users.len() <= ASK_UP_TO;
        for u in users.iter() {
            s.waiting.entry(u.clone()).or_default().insert(self.seq);
        }
        s.undeclared.remove(&self.seq);
        drop(s);
        self.gate.changed.notify_waiters();
    }

    /// Waits until this request may send its copy for `user` (see the module docs); earlier
    /// teams still being expanded are asked about through `members`.
    pub async fn turn(&self, user: &str, members: &impl Membership) {
        loop {
            let notified = self.gate.changed.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            let ask = {
                let mut s = self.gate.lock();
                if s.expire(Instant::now()) {
                    self.gate.changed.notify_waiters();
                }
                let earlier_copy = s.waiting.get(user).is_some_and(|w| w.range(..self.seq).next().is_some());
                match earlier_copy {
                    true => None,
                    false => s.to_ask(self.seq, user),
                }
            };
            let ask = ask.filter(|a| a.is_empty() || self.asked.load(Relaxed) < ASK_BUDGET);
            match ask {
                Some(ask) if ask.is_empty() => return,
                Some(ask) => {
                    'earlier: for (earlier, teams) in ask {
                        let mut member = false;
                        for team in &teams {
                            if !self.gate.lock().still_expanding(earlier) {
                                continue 'earlier;
                            }
                            if self.asked.fetch_add(1, Relaxed) >= ASK_BUDGET {
                                // Out of questions, this earlier request not fully asked about:
                                // nothing is recorded, and the next look waits.
                                break 'earlier;
                            }
                            if members.is_member(team, user).await {
                                member = true;
                                break;
                            }
                        }
                        self.gate.lock().found(earlier, user, member);
                        if member {
                            break; // it waits for that one anyway
                        }
                    }
                    // Look again at once: the answers decide, unless the teams were declared
                    // meanwhile (then their copies do).
                }
                // Holds expire without anyone being notified: look again now and then.
                None => {
                    let look_again = self.gate.look_again.unwrap_or(LOOK_AGAIN);
                    let _ = tokio::time::timeout(look_again, notified).await;
                }
            }
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
            // Its redelivery expands again: it must still leave out the users found outside.
            if let Some(c) = s.claims.get_mut(&self.seq).filter(|c| !c.outside.is_empty()) {
                let outside = std::mem::take(&mut c.outside);
                s.left_out.insert(self.seq, (outside, Instant::now() + for_at_most));
            }
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

    /// Teams as the store would answer, and every question asked.
    #[derive(Default)]
    struct Teams {
        members: Mutex<HashMap<String, HashSet<String>>>,
        asked: Mutex<Vec<(String, String)>>,
    }

    impl Teams {
        fn with(team: &str, names: &[&str]) -> Teams {
            let t = Teams::default();
            t.members.lock().unwrap().insert(team.to_owned(), names.iter().map(|s| s.to_string()).collect());
            t
        }

        fn join(&self, team: &str, user: &str) {
            self.members.lock().unwrap().entry(team.to_owned()).or_default().insert(user.to_owned());
        }

        fn asked(&self) -> usize {
            self.asked.lock().unwrap().len()
        }
    }

    impl Membership for Teams {
        async fn is_member(&self, team: &str, user: &str) -> bool {
            self.asked.lock().unwrap().push((team.to_owned(), user.to_owned()));
            self.members.lock().unwrap().get(team).is_some_and(|m| m.contains(user))
        }
    }

    async fn passes(p: &Pass, user: &str) -> bool {
        passes_with(p, user, &Teams::default()).await
    }

    async fn passes_with(p: &Pass, user: &str, teams: &Teams) -> bool {
        tokio::time::timeout(Duration::from_millis(50), p.turn(user, teams)).await.is_ok()
    }

    #[tokio::test]
    async fn a_later_request_waits_only_for_earlier_copies_of_its_users() {
        let gate = Gate::default();
        let big = gate.enter(1);
        let small = gate.enter(2);
        let other = gate.enter(3);
        small.declare(&mut users(&["x"]));
        other.declare(&mut users(&["y"]));
        assert!(!passes(&small, "x").await, "the big one is not expanded yet");
        big.declare(&mut users(&["x", "z"]));
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
        first.declare(&mut users(&["u"]));
        first.hold(Duration::from_millis(300));
        let later = gate.enter(11);
        later.declare(&mut users(&["u"]));
        assert!(!passes(&later, "u").await, "held for the redelivery");
        let again = gate.enter(10);
        assert!(passes(&again, "u").await, "the redelivery has its place back");
        again.sent("u");
        assert!(passes(&later, "u").await);
        // An undeclared failure holds nothing; an expired hold frees its users.
        let gone = gate.enter(20);
        gone.declare(&mut users(&["v"]));
        gone.hold(Duration::from_millis(100));
        let next = gate.enter(21);
        next.declare(&mut users(&["v"]));
        assert!(tokio::time::timeout(Duration::from_secs(2), next.turn("v", &Teams::default())).await.is_ok());
        drop(later);
    }

    #[tokio::test]
    async fn a_dropped_pass_frees_its_users() {
        let gate = Gate::default();
        let a = gate.enter(1);
        a.declare(&mut users(&["u"]));
        let b = gate.enter(2);
        b.declare(&mut users(&["u"]));
        drop(a);
        assert!(passes(&b, "u").await);
    }

    #[tokio::test]
    async fn a_small_request_asks_about_an_expanding_team_instead_of_waiting_for_it() {
        let gate = Gate::default();
        let teams = Teams::with("crowd", &["m1", "m2"]);
        let team = gate.enter(1);
        team.expanding(&users(&["named"]), &users(&["crowd"]));
        let (outsider, member, named) = (gate.enter(2), gate.enter(3), gate.enter(4));
        outsider.declare(&mut users(&["solo"]));
        member.declare(&mut users(&["m1"]));
        named.declare(&mut users(&["named"]));
        assert!(passes_with(&outsider, "solo", &teams).await, "solo is in no team of the earlier request");
        assert!(!passes_with(&member, "m1", &teams).await, "m1 waits for the team's copy");
        assert!(!passes_with(&named, "named", &teams).await, "named directly: no need to ask");
        assert_eq!(teams.asked(), 2);
        // The expansion, read a moment later, finds solo too (joined in between): solo was found
        // outside, so the team leaves solo out and solo's order holds.
        teams.join("crowd", "solo");
        let mut expanded = users(&["named", "m1", "m2", "solo"]);
        team.declare(&mut expanded);
        assert_eq!(expanded, users(&["named", "m1", "m2"]));
        assert!(!passes_with(&member, "m1", &teams).await);
        team.sent("m1");
        team.sent("named");
        assert!(passes_with(&member, "m1", &teams).await);
        assert!(passes_with(&named, "named", &teams).await);
    }

    #[tokio::test]
    async fn a_big_request_or_an_unexpanded_one_waits_without_asking() {
        let gate = Gate::default();
        let teams = Teams::with("crowd", &["m1"]);
        let team = gate.enter(1);
        team.expanding(&[], &users(&["crowd"]));
        let big = gate.enter(2);
        let mut many: Vec<String> = (0..=ASK_UP_TO).map(|i| format!("u{i}")).collect();
        big.declare(&mut many);
        assert!(!passes_with(&big, "u0", &teams).await, "too many users to ask about each");
        // A request not yet parsed (no teams known) holds everyone after it, and so does one
        // naming too many teams to ask about.
        let unknown = gate.enter(3);
        let wide = gate.enter(4);
        let teams_of_wide: Vec<String> = (0..=ASK_TEAMS_UP_TO).map(|i| format!("t{i}")).collect();
        wide.expanding(&[], &teams_of_wide);
        let small = gate.enter(5);
        small.declare(&mut users(&["solo"]));
        assert!(!passes_with(&small, "solo", &teams).await, "request 3 may name solo");
        team.declare(&mut users(&["m1"]));
        assert!(!passes_with(&small, "solo", &teams).await, "request 3 may still name solo");
        unknown.declare(&mut users(&["other"]));
        assert!(!passes_with(&small, "solo", &teams).await, "request 4 names too many teams to ask about");
        assert_eq!(teams.asked(), 0);
        wide.declare(&mut users(&["w"]));
        assert!(passes_with(&small, "solo", &teams).await);
        assert!(passes_with(&big, "u0", &teams).await, "the team is declared: u0 is not in it");
    }

    #[tokio::test]
    async fn a_team_starting_its_expansion_wakes_the_requests_waiting_behind_it() {
        let gate = Gate::deaf();
        let teams = Teams::with("crowd", &["m1"]);
        let team = gate.enter(1);
        let small = gate.enter(2);
        small.declare(&mut users(&["solo"]));
        let waiting = tokio::time::timeout(Duration::from_secs(5), small.turn("solo", &teams));
        let announce = async {
            tokio::task::yield_now().await;
            team.expanding(&[], &users(&["crowd"]));
        };
        let (waited, ()) = futures::join!(waiting, announce);
        assert!(waited.is_ok(), "woken when the team began expanding");
        assert_eq!(teams.asked(), 1);
    }

    #[tokio::test]
    async fn a_request_asks_at_most_its_budget_of_questions_then_waits() {
        let gate = Gate::default();
        let teams = Teams::default();
        let (a, b) = (gate.enter(1), gate.enter(2));
        a.expanding(&[], &users(&["t1", "t2"]));
        b.expanding(&[], &users(&["t3"]));
        let small = gate.enter(3);
        let mut names: Vec<String> = (0..ASK_UP_TO).map(|i| format!("u{i}")).collect();
        small.declare(&mut names);
        // Three questions per user (two teams of one request, one of the other).
        let answered = ASK_BUDGET / 3;
        for name in &names[..answered] {
            assert!(passes_with(&small, name, &teams).await, "{name} is in none of the teams");
        }
        assert!(!passes_with(&small, &names[answered], &teams).await, "out of questions: it waits");
        assert!(teams.asked() <= ASK_BUDGET, "{} questions", teams.asked());
        a.declare(&mut users(&["m"]));
        b.declare(&mut users(&["m"]));
        assert!(passes_with(&small, &names[answered], &teams).await, "declared: no question needed");
    }

    #[tokio::test]
    async fn an_overtaken_delivery_leaves_out_what_a_failed_redelivery_found() {
        let gate = Gate::default();
        let teams = Teams::with("crowd", &["m1"]);
        let first = gate.enter(1);
        first.expanding(&[], &users(&["crowd"]));
        let again = gate.enter(1);
        again.expanding(&[], &users(&["crowd"]));
        let small = gate.enter(2);
        small.declare(&mut users(&["solo"]));
        assert!(passes_with(&small, "solo", &teams).await);
        // The redelivery fails before declaring; then the overtaken delivery declares.
        again.hold(Duration::from_secs(60));
        let mut seen = users(&["m1", "solo"]);
        first.declare(&mut seen);
        assert_eq!(seen, users(&["m1"]));
    }

    #[tokio::test]
    async fn users_found_outside_stay_out_across_an_overtaking_redelivery_and_a_failure() {
        let gate = Gate::default();
        let teams = Teams::with("crowd", &["m1"]);
        // A delivery of the team overtaken by its redelivery, both expanding.
        let first = gate.enter(1);
        first.expanding(&[], &users(&["crowd"]));
        let small = gate.enter(2);
        small.declare(&mut users(&["solo"]));
        assert!(passes_with(&small, "solo", &teams).await);
        let again = gate.enter(1);
        again.expanding(&[], &users(&["crowd"]));
        teams.join("crowd", "solo");
        let mut seen_by_first = users(&["m1", "solo"]);
        first.declare(&mut seen_by_first);
        assert_eq!(seen_by_first, users(&["m1"]), "the overtaken delivery leaves solo out too");
        // The redelivery fails before declaring: its place is given up, not what was found.
        again.hold(Duration::from_secs(60));
        let third = gate.enter(1);
        third.expanding(&[], &users(&["crowd"]));
        let mut seen_by_third = users(&["m1", "solo"]);
        third.declare(&mut seen_by_third);
        assert_eq!(seen_by_third, users(&["m1"]), "the next redelivery leaves solo out");
        drop(small);
    }
}
