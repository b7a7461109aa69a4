//! The HTTP API's part of the gateway configuration, read once with the rest of it.

use std::num::NonZeroU32;
use std::time::Duration;

use herald_core::config::{ConfigError, DynamoConfig, Vars};
use herald_core::secret::Secret;

#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// The HS256 secret of service tokens (`HERALD_SERVICE_JWT_SECRET`); without it every
    /// service endpoint answers 401. At least 32 bytes, like the user secret; never in `Debug`.
    pub service_secret: Option<Secret>,
    /// `HERALD_NATS_CREATOR_URL`: NATS as a creator (may publish `herald.in.>`), for
    /// `POST /v1/notifications` where NATS has users (the gateway's own user may not publish
    /// requests); unset: the gateway's own connection.
    pub creator_nats_url: Option<String>,
    /// Requests per second and burst, per user (user endpoints) and per service (service
    /// endpoints); past them: 429 with `Retry-After`.
    pub user_rate: NonZeroU32,
    pub user_burst: NonZeroU32,
    pub service_rate: NonZeroU32,
    pub service_burst: NonZeroU32,
    /// How long `POST /v1/notifications` waits for `HERALD_IN` to store a request (retries
    /// included) before answering 503.
    pub publish_timeout: Duration,
    /// The inbox store (`HERALD_DYNAMODB_ENDPOINT`, `AWS_REGION`, `HERALD_TABLE_PREFIX`).
    pub dynamo: DynamoConfig,
    /// How long inbox items are kept (`HERALD_INBOX_TTL_DAYS`, default 90).
    pub inbox_ttl: Duration,
    /// Create missing tables at start (`HERALD_CREATE_TABLES`; default: when a local endpoint
    /// is set, as the functions do).
    pub create_tables: bool,
}

impl ApiConfig {
    pub fn from_vars(v: &Vars) -> Result<Self, ConfigError> {
        let dynamo = DynamoConfig::from_vars(v);
        Ok(ApiConfig {
            create_tables: v.parse("HERALD_CREATE_TABLES", dynamo.endpoint.is_some())?,
            service_secret: crate::config::optional_secret(v, "HERALD_SERVICE_JWT_SECRET")?,
            creator_nats_url: v.get("HERALD_NATS_CREATOR_URL").map(str::to_owned),
            user_rate: v.parse("HERALD_API_USER_PER_SEC", NonZeroU32::new(20).expect("non-zero"))?,
            user_burst: v.parse("HERALD_API_USER_BURST", NonZeroU32::new(100).expect("non-zero"))?,
            service_rate: v.parse("HERALD_API_SERVICE_PER_SEC", NonZeroU32::new(2000).expect("non-zero"))?,
            service_burst: v.parse("HERALD_API_SERVICE_BURST", NonZeroU32::new(4000).expect("non-zero"))?,
            publish_timeout: v.seconds("HERALD_PUBLISH_TIMEOUT_SECONDS", Duration::from_secs(5))?,
            dynamo,
            inbox_ttl: Duration::from_secs(v.parse::<u64>("HERALD_INBOX_TTL_DAYS", 90)?.max(1) * 24 * 3600),
        })
    }
}
