//! The runner's configuration, read once from the environment at start.

use std::time::Duration;

use herald_core::config::{ConfigError, DynamoConfig, NatsConfig, StreamsConfig, Vars};

#[derive(Debug, Clone)]
pub struct Config {
    pub nats: NatsConfig,
    pub streams: StreamsConfig,
    pub dynamo: DynamoConfig,
    /// Name of the durable consumer every runner process shares.
    pub consumer: String,
    /// Messages handled at once by one process; also the consumer's per-pull batch.
    pub concurrency: usize,
    /// How long the server waits for an ack before redelivering; a handler that runs longer
    /// reports progress at a third of it.
    pub ack_wait: Duration,
    /// Deliveries at most per message (`-1`: until it succeeds). With the nak backoff (250 ms
    /// doubling to 30 s), 20 deliveries ride out about six minutes of outage.
    pub max_deliver: i64,
    /// Durable consumer on `HERALD_ADVISORIES` that turns give-ups into dead letters.
    pub deadletters_consumer: String,
    /// Shared store calls of each kind in flight at once (see [`crate::coalesce`]).
    pub store_lanes: usize,
    /// Recipients of one notification written and published at once.
    pub fanout_concurrency: usize,
    /// Whether to create missing tables (local servers, tests); the cloud's are made by `infra/`.
    pub create_tables: bool,
    /// How long in-flight messages may take to finish on shutdown.
    pub shutdown_grace: Duration,
    /// A handler still running after this is stopped and its request retried (a hung store or
    /// NATS call must not hold a message, and its progress reports, forever).
    pub handler_deadline: Duration,
    /// How long inbox items are kept (`expires_at`).
    pub inbox_ttl: Duration,
    /// How often the runner removes every user's expired items; `None` (`0`): never (another
    /// runner, or `herald-functions sweep` from a scheduler, does it).
    pub sweep_interval: Option<Duration>,
}

impl Config {
    pub fn from_vars(v: &Vars) -> Result<Self, ConfigError> {
        let dynamo = DynamoConfig::from_vars(v);
        Ok(Config {
            nats: NatsConfig::from_vars(v)?,
            streams: StreamsConfig::from_vars(v)?,
            create_tables: v.parse("HERALD_CREATE_TABLES", dynamo.endpoint.is_some())?,
            dynamo,
            consumer: v.string("HERALD_DELIVER_CONSUMER", "deliver"),
            concurrency: v.parse("HERALD_FUNCTIONS_CONCURRENCY", 512)?,
            ack_wait: v.seconds("HERALD_ACK_WAIT_SECONDS", Duration::from_secs(30))?,
            max_deliver: v.parse("HERALD_MAX_DELIVER", 20)?,
            deadletters_consumer: v.string("HERALD_DEADLETTERS_CONSUMER", "deadletters"),
            fanout_concurrency: v.parse("HERALD_FANOUT_CONCURRENCY", 32)?,
            store_lanes: v.parse("HERALD_STORE_LANES", crate::coalesce::DEFAULT_LANES)?,
            shutdown_grace: v.seconds("HERALD_SHUTDOWN_GRACE_SECONDS", Duration::from_secs(10))?,
            handler_deadline: v.seconds("HERALD_HANDLER_DEADLINE_SECONDS", Duration::from_secs(120))?,
            inbox_ttl: Duration::from_secs(v.parse::<u64>("HERALD_INBOX_TTL_DAYS", 90)? * 24 * 3600),
            sweep_interval: Some(v.seconds("HERALD_SWEEP_INTERVAL_SECONDS", Duration::from_secs(6 * 3600))?)
                .filter(|d| !d.is_zero()),
        })
    }
}
