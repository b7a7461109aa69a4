//! Per-client-IP rate limits (token buckets) for new connections and inbound frames.
//!
//! The table of IPs is bounded: past `tracked_ips` the entries idle longest are dropped, so a
//! flood of source addresses costs bounded memory (a forgotten IP starts with a full bucket).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    max_ips: usize,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

impl RateLimiter {
    pub fn new(rate: f64, burst: f64, max_ips: usize) -> Self {
        RateLimiter { rate, burst: burst.max(1.0), max_ips: max_ips.max(1), buckets: Mutex::new(HashMap::new()) }
    }

    /// Takes one token for `ip`; false when it has none left.
    pub fn allow(&self, ip: IpAddr) -> bool {
        self.allow_at(ip, Instant::now())
    }

    fn allow_at(&self, ip: IpAddr, now: Instant) -> bool {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() >= self.max_ips && !buckets.contains_key(&ip) {
            evict_idle_half(&mut buckets);
        }
        let b = buckets.entry(ip).or_insert(Bucket { tokens: self.burst, at: now });
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * self.rate).min(self.burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Drops the half of the entries seen longest ago: amortised O(1) per insert.
fn evict_idle_half(buckets: &mut HashMap<IpAddr, Bucket>) {
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
}
