//! The streams, created at start and updated when their configuration changed.
//!
//! `HERALD_USER` republishes each stored message to `herald.live.<token>` with `Nats-Sequence`
//! (the cursor) and `Nats-Last-Sequence` (the previous one of that user: the gap detector), so
//! gateways get live messages only after they are stored, and can tell when one was missed.

use async_nats::jetstream::{
    self,
    stream::{Config, DiscardPolicy, Republish, RetentionPolicy, StorageType},
};
use herald_core::config::StreamsConfig;
use herald_core::subject::{
    ADVISORY_STREAM, DLQ_PREFIX, DLQ_STREAM, IN_PREFIX, IN_STREAM, LIVE_PREFIX, MAX_DELIVERIES_ADVISORY,
    TERMINATED_ADVISORY, USER_PREFIX, USER_STREAM,
};

pub fn in_stream(c: &StreamsConfig) -> Config {
    Config {
        name: IN_STREAM.to_owned(),
        description: Some("Notification requests from creators, deduplicated by id".to_owned()),
        subjects: vec![format!("{IN_PREFIX}>")],
        retention: RetentionPolicy::Limits,
        storage: StorageType::File,
        num_replicas: c.replicas,
        duplicate_window: c.in_duplicate_window,
        max_age: c.in_max_age,
        // Requests are at most 64 KiB; leave room for headers.
        max_message_size: 80 * 1024,
        ..Default::default()
    }
}

pub fn user_stream(c: &StreamsConfig) -> Config {
    Config {
        name: USER_STREAM.to_owned(),
        description: Some("Per-user notifications; the sequence is the client cursor".to_owned()),
        subjects: vec![format!("{USER_PREFIX}>")],
        retention: RetentionPolicy::Limits,
        discard: DiscardPolicy::Old,
        storage: StorageType::File,
        num_replicas: c.replicas,
        duplicate_window: c.user_duplicate_window,
        max_age: c.user_max_age,
        max_messages_per_subject: c.user_max_per_subject,
        allow_direct: true,
        republish: Some(Republish {
            source: format!("{USER_PREFIX}>"),
            destination: format!("{LIVE_PREFIX}>"),
            headers_only: false,
        }),
        ..Default::default()
    }
}

pub fn dlq_stream(c: &StreamsConfig) -> Config {
    Config {
        name: DLQ_STREAM.to_owned(),
        description: Some("Requests that could not be delivered, with the reason".to_owned()),
        subjects: vec![format!("{DLQ_PREFIX}>")],
        retention: RetentionPolicy::Limits,
        storage: StorageType::File,
        num_replicas: c.replicas,
        max_age: c.dlq_max_age,
        allow_direct: true,
        ..Default::default()
    }
}

/// Advisories that `HERALD_IN` consumers gave a message up; the runner turns each into a dead
/// letter (see [`crate::deadletters`]). Kept as long as dead letters, so a runner that was down
/// catches up.
pub fn advisory_stream(c: &StreamsConfig) -> Config {
    Config {
        name: ADVISORY_STREAM.to_owned(),
        description: Some("MAX_DELIVERIES and MSG_TERMINATED advisories of HERALD_IN".to_owned()),
        subjects: vec![MAX_DELIVERIES_ADVISORY.to_owned(), TERMINATED_ADVISORY.to_owned()],
        retention: RetentionPolicy::Limits,
        storage: StorageType::File,
        num_replicas: c.replicas,
        max_age: c.dlq_max_age,
        ..Default::default()
    }
}

/// Creates each stream or brings its configuration up to date.
pub async fn ensure(js: &jetstream::Context, c: &StreamsConfig) -> Result<(), jetstream::context::CreateStreamError> {
    for config in [in_stream(c), user_stream(c), dlq_stream(c), advisory_stream(c)] {
        js.create_or_update_stream(config).await?;
    }
    Ok(())
}
