//! Publishing requests to `herald.in.<source>` with `Nats-Msg-Id` = id.
//!
//! A publish that timed out may still have been stored, and a stream mid-failover answers "not
//! found" for a while; both are retried with the same id, which the stream deduplicates, so a
//! retry can never make a second notification.

use std::time::Duration;

use async_nats::jetstream::{self, context::PublishErrorKind, message::PublishMessage};
use herald_core::{NotificationRequest, subject};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    /// The `HERALD_IN` sequence of the request.
    pub sequence: u64,
    /// True when an earlier publish of the same id was already stored.
    pub duplicate: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("the request is not valid: {0}")]
    Invalid(#[from] herald_core::InvalidRequest),
    #[error("NATS did not store the request after {attempts} attempts: {last}")]
    Unavailable { attempts: u32, last: String },
    #[error("publish refused: {0}")]
    Refused(String),
    #[error("connecting to NATS: {0}")]
    Connect(#[from] async_nats::ConnectError),
    #[error("the NATS CA cannot be used: {0}")]
    Tls(String),
}

#[derive(Debug, Clone)]
pub struct Publisher {
    js: jetstream::Context,
    attempts: u32,
}

impl Publisher {
    pub fn new(client: async_nats::Client) -> Self {
        Publisher { js: jetstream::new(client), attempts: 10 }
    }

    pub async fn connect(url: &str) -> Result<Self, PublishError> {
        Ok(Self::new(herald_core::nats::options(url).connect(url).await?))
    }

    /// [`Publisher::connect`] to a NATS that requires TLS (as Herald's cloud deployment does):
    /// `ca_pem`, the deployment CA's certificate(s), is the only root trusted.
    ///
    /// ```no_run
    /// # async fn f() -> Result<(), herald_client::PublishError> {
    /// let ca = std::fs::read("nats-ca.pem").expect("the CA file");
    /// let publisher = herald_client::Publisher::connect_tls("tls://creator:secret@nats.internal:4222", &ca).await?;
    /// # Ok(()) }
    /// ```
    pub async fn connect_tls(url: &str, ca_pem: &[u8]) -> Result<Self, PublishError> {
        let tls = herald_core::nats_tls::NatsTls::from_pem(ca_pem).map_err(|e| PublishError::Tls(e.to_string()))?;
        Ok(Self::new(herald_core::nats::options_with(url, Some(&tls)).connect(url).await?))
    }

    /// How many times a retryable failure is tried (default 10: about 15 s with backoff).
    pub fn with_attempts(mut self, attempts: u32) -> Self {
        self.attempts = attempts.max(1);
        self
    }

    /// Validates and publishes one request for `source`.
    pub async fn publish(&self, source: &str, request: &NotificationRequest) -> Result<Published, PublishError> {
        if !subject::is_valid_source(source) {
            return Err(herald_core::InvalidRequest::BadSource(source.to_owned()).into());
        }
        let valid = request.clone().validate(time::OffsetDateTime::now_utc())?;
        let body = serde_json::to_vec(&valid.request).expect("a request always serializes");
        self.publish_raw(source, &request.id, body.into()).await
    }

    /// Publishes a body as given (for tools and tests that send what the SDK would refuse).
    pub async fn publish_raw(&self, source: &str, id: &str, body: bytes::Bytes) -> Result<Published, PublishError> {
        let subject = subject::in_subject(source);
        let mut delay = Duration::from_millis(100);
        let mut last = String::new();
        for attempt in 1..=self.attempts {
            let msg = PublishMessage::build().payload(body.clone()).message_id(id);
            let result = match self.js.send_publish(subject.clone(), msg).await {
                Ok(ack) => ack.await,
                Err(e) => Err(e),
            };
            match result {
                Ok(ack) => {
                    return Ok(Published { sequence: ack.sequence, duplicate: ack.duplicate });
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        PublishErrorKind::TimedOut | PublishErrorKind::StreamNotFound | PublishErrorKind::BrokenPipe
                    ) =>
                {
                    last = e.to_string();
                    if attempt < self.attempts {
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(Duration::from_secs(2));
                    }
                }
                Err(e) => return Err(PublishError::Refused(e.to_string())),
            }
        }
        Err(PublishError::Unavailable { attempts: self.attempts, last })
    }
}
