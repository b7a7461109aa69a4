//! The gateway's configuration, read once from the environment at start.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use herald_core::config::{ConfigError, NatsConfig, Vars};
use herald_core::secret::Secret;

use crate::keys::{KeySource, parse_algorithm};

#[derive(Debug, Clone)]
pub struct Config {
    pub nats: NatsConfig,
    /// `HERALD_NATS_ADMIN_URL`: NATS as the admin user, which alone may create and write the
    /// revocation bucket (used by the admin plane); unset: the gateway's own connection.
    pub admin_nats_url: Option<Secret>,
    /// `HERALD_ADMIN_LISTEN`: the internal plane (`/metrics`, `/v1/admin/*`), never the public
    /// port; loopback unless an operator opens it to a private network.
    pub admin_listen: SocketAddr,
    /// `HERALD_ADMIN_JWT_SECRET` (and `HERALD_ADMIN_JWT_AUDIENCE`, default `herald-admin`):
    /// admin tokens have a key of their own, so a user-token key cannot mint one. Unset: the
    /// admin API refuses every request.
    pub admin_auth: Option<AuthConfig>,
    pub auth: AuthConfig,
    pub limits: Limits,
    /// Browser origins allowed to open a socket; empty: any (non-browser clients send none).
    pub allowed_origins: Vec<String>,
    /// A client must send `hello` within this (else 4001).
    pub hello_timeout: Duration,
    /// Notifications fetched per batch Direct Get request while replaying.
    pub replay_batch: usize,
    /// And at most this many bytes per batch (the server stops before it would pass them), so
    /// a replay of large notifications holds a bounded amount in memory per session.
    pub replay_batch_bytes: usize,
    /// How long one Direct Get batch may take before the session gives up with 1011.
    pub replay_timeout: Duration,
    /// `token_expiring` goes out this long before `exp` (at least 60 s).
    pub expiry_warning: Duration,
    /// On shutdown, `reconnect` delays are spread over this period, and sessions still open at
    /// its end are closed with 1001.
    pub drain_period: Duration,
    /// WebSocket ping interval; a peer silent for two intervals is closed.
    pub ping_interval: Duration,
    /// The NATS KV bucket of revoked users and token ids, shared by every gateway.
    pub revocation_bucket: String,
    /// How long a revocation is kept (longer than any token lives).
    pub revocation_ttl: Duration,
    /// Replicas of the revocation bucket (3 in production, like the streams).
    pub replicas: usize,
    /// How long a new subscription may take to reach every node of the cluster; a session
    /// looks at the user's newest notification once more after this (see `session`).
    pub interest_settle: Duration,
    /// Stream reads (Direct Get batches, leader reads) in flight at once for catch-ups; more
    /// wait their turn (after a NATS reconnect every session catches up at once).
    pub catchup_concurrency: usize,
    /// The live connection PINGs its server this often, and gives it up (reconnecting, with
    /// `/readyz` red meanwhile) when a PONG is later than the deadline.
    pub live_ping_interval: Duration,
    pub live_ping_deadline: Duration,
    /// The HTTP API: service tokens, per-user and per-service limits.
    pub api: crate::api::ApiConfig,
    /// Serve the demo inbox page at `/` (`HERALD_DEMO`).
    pub demo: bool,
    /// Development only: the demo page may mint tokens for any user (`HERALD_DEV_TOKENS`).
    pub dev_tokens: bool,
}

#[derive(Debug, Clone)]
pub struct AuthConfig {
    pub keys: KeySource,
    pub audience: String,
    /// Required `iss`, when set.
    pub issuer: Option<String>,
    /// Clock skew allowed on `exp` and `nbf` (at most 60 s).
    pub leeway: Duration,
}

