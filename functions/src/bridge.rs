//! `herald-bridge`: what an event-source mapping does for SQS, for JetStream. It pulls batches
//! from the shared durable consumer of `HERALD_IN`, invokes the `deliver` Lambda function with
//! each (Invoke API, synchronous), acks the records the answer does not list in
//! `batchItemFailures`, and naks those it lists with the runner's backoff. While an invocation
//! runs it sends progress for every record, so a slow function is not redelivered mid-way.
//! A function error, a throttled or failed Invoke, or an unreadable answer naks the whole batch.
//!
//! Batches run `invocations` at a time; each batch keeps its records' order (the function
//! publishes them in order), but two batches in flight at once may interleave, as two runner
//! processes may. Like the runner, it also turns give-up advisories into dead letters and sweeps
//! expired inbox items (`HERALD_SWEEP_INTERVAL_SECONDS`), so a Lambda deployment needs no runner.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use async_nats::jetstream::{self, AckKind};
use aws_sdk_lambda::primitives::Blob;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use futures::StreamExt;
use herald_core::config::{ConfigError, Vars};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::batch::{Batch, BatchResponse, Record};
use crate::dynamo::{self, DynamoInbox};
use crate::http::{self, Ops};
use crate::nats::JetStreamOutbox;
use crate::runner::{RunError, ensure_consumer};
use crate::settle::backoff;

#[derive(Debug, Clone)]
pub struct BridgeConfig {
    /// NATS, streams, the consumer, its ack wait and max deliver: as the runner's.
    pub functions: crate::Config,
    /// The Lambda API endpoint; unset in the cloud (the AWS default chain applies).
    pub lambda_endpoint: Option<String>,
    pub function_name: String,
    /// Records per invocation at most.
    pub batch_size: usize,
    /// Invocations in flight at once.
    pub invocations: usize,
}

impl BridgeConfig {
    pub fn from_vars(v: &Vars) -> Result<Self, ConfigError> {
        Ok(BridgeConfig {
            functions: crate::Config::from_vars(v)?,
            lambda_endpoint: v.get("HERALD_LAMBDA_ENDPOINT").map(str::to_owned),
            function_name: v.string("HERALD_LAMBDA_FUNCTION", "herald-deliver"),
            batch_size: v.parse("HERALD_BRIDGE_BATCH", 10usize)?.clamp(1, 1000),
            invocations: v.parse("HERALD_BRIDGE_INVOCATIONS", 4usize)?.max(1),
        })
    }
}

/// Builds the Lambda client once (a local endpoint, an emulator, gets test credentials).
pub async fn lambda_client(config: &BridgeConfig) -> aws_sdk_lambda::Client {
    let sdk = crate::aws::sdk_config(&config.functions.dynamo.region, config.lambda_endpoint.as_deref()).await;
    aws_sdk_lambda::Client::new(&sdk)
}

