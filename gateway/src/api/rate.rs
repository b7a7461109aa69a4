//! Per-user and per-service request limits of the HTTP API (GCRA token buckets from `governor`).
//!
//! A key's state is a few dozen bytes; keys whose bucket has refilled completely carry no
//! information and are dropped by [`ApiLimits::forget_idle`], which the gateway runs every
//! minute, so the tables hold only the users and services active within the last burst period.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use super::error::ApiError;

#[derive(Debug)]
pub struct ApiLimits {
    users: DefaultKeyedRateLimiter<String>,
    services: DefaultKeyedRateLimiter<String>,
    clock: DefaultClock,
}

impl ApiLimits {
    pub fn new(
        user_rate: NonZeroU32,
        user_burst: NonZeroU32,
        service_rate: NonZeroU32,
        service_burst: NonZeroU32,
    ) -> Self {
        ApiLimits {
            users: RateLimiter::keyed(Quota::per_second(user_rate).allow_burst(user_burst)),
            services: RateLimiter::keyed(Quota::per_second(service_rate).allow_burst(service_burst)),
            clock: DefaultClock::default(),
        }
    }

    /// Takes one request of `user`'s allowance.
    pub fn user(&self, user: &str) -> Result<(), ApiError> {
        self.check(&self.users, user)
    }

    /// Takes one request of the service `sub`'s allowance.
    pub fn service(&self, sub: &str) -> Result<(), ApiError> {
        self.check(&self.services, sub)
    }

    fn check(&self, limiter: &DefaultKeyedRateLimiter<String>, key: &str) -> Result<(), ApiError> {
        // `check_key` wants an owned key; one small allocation per request.
        limiter
            .check_key(&key.to_owned())
            .map_err(|not_until| ApiError::TooMany { retry_after: not_until.wait_time_from(self.clock.now()) })
    }

    /// Drops the buckets that are full again (indistinguishable from a new key).
    pub fn forget_idle(&self) {
        self.users.retain_recent();
        self.services.retain_recent();
        self.users.shrink_to_fit();
        self.services.shrink_to_fit();
    }

    pub fn tracked(&self) -> usize {
        self.users.len() + self.services.len()
    }
}

/// How often idle buckets are dropped.
pub const FORGET_EVERY: Duration = Duration::from_secs(60);

#[cfg(test)]
mod tests {
    use super::*;

    fn n(v: u32) -> NonZeroU32 {
        NonZeroU32::new(v).unwrap()
    }

    #[test]
    fn a_user_past_the_burst_is_told_when_to_retry_and_others_are_not_affected() {
        let l = ApiLimits::new(n(1), n(3), n(1), n(1));
        assert!((0..3).all(|_| l.user("a").is_ok()));
        match l.user("a") {
            Err(ApiError::TooMany { retry_after }) => assert!(retry_after <= Duration::from_secs(1), "{retry_after:?}"),
            other => panic!("expected 429, got {other:?}"),
        }
        assert!(l.user("b").is_ok(), "another user has their own bucket");
        assert!(l.service("a").is_ok(), "services are counted apart from users");
    }
}