/// Every bound the gateway puts on a client, and what happens past it.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest inbound frame (else 4008).
    pub max_frame_bytes: usize,
    /// Open sockets per process (else HTTP 503).
    pub max_connections: usize,
    /// Open sockets per client IP, counted from the upgrade (before `hello`), so idle or
    /// stalled sockets from one address cannot fill the process (else HTTP 429).
    pub max_connections_per_ip: usize,
    /// New connections per second per client IP, with this burst (else HTTP 429).
    pub connects_per_ip_per_sec: f64,
    pub connect_burst: f64,
    /// Inbound frames per second per client IP, with this burst (else 4029).
    pub frames_per_ip_per_sec: f64,
    pub frame_burst: f64,
    /// A session's outbound queue; past either bound the client is too slow: 4029.
    pub outbound_frames: usize,
    pub outbound_bytes: usize,
    /// A write that makes no progress for this long means the client is gone or stuck: 4029.
    pub write_timeout: Duration,
    /// A socket must finish its request's headers within this long (an upgrade included), else
    /// it is closed: stalled upgrades cannot hold descriptors.
    pub header_timeout: Duration,
    /// Bytes a user's reconnects with a cursor (replays, resets) may make this gateway read back
    /// from the stream, per second, with this burst. A replay starts while the user's bucket
    /// holds anything and costs what it read; once the bucket is empty, the next batch closes
    /// the session with 4029 (`too_many_replays`): the client keeps what it got and resumes
    /// from its cursor later, so a user cannot make the gateway pull the same megabytes again
    /// and again. Reconnects at the tip read next to nothing and are never limited.
    pub replay_bytes_per_user_per_sec: f64,
    pub replay_burst_bytes_per_user: f64,
    /// Client IPs (and users, for replays) tracked for rate limits; the least recently seen
    /// are forgotten first.
    pub tracked_ips: usize,
    /// `HERALD_TRUSTED_PROXIES`: networks of the proxies whose `X-Forwarded-For` is believed;
    /// the client is the rightmost hop not among them. Empty: the header is ignored.
    pub trusted_proxies: Vec<crate::client_addr::Network>,
    /// `HERALD_PROXY_PROTOCOL`: every socket starts with a PROXY v2 header giving the client's
    /// address (behind an NLB or HAProxy with send-proxy-v2); one without is closed.
    pub proxy_protocol: bool,
}

/// Shortest HS256 secret accepted: RFC 7518 §3.2 asks for a key at least as long as the hash.
pub const MIN_SECRET_BYTES: usize = 32;

fn secret(v: &Vars, name: &str) -> Result<Secret, ConfigError> {
    optional_secret(v, name)?.ok_or_else(|| bad(name, "is required"))
}

/// A secret that may be unset; when set, as long as [`secret`] asks.
pub(crate) fn optional_secret(v: &Vars, name: &str) -> Result<Option<Secret>, ConfigError> {
    let Some(s) = v.get(name).map(Secret::new) else { return Ok(None) };
    if s.len() < MIN_SECRET_BYTES {
        return Err(bad(name, format!("must be at least {MIN_SECRET_BYTES} bytes (it is {})", s.len())));
    }
    Ok(Some(s))
}

fn bad(name: &str, message: impl Into<String>) -> ConfigError {
    ConfigError { name: name.into(), message: message.into() }
}

/// A switch: `1`/`true`/`yes` or `0`/`false`/`no` (unset: off).
fn flag(v: &Vars, name: &str) -> Result<bool, ConfigError> {
    match v.get(name).map(|s| s.trim().to_ascii_lowercase()) {
        None => Ok(false),
        Some(s) if matches!(s.as_str(), "1" | "true" | "yes") => Ok(true),
        Some(s) if matches!(s.as_str(), "" | "0" | "false" | "no") => Ok(false),
        Some(s) => Err(bad(name, format!("{s:?}: use 1 or 0"))),
    }
}

