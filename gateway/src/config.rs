//! The gateway's configuration, read once from the environment at start.

use std::time::Duration;

use herald_core::config::{ConfigError, NatsConfig, Vars};

#[derive(Debug, Clone)]
pub struct Config {
    pub nats: NatsConfig,
    pub auth: AuthConfig,
    /// A client must send `hello` within this (else 4001).
    pub hello_timeout: Duration,
    /// Largest inbound frame (else 4008).
    pub max_frame_bytes: usize,
    /// Notifications fetched per batch Direct Get request while replaying.
    pub replay_batch: usize,
    /// How long one Direct Get batch may take before the session gives up with 1011.
    pub replay_timeout: Duration,
    /// `token_expiring` goes out this long before `exp`.
    pub expiry_warning: Duration,
    /// On shutdown, `reconnect` frames are spread over this period.
    pub drain_period: Duration,
}

#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// HS256 secret for user tokens.
    pub secret: String,
    pub audience: String,
    /// Clock skew allowed on `exp` and `nbf`.
    pub leeway: Duration,
}

impl Config {
    pub fn from_vars(v: &Vars) -> Result<Self, ConfigError> {
        let leeway = v.seconds("HERALD_JWT_LEEWAY_SECONDS", Duration::from_secs(30))?;
        if leeway > Duration::from_secs(60) {
            return Err(ConfigError {
                name: "HERALD_JWT_LEEWAY_SECONDS".into(),
                message: "must be at most 60".into(),
            });
        }
        Ok(Config {
            nats: NatsConfig::from_vars(v),
            auth: AuthConfig {
                secret: v.required("HERALD_JWT_SECRET")?,
                audience: v.string("HERALD_JWT_AUDIENCE", "herald"),
                leeway,
            },
            hello_timeout: v.seconds("HERALD_HELLO_TIMEOUT_SECONDS", Duration::from_secs(10))?,
            max_frame_bytes: v.parse("HERALD_MAX_FRAME_BYTES", 64 * 1024)?,
            replay_batch: v.parse("HERALD_REPLAY_BATCH", 256)?,
            replay_timeout: v.seconds("HERALD_REPLAY_TIMEOUT_SECONDS", Duration::from_secs(5))?,
            expiry_warning: v.seconds("HERALD_TOKEN_EXPIRING_SECONDS", Duration::from_secs(90))?,
            drain_period: v.seconds("HERALD_DRAIN_SECONDS", Duration::from_secs(10))?,
        })
    }
}
