//! Token buckets: per client IP for new connections and inbound frames, per user for the bytes
//! that reconnects with a cursor make the gateway read back from the stream.
//!
//! The table of keys is bounded: past `tracked` the entries idle longest are dropped, so a
//! flood of source addresses costs bounded memory (a forgotten key starts with a full bucket).

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

#[derive(Debug)]
pub struct RateLimiter<K = IpAddr> {
    rate: f64,
    burst: f64,
    max_keys: usize,
    buckets: Mutex<HashMap<K, Bucket>>,
}

impl<K: Hash + Eq + Clone> RateLimiter<K> {
    pub fn new(rate: f64, burst: f64, max_keys: usize) -> Self {
        RateLimiter { rate, burst: burst.max(1.0), max_keys: max_keys.max(1), buckets: Mutex::new(HashMap::new()) }
    }

    /// Takes one token for `key`; false when it has none left.
    pub fn allow(&self, key: K) -> bool {
        self.allow_at(key, Instant::now())
    }

    fn allow_at(&self, key: K, now: Instant) -> bool {
        self.with_bucket(key, now, |b| {
            if b.tokens >= 1.0 {
                b.tokens -= 1.0;
                true
            } else {
                false
            }
        })
    }

    /// `Ok` while `key` owes nothing; else how long until it does not. With [`Self::charge`]
    /// this meters work whose cost is known only once done (bytes read back for a replay): the
    /// work may start while the bucket holds anything, and what it costs beyond that is a debt
    /// the key pays off at `rate` before it may start again.
    pub fn check_debt(&self, key: K) -> Result<(), Duration> {
        self.check_debt_at(key, Instant::now())
    }

    fn check_debt_at(&self, key: K, now: Instant) -> Result<(), Duration> {
        let rate = self.rate;
        self.with_bucket(key, now, |b| {
            if b.tokens > 0.0 {
                Ok(())
            } else {
                Err(Duration::from_secs_f64(((-b.tokens + 1.0) / rate.max(f64::MIN_POSITIVE)).min(86_400.0)))
            }
        })
    }

    /// Takes `amount` tokens from `key`, going into debt if it has fewer.
    pub fn charge(&self, key: K, amount: f64) {
        self.with_bucket(key, Instant::now(), |b| b.tokens -= amount);
    }

    /// `f` on `key`'s bucket, refilled up to `now`.
    fn with_bucket<T>(&self, key: K, now: Instant, f: impl FnOnce(&mut Bucket) -> T) -> T {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() >= self.max_keys && !buckets.contains_key(&key) {
            evict_idle_half(&mut buckets);
        }
        let b = buckets.entry(key).or_insert(Bucket { tokens: self.burst, at: now });
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * self.rate).min(self.burst);
        b.at = now;
        f(b)
    }
}

/// Drops the half of the entries seen longest ago: amortised O(1) per insert.
fn evict_idle_half<K: Hash + Eq>(buckets: &mut HashMap<K, Bucket>) {
    let mut ats: Vec<Instant> = buckets.values().map(|b| b.at).collect();
    let mid = ats.len() / 2;
    let (_, cutoff, _) = ats.select_nth_unstable(mid);
    let cutoff = *cutoff;
    buckets.retain(|_, b| b.at > cutoff);
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn bursts_then_refills_at_the_rate() {
        let l = RateLimiter::new(10.0, 3.0, 100);
        let ip: IpAddr = "127.0.0.9".parse().unwrap();
        let t = Instant::now();
        assert!((0..3).all(|_| l.allow_at(ip, t)));
        assert!(!l.allow_at(ip, t));
        assert!(l.allow_at(ip, t + Duration::from_millis(110)));
        let other: IpAddr = "127.0.0.10".parse().unwrap();
        assert!(l.allow_at(other, t), "another IP has its own bucket");
    }

    #[test]
    fn the_table_stays_bounded() {
        let l = RateLimiter::new(1.0, 1.0, 64);
        let t = Instant::now();
        for i in 0..10_000u32 {
            l.allow_at(IpAddr::from(i.to_be_bytes()), t + Duration::from_micros(i as u64));
        }
        assert!(l.buckets.lock().unwrap().len() <= 64);
    }

    #[test]
    fn work_may_start_while_anything_is_left_and_its_cost_is_a_debt_paid_off_at_the_rate() {
        let l: RateLimiter<String> = RateLimiter::new(100.0, 1000.0, 100);
        let (u, t) = ("user".to_owned(), Instant::now());
        assert_eq!(l.check_debt_at(u.clone(), t), Ok(()));
        l.with_bucket(u.clone(), t, |b| b.tokens -= 900.0);
        assert_eq!(l.check_debt_at(u.clone(), t), Ok(()), "100 left: the next replay may start");
        l.with_bucket(u.clone(), t, |b| b.tokens -= 600.0);
        let wait = l.check_debt_at(u.clone(), t).unwrap_err();
        assert!(wait > Duration::from_secs(5) && wait < Duration::from_secs(6), "500 owed at 100/s: {wait:?}");
        assert_eq!(l.check_debt_at(u.clone(), t + Duration::from_millis(5_020)), Ok(()));
        assert_eq!(l.check_debt_at("another".to_owned(), t), Ok(()), "another user has their own");
    }
}