impl Config {
    pub fn from_vars(v: &Vars) -> Result<Self, ConfigError> {
        let leeway = v.seconds("HERALD_JWT_LEEWAY_SECONDS", Duration::from_secs(30))?;
        if leeway > Duration::from_secs(60) {
            return Err(bad("HERALD_JWT_LEEWAY_SECONDS", "must be at most 60"));
        }
        let expiry_warning = v.seconds("HERALD_TOKEN_EXPIRING_SECONDS", Duration::from_secs(90))?;
        if expiry_warning < Duration::from_secs(60) {
            return Err(bad("HERALD_TOKEN_EXPIRING_SECONDS", "must be at least 60"));
        }
        let algorithm = v.string("HERALD_JWT_ALGORITHM", "HS256");
        let keys = if let Some(path) = v.get("HERALD_JWT_JWKS_FILE") {
            KeySource::Jwks(PathBuf::from(path))
        } else if let Some(path) = v.get("HERALD_JWT_PUBLIC_KEY_FILE") {
            let algorithm = parse_algorithm(&algorithm).map_err(|e| bad("HERALD_JWT_ALGORITHM", e.to_string()))?;
            KeySource::Pem { path: PathBuf::from(path), algorithm }
        } else if algorithm == "HS256" {
            KeySource::Secret {
                secret: secret(v, "HERALD_JWT_SECRET")?,
                kid: v.get("HERALD_JWT_KID").map(str::to_owned),
            }
        } else {
            return Err(bad("HERALD_JWT_PUBLIC_KEY_FILE", format!("is required for {algorithm}")));
        };
        let origins = v.string("HERALD_ALLOWED_ORIGINS", "");
        Ok(Config {
            nats: NatsConfig::from_vars(v)?,
            admin_nats_url: v.get("HERALD_NATS_ADMIN_URL").map(Secret::new),
            admin_listen: v.parse("HERALD_ADMIN_LISTEN", SocketAddr::from(([127, 0, 0, 1], 9091)))?,
            admin_auth: match v.get("HERALD_ADMIN_JWT_SECRET") {
                None => None,
                Some(_) => Some(AuthConfig {
                    keys: KeySource::Secret { secret: secret(v, "HERALD_ADMIN_JWT_SECRET")?, kid: None },
                    audience: v.string("HERALD_ADMIN_JWT_AUDIENCE", "herald-admin"),
                    issuer: None,
                    leeway,
                }),
            },
            auth: AuthConfig {
                keys,
                audience: v.string("HERALD_JWT_AUDIENCE", "herald"),
                issuer: v.get("HERALD_JWT_ISSUER").map(str::to_owned),
                leeway,
            },
            limits: Limits {
                max_frame_bytes: v.parse("HERALD_MAX_FRAME_BYTES", 64 * 1024)?,
                max_connections: v.parse("HERALD_MAX_CONNECTIONS", 18_000)?,
                max_connections_per_ip: v.parse("HERALD_MAX_CONNECTIONS_PER_IP", 1_000)?,
                connects_per_ip_per_sec: v.parse("HERALD_CONNECTS_PER_IP_PER_SEC", 20.0)?,
                connect_burst: v.parse("HERALD_CONNECT_BURST", 100.0)?,
                frames_per_ip_per_sec: v.parse("HERALD_FRAMES_PER_IP_PER_SEC", 50.0)?,
                frame_burst: v.parse("HERALD_FRAME_BURST", 200.0)?,
                outbound_frames: v.parse("HERALD_OUTBOUND_MAX_FRAMES", 256)?,
                outbound_bytes: v.parse("HERALD_OUTBOUND_MAX_BYTES", 1024 * 1024)?,
                write_timeout: v.seconds("HERALD_WRITE_TIMEOUT_SECONDS", Duration::from_secs(10))?,
                header_timeout: v.seconds("HERALD_HEADER_TIMEOUT_SECONDS", Duration::from_secs(10))?,
                replay_bytes_per_user_per_sec: v.parse("HERALD_REPLAY_BYTES_PER_USER_PER_SEC", 1024.0 * 1024.0)?,
                replay_burst_bytes_per_user: v.parse("HERALD_REPLAY_BURST_BYTES_PER_USER", 64.0 * 1024.0 * 1024.0)?,
                tracked_ips: v.parse("HERALD_TRACKED_IPS", 100_000)?,
                trusted_proxies: crate::client_addr::parse_networks(&v.string("HERALD_TRUSTED_PROXIES", ""))
                    .map_err(|e| bad("HERALD_TRUSTED_PROXIES", e))?,
                proxy_protocol: v.parse("HERALD_PROXY_PROTOCOL", false)?,
            },
            allowed_origins: origins.split(',').map(str::trim).filter(|o| !o.is_empty()).map(str::to_owned).collect(),
            hello_timeout: v.seconds("HERALD_HELLO_TIMEOUT_SECONDS", Duration::from_secs(10))?,
            replay_batch: v.parse("HERALD_REPLAY_BATCH", 256)?,
            replay_batch_bytes: v.parse("HERALD_REPLAY_BATCH_BYTES", 1024 * 1024)?,
            replay_timeout: v.seconds("HERALD_REPLAY_TIMEOUT_SECONDS", Duration::from_secs(5))?,
            expiry_warning,
            drain_period: v.seconds("HERALD_DRAIN_SECONDS", Duration::from_secs(10))?,
            ping_interval: v.seconds("HERALD_PING_SECONDS", Duration::from_secs(30))?,
            revocation_bucket: v.string("HERALD_REVOCATION_BUCKET", "HERALD_REVOKED"),
            revocation_ttl: v.seconds("HERALD_REVOCATION_TTL_SECONDS", Duration::from_secs(30 * 24 * 3600))?,
            replicas: v.parse("HERALD_STREAM_REPLICAS", 1)?,
            interest_settle: v.seconds("HERALD_INTEREST_SETTLE_SECONDS", Duration::from_secs(2))?,
            catchup_concurrency: v.parse::<usize>("HERALD_CATCHUP_CONCURRENCY", 64)?.max(1),
            live_ping_interval: v.seconds("HERALD_LIVE_PING_SECONDS", Duration::from_secs(2))?,
            live_ping_deadline: v.seconds("HERALD_LIVE_PING_DEADLINE_SECONDS", Duration::from_secs(5))?,
            api: crate::api::ApiConfig::from_vars(v)?,
            demo: flag(v, "HERALD_DEMO")?,
            dev_tokens: flag(v, "HERALD_DEV_TOKENS")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(secret: &str) -> Vars {
        Vars::from_pairs([("HERALD_JWT_SECRET", secret), ("HERALD_NATS_URL", "nats://gw:natspass@h:4222")])
    }

    #[test]
    fn a_short_secret_is_refused_and_a_long_one_never_printed() {
        let err = Config::from_vars(&vars("too-short")).unwrap_err();
        assert_eq!(err.name, "HERALD_JWT_SECRET");
        let long = "a-secret-of-at-least-thirty-two-bytes";
        let v = vars(long)
            .with("HERALD_ADMIN_JWT_SECRET", "admin-secret-also-at-least-32-bytes!")
            .with("HERALD_SERVICE_JWT_SECRET", "service-secret-too-at-least-32-bytes");
        let c = Config::from_vars(&v).unwrap();
        let printed = format!("{c:?}");
        for leak in [long, "admin-secret-also", "service-secret-too", "natspass"] {
            assert!(!printed.contains(leak), "{leak} in {printed}");
        }
        let short_admin = vars(long).with("HERALD_ADMIN_JWT_SECRET", "short");
        assert_eq!(Config::from_vars(&short_admin).unwrap_err().name, "HERALD_ADMIN_JWT_SECRET");
        let short_service = vars(long).with("HERALD_SERVICE_JWT_SECRET", "short");
        assert_eq!(Config::from_vars(&short_service).unwrap_err().name, "HERALD_SERVICE_JWT_SECRET");
    }
}
