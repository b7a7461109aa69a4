//! A worker's account of every notification: per user and phase, a bitmap of the sequences that
//! arrived (so losses, copies and reordering are counted exactly, not estimated), and per phase
//! an HDR histogram of publish→receive latency over first arrivals.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};

use crate::wire::{Expected, PhaseReport, Stamp};

/// Latencies are recorded in µs up to an hour; 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

pub fn encode(h: &Histogram<u64>) -> String {
    let mut buf = Vec::new();
    V2Serializer::new().serialize(h, &mut buf).expect("serializing into a Vec cannot fail");
    base64::engine::general_purpose::STANDARD.encode(buf)
}

pub fn decode(s: &str) -> Option<Histogram<u64>> {
    let bytes = base64::engine::general_purpose::STANDARD.decode(s).ok()?;
    Deserializer::new().deserialize(&mut bytes.as_slice()).ok()
}

/// A sequence this high is not one the bench sent; ignoring it keeps a bitmap bounded.
const MAX_SEQ: u64 = 1 << 22;

#[derive(Default)]
struct PhaseLog {
    bits: Vec<u64>,
    max: Option<u64>,
    duplicated: u64,
    out_of_order: u64,
}

impl PhaseLog {
    /// Marks `seq` as arrived; true on its first arrival.
    fn mark(&mut self, seq: u64) -> bool {
        let (word, bit) = ((seq / 64) as usize, 1u64 << (seq % 64));
        if self.bits.len() <= word {
            self.bits.resize(word + 1, 0);
        }
        if self.bits[word] & bit != 0 {
            self.duplicated += 1;
            return false;
        }
        self.bits[word] |= bit;
        if self.max.is_some_and(|m| seq < m) {
            self.out_of_order += 1;
        }
        self.max = Some(self.max.map_or(seq, |m| m.max(seq)));
        true
    }

    fn has(&self, seq: u64) -> bool {
        self.bits.get((seq / 64) as usize).is_some_and(|w| w & (1 << (seq % 64)) != 0)
    }
}

/// A user's phases: few, so a small list beats a map.
#[derive(Default)]
struct UserLog(Vec<(u32, PhaseLog)>);

impl UserLog {
    fn phase(&mut self, p: u32) -> &mut PhaseLog {
        let i = match self.0.iter().position(|(q, _)| *q == p) {
            Some(i) => i,
            None => {
                self.0.push((p, PhaseLog::default()));
                self.0.len() - 1
            }
        };
        &mut self.0[i].1
    }
}

struct PhaseLatency {
    hist: Histogram<u64>,
    first_us: u64,
    last_us: u64,
}

pub struct Tally {
    first_user: u64,
    users: Vec<Mutex<UserLog>>,
    latency: Mutex<HashMap<u32, PhaseLatency>>,
    pub received: AtomicU64,
}

impl Tally {
    pub fn new(first_user: u64, users: u64) -> Self {
        Tally {
            first_user,
            users: (0..users).map(|_| Mutex::default()).collect(),
            latency: Mutex::default(),
            received: AtomicU64::new(0),
        }
    }

    /// One arrival for local user `local` at `now_us`.
    pub fn record(&self, local: usize, stamp: Stamp, now_us: u64) {
        if stamp.seq >= MAX_SEQ {
            return;
        }
        self.received.fetch_add(1, Ordering::Relaxed);
        let first = self.users[local].lock().expect("tally lock").phase(stamp.p).mark(stamp.seq);
        if !first {
            return;
        }
        let mut latency = self.latency.lock().expect("tally lock");
        let l = latency.entry(stamp.p).or_insert_with(|| PhaseLatency {
            hist: new_histogram(),
            first_us: now_us,
            last_us: 0,
        });
        l.hist.saturating_record(now_us.saturating_sub(stamp.sent_us).max(1));
        l.first_us = l.first_us.min(now_us);
        l.last_us = l.last_us.max(now_us);
    }

    /// Phase `p` counted against what each user should have: every notification of the plan
    /// that JetStream acknowledged (those in `unacked` are not owed, though they may arrive).
    pub fn account(&self, p: u32, expected: Expected, unacked: &[u64]) -> PhaseReport {
        let mut r = PhaseReport::default();
        for (i, user) in self.users.iter().enumerate() {
            let g = self.first_user + i as u64;
            let n = expected.for_user(g);
            let skip = if n > 0 { expected.unacked_for(g, unacked) } else { Vec::new() };
            let mut log = user.lock().expect("tally lock");
            let phase = log.phase(p);
            let owed: Vec<u64> = (0..n).filter(|s| !skip.contains(s)).collect();
            let got = owed.iter().filter(|&&s| phase.has(s)).count() as u64;
            r.expected += owed.len() as u64;
            r.received += got;
            r.lost += owed.len() as u64 - got;
            r.duplicated += phase.duplicated;
            r.out_of_order += phase.out_of_order;
        }
        let latency = self.latency.lock().expect("tally lock");
        match latency.get(&p) {
            Some(l) => {
                r.histogram = encode(&l.hist);
                r.first_us = l.first_us;
                r.last_us = l.last_us;
            }
            None => r.histogram = encode(&new_histogram()),
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(p: u32, seq: u64) -> Stamp {
        Stamp { sent_us: 1, p, seq }
    }

    #[test]
    fn counts_loss_copies_and_reordering_per_user() {
        let t = Tally::new(10, 2);
        // Users 10 and 11, three team notifications each: user 10 gets 0, 2, 1 and 2 again.
        for s in [0, 2, 1, 2] {
            t.record(0, stamp(1, s), 5);
        }
        t.record(1, stamp(1, 0), 5);
        let r = t.account(1, Expected::Team { count: 3, members: 100 }, &[]);
        assert_eq!((r.expected, r.received, r.lost, r.duplicated, r.out_of_order), (6, 4, 2, 1, 1));
        assert_eq!(decode(&r.histogram).unwrap().len(), 4);
    }

    #[test]
    fn what_was_never_acknowledged_is_not_owed() {
        let t = Tally::new(0, 3);
        // Seven notifications round-robin over three users; k = 4 (user 1, seq 1) was never
        // acknowledged and did not arrive; k = 5 (user 2, seq 1) was not acknowledged but arrived.
        for k in [0u64, 1, 2, 3, 5, 6] {
            t.record((k % 3) as usize, stamp(2, k / 3), 5);
        }
        let r = t.account(2, Expected::Direct { count: 7, users: 3 }, &[4, 5]);
        assert_eq!((r.expected, r.received, r.lost, r.duplicated), (5, 5, 0, 0));
        let r = t.account(2, Expected::Direct { count: 7, users: 3 }, &[]);
        assert_eq!((r.expected, r.received, r.lost), (7, 6, 1));
    }

    #[test]
    fn direct_plan_spreads_notifications_round_robin() {
        let e = Expected::Direct { count: 7, users: 3 };
        assert_eq!((e.for_user(0), e.for_user(1), e.for_user(2), e.for_user(3)), (3, 2, 2, 0));
    }
}
