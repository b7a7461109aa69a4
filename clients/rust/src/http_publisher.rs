//! Publishing over HTTP: `POST /v1/notifications` on a gateway with a service token (scope
//! `publish`). A failure that may not have been seen by the server (the network, 429, 5xx) is
//! retried with the same body, so the same `id`: the server deduplicates, and a retry can never
//! make a second notification.

use std::time::Duration;

use herald_core::NotificationRequest;
use serde::Deserialize;

use crate::backoff::Backoff;
use crate::http::{Api, ApiError};

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Accepted {
    pub id: String,
    /// True when an earlier publish of the same id was already accepted.
    pub duplicate: bool,
}

#[derive(Debug, Clone)]
pub struct HttpPublisher {
    api: Api,
    attempts: u32,
}

impl HttpPublisher {
    /// `base`: the gateway, e.g. `http://127.0.0.1:8080`; `token`: a service token with `publish`.
    pub fn new(base: &str, service_token: impl Into<String>) -> Result<Self, ApiError> {
        Ok(HttpPublisher { api: Api::new(base, service_token)?, attempts: 8 })
    }

    /// How many times a retryable failure is tried (default 8).
    pub fn with_attempts(mut self, attempts: u32) -> Self {
        self.attempts = attempts.max(1);
        self
    }

    pub async fn publish(&self, request: &NotificationRequest) -> Result<Accepted, ApiError> {
        let body = serde_json::to_value(request).expect("a request always serializes");
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
        let mut attempt = 1;
        loop {
            match self.api.post::<Accepted>("/v1/notifications", Some(&body)).await {
                Err(e) if e.is_retryable() && attempt < self.attempts => {
                    let wait = match &e {
                        ApiError::Status { retry_after: Some(s), .. } => Duration::from_secs(*s),
                        _ => backoff.next_delay(),
                    };
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }
}