/// Runs until `shutdown`, then lets the batches in flight finish (up to the grace period).
pub async fn run(listener: TcpListener, config: BridgeConfig, shutdown: CancellationToken) -> Result<(), RunError> {
    let ops = Arc::new(Ops::default());
    let http = tokio::spawn({
        let shutdown = shutdown.clone();
        let app = http::app(ops.clone());
        async move { axum::serve(listener, app).with_graceful_shutdown(shutdown.cancelled_owned()).await }
    });
    let f = &config.functions;
    let client = f
        .nats
        .options(&f.nats.url)
        .name("herald-bridge")
        .custom_inbox_prefix(herald_core::subject::FUNCTIONS_INBOX_PREFIX)
        .retry_on_initial_connect()
        .connect(&f.nats.url)
        .await?;
    let js = jetstream::new(client.clone());
    crate::streams::ensure(&js, &f.streams).await?;
    let consumer = ensure_consumer(&js, f).await?;
    let deadletters = tokio::spawn(crate::deadletters::run(
        js.clone(),
        f.consumer.clone(),
        f.deadletters_consumer.clone(),
        JetStreamOutbox::new(js.clone()),
        shutdown.clone(),
    ));
    // The bridge is the one long-running process of a Lambda deployment: it keeps the inboxes
    // of users who never return from growing forever, with their counts exact.
    let sweeper = match f.sweep_interval {
        Some(every) => {
            let inbox = DynamoInbox::new(dynamo::client(&f.dynamo).await, &f.dynamo).with_ttl(f.inbox_ttl);
            Some(tokio::spawn(crate::sweep::run(inbox, every, shutdown.clone())))
        }
        None => None,
    };
    let lambda = lambda_client(&config).await;
    ops.ready.store(true, Ordering::Relaxed);
    info!(function = %config.function_name, batch = config.batch_size, "herald-bridge ready");

    let shared = Arc::new(Shared { lambda, config: config.clone(), ops: ops.clone() });
    let tracker = TaskTracker::new();
    let permits = Arc::new(Semaphore::new(config.invocations));
    while !shutdown.is_cancelled() {
        let permit = tokio::select! {
            _ = shutdown.cancelled() => break,
            p = permits.clone().acquire_owned() => p.expect("the semaphore is never closed"),
        };
        let fetched = tokio::select! {
            _ = shutdown.cancelled() => break,
            f = consumer
                .fetch()
                .max_messages(config.batch_size)
                .expires(Duration::from_secs(1))
                .messages() => f,
        };
        let mut page = match fetched {
            Ok(p) => p,
            Err(e) => {
                warn!(error = %e, "pulling from the consumer failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let mut messages = Vec::with_capacity(config.batch_size);
        while let Some(m) = page.next().await {
            match m {
                Ok(m) => messages.push(m),
                Err(e) => debug!(error = %e, "fetch hiccup"),
            }
        }
        if messages.is_empty() {
            continue;
        }
        let shared = shared.clone();
        tracker.spawn(async move {
            invoke_batch(&shared, messages).await;
            drop(permit);
        });
    }
    ops.ready.store(false, Ordering::Relaxed);
    tracker.close();
    if tokio::time::timeout(f.shutdown_grace, tracker.wait()).await.is_err() {
        warn!("shutdown grace period ended with batches in flight; they will be redelivered");
    }
    let _ = deadletters.await;
    if let Some(s) = sweeper {
        let _ = s.await;
    }
    let _ = client.drain().await;
    let _ = http.await;
    Ok(())
}

struct Shared {
    lambda: aws_sdk_lambda::Client,
    config: BridgeConfig,
    ops: Arc<Ops>,
}

async fn invoke_batch(shared: &Shared, messages: Vec<jetstream::Message>) {
    let m = &shared.ops.metrics;
    m.handled.add(messages.len() as u64);
    m.in_flight.add(messages.len() as i64);
    let started = std::time::Instant::now();
    let mut batch =
        Batch { max_deliver: shared.config.functions.max_deliver, records: Vec::with_capacity(messages.len()) };
    let mut kept = Vec::with_capacity(messages.len());
    for message in messages {
        let Ok(info) = message.info() else {
            warn!("a message without JetStream metadata; terminating it");
            let _ = message.ack_with(AckKind::Term).await;
            m.in_flight.dec();
            continue;
        };
        batch.records.push(Record {
            seq: info.stream_sequence,
            subject: message.subject.to_string(),
            data: STANDARD.encode(&message.payload),
            published_ms: (info.published.unix_timestamp_nanos() / 1_000_000) as i64,
            delivered: info.delivered.max(1) as u64,
            redrive_since_ms: crate::nats::redrive_since(message.headers.as_ref())
                .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64),
        });
        kept.push(message);
    }
    let every = (shared.config.functions.ack_wait / 3).max(Duration::from_millis(100));
    let answer = {
        let invoke = invoke(shared, &batch);
        let mut invoke = std::pin::pin!(invoke);
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        loop {
            tokio::select! {
                out = &mut invoke => break out,
                _ = tick.tick() => {
                    for message in &kept {
                        let _ = message.ack_with(AckKind::Progress).await;
                    }
                }
            }
        }
    };
    let failed = match answer {
        Ok(a) => a.failed_seqs(),
        Err(e) => {
            warn!(error = %e, records = batch.records.len(), "invocation failed; retrying the batch");
            batch.records.iter().map(|r| r.seq).collect()
        }
    };
    for (message, record) in kept.iter().zip(&batch.records) {
        let ack = if failed.contains(&record.seq) {
            m.retried.inc();
            message.ack_with(AckKind::Nak(Some(backoff(record.delivered)))).await
        } else {
            m.delivered.inc();
            message.double_ack().await
        };
        if let Err(e) = ack {
            warn!(seq = record.seq, error = %e, "ack failed; the record comes again");
        }
        m.in_flight.dec();
    }
    m.handle_seconds.observe(started.elapsed().as_secs_f64());
    m.recipients.observe(batch.records.len() as f64);
}

#[derive(Debug, thiserror::Error)]
enum InvokeError {
    #[error("invoke: {0}")]
    Invoke(String),
    #[error("the function failed: {0}")]
    Function(String),
    #[error("the function's answer is not a batch response: {0}")]
    Answer(#[from] serde_json::Error),
}

async fn invoke(shared: &Shared, batch: &Batch) -> Result<BatchResponse, InvokeError> {
    let payload = serde_json::to_vec(batch)?;
    let out = shared
        .lambda
        .invoke()
        .function_name(&shared.config.function_name)
        .payload(Blob::new(payload))
        .send()
        .await
        .map_err(|e| InvokeError::Invoke(aws_sdk_lambda::error::DisplayErrorContext(e).to_string()))?;
    let body = out.payload.map(Blob::into_inner).unwrap_or_default();
    if let Some(kind) = out.function_error {
        return Err(InvokeError::Function(format!("{kind}: {}", String::from_utf8_lossy(&body))));
    }
    Ok(serde_json::from_slice(&body)?)
}
