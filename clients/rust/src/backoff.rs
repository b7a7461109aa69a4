//! Reconnect delays: exponential backoff with full jitter (a uniform delay below a doubling
//! ceiling), so clients cut off together do not come back together.

use std::time::Duration;

use rand::Rng;

#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    attempt: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new(Duration::from_millis(500), Duration::from_secs(30))
    }
}

impl Backoff {
    pub fn new(base: Duration, max: Duration) -> Self {
        Backoff { base, max, attempt: 0 }
    }

    /// The ceiling of the next delay: `min(max, base × 2^attempt)`.
    pub fn ceiling(&self) -> Duration {
        self.base.saturating_mul(1u32 << self.attempt.min(20)).min(self.max)
    }

    /// The next delay, uniform over `[0, ceiling)`.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.ceiling();
        self.attempt = self.attempt.saturating_add(1);
        let ms = ceiling.as_millis() as u64;
        Duration::from_millis(if ms == 0 { 0 } else { rand::rng().random_range(0..ms) })
    }

    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_jitter_under_a_doubling_ceiling() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(1000));
        for ceiling in [100, 200, 400, 800, 1000, 1000] {
            assert_eq!(b.ceiling(), Duration::from_millis(ceiling));
            assert!(b.next_delay() < Duration::from_millis(ceiling));
        }
        b.reset();
        assert_eq!(b.ceiling(), Duration::from_millis(100));
    }
}
