//! `herald-functions`: hosts `deliver` on the shared durable pull consumer of `HERALD_IN`.
//!
//! Each message is handled in its own task, at most `concurrency` at once. Success is
//! double-acked (the server confirms it); a request that was dead-lettered (invalid, refused
//! for itself, or out of deliveries: see [`crate::settle`]) is terminated with a reason; a
//! transient failure is nak'ed with a growing delay. While a handler runs, the runner sends
//! progress so a big fan-out is not redelivered mid-way. Alongside, it turns the advisories of
//! requests given up elsewhere into dead letters ([`crate::deadletters`]).
//!
//! Several runner processes may share the consumer: JetStream hands each message to one of
//! them at a time, and `deliver` never publishes a copy twice, so a redelivery to another
//! process (after a crash or an expired ack wait) stores and publishes nothing twice. Each
//! process sends a user's copies in acceptance order ([`crate::order`]); across processes, two
//! notifications for one user that are handled at the same moment by two processes may be
//! stored in `HERALD_USER` in either order. Every client still sees one order (the cursor's), on
//! every device and on replay. A handler still running after `HERALD_HANDLER_DEADLINE_SECONDS`
//! is stopped and its request naked.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use async_nats::jetstream::{
    self, AckKind,
    consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull},
};
use futures::StreamExt;
use herald_core::subject::{IN_PREFIX, IN_STREAM, source_of};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::Config;
use crate::coalesce::Coalesced;
use crate::deliver::{Event, since_accepted};
use crate::dynamo::{self, DynamoInbox};
use crate::http::{self, Ops};
use crate::nats::JetStreamOutbox;
use crate::order::{Gate, Pass};
use crate::ports::{Failure, Inbox, Outbox};
use crate::settle::{HOLD_GRACE, Settle, TERM_DEAD_LETTERED, settle};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("connecting to NATS: {0}")]
    Connect(#[from] async_nats::ConnectError),
    #[error("setting up streams: {0}")]
    Streams(#[from] jetstream::context::CreateStreamError),
    #[error("setting up the consumer: {0}")]
    Consumer(String),
    #[error("setting up tables: {0}")]
    Tables(#[from] herald_store::StoreError),
    #[error("reading HERALD_USER: {0}")]
    UserStream(#[from] Failure),
    #[error("serving HTTP: {0}")]
    Http(#[from] std::io::Error),
}

/// Runs until `shutdown` is cancelled, then finishes the messages in hand (up to the grace
/// period) and drains NATS.
pub async fn run(listener: TcpListener, config: Config, shutdown: CancellationToken) -> Result<(), RunError> {
    run_with(listener, config, shutdown, |inbox, outbox| (inbox, outbox)).await
}

/// [`run`], with the inbox and outbox passed through `wrap` first: tests wrap them to stop the
/// runner at an exact step (a crash between the write and the ack, say).
pub async fn run_with<I, O, W>(
    listener: TcpListener,
    config: Config,
    shutdown: CancellationToken,
    wrap: W,
) -> Result<(), RunError>
where
    I: Inbox + 'static,
    O: Outbox + 'static,
    W: FnOnce(DynamoInbox, JetStreamOutbox) -> (I, O),
{
    let ops = Arc::new(Ops::default());
    let http = tokio::spawn({
        let shutdown = shutdown.clone();
        let app = http::app(ops.clone());
        async move { axum::serve(listener, app).with_graceful_shutdown(shutdown.cancelled_owned()).await }
    });

    let client = config
        .nats
        .options(&config.nats.url)
        .name("herald-functions")
        .custom_inbox_prefix(herald_core::subject::FUNCTIONS_INBOX_PREFIX)
        .retry_on_initial_connect()
        .connect(&config.nats.url)
        .await?;
    let js = jetstream::new(client.clone());
    crate::streams::ensure(&js, &config.streams).await?;

    let inbox = DynamoInbox::new(dynamo::client(&config.dynamo).await, &config.dynamo).with_ttl(config.inbox_ttl);
    if config.create_tables {
        inbox.ensure_tables().await?;
    }
    let _ = ops.store.set(inbox.clone());
    let user_outbox = JetStreamOutbox::new(js.clone());
    user_outbox.load().await?;
    let consumer = ensure_consumer(&js, &config).await?;
    let deadletters = tokio::spawn(crate::deadletters::run(
        js.clone(),
        config.consumer.clone(),
        config.deadletters_consumer.clone(),
        JetStreamOutbox::new(js.clone()),
        shutdown.clone(),
    ));
    let sweeper =
        config.sweep_interval.map(|every| tokio::spawn(crate::sweep::run(inbox.clone(), every, shutdown.clone())));
    let (inbox, outbox) = wrap(inbox, user_outbox);
    let inbox = Coalesced::new(inbox, config.store_lanes);
    ops.ready.store(true, Ordering::Relaxed);
    info!(consumer = %config.consumer, concurrency = config.concurrency, "herald-functions ready");

    let deps = Arc::new(Deps { inbox, outbox, ops: ops.clone(), config: config.clone() });
    let tracker = TaskTracker::new();
    let permits = Arc::new(Semaphore::new(config.concurrency.max(1)));
    let gate = Gate::default();
    while !shutdown.is_cancelled() {
        let Some(mut messages) = crate::pull::open(&consumer, config.concurrency.max(1), &shutdown, "deliver").await
        else {
            break;
        };
        loop {
            let permit = tokio::select! {
                _ = shutdown.cancelled() => break,
                p = permits.clone().acquire_owned() => p.expect("the semaphore is never closed"),
            };
            let next = tokio::select! {
                _ = shutdown.cancelled() => break,
                m = messages.next() => m,
            };
            match next {
                Some(Ok(message)) => {
                    let deps = deps.clone();
                    // Taken in the order messages come, so a redelivery takes back its place.
                    let pass = message.info().map(|i| gate.enter(i.stream_sequence)).ok();
                    tracker.spawn(async move {
                        handle(&deps, message, pass).await;
                        drop(permit);
                    });
                }
                Some(Err(e)) => debug!(error = %e, "consumer stream hiccup"),
                None => break,
            }
        }
    }

    ops.ready.store(false, Ordering::Relaxed);
    tracker.close();
    if tokio::time::timeout(config.shutdown_grace, tracker.wait()).await.is_err() {
        warn!("shutdown grace period ended with messages in hand; they will be redelivered");
    }
    match deadletters.await {
        Ok(Err(e)) => warn!(error = %e, "the dead-letter task stopped"),
        Err(e) => warn!(error = %e, "the dead-letter task panicked"),
        Ok(Ok(())) => {}
    }
    if let Some(s) = sweeper {
        let _ = s.await;
    }
    let _ = client.drain().await;
    let _ = http.await;
    Ok(())
}

struct Deps<I, O> {
    inbox: I,
    outbox: O,
    ops: Arc<Ops>,
    config: Config,
}

/// Creates the shared durable consumer, or brings its configuration up to date (the runner and
/// the Lambda bridge use the same one).
pub async fn ensure_consumer(js: &jetstream::Context, config: &Config) -> Result<PullConsumer, RunError> {
    let stream = js.get_stream(IN_STREAM).await.map_err(|e| RunError::Consumer(e.to_string()))?;
    stream
        .create_consumer(pull::Config {
            durable_name: Some(config.consumer.clone()),
            description: Some("herald deliver function".to_owned()),
            filter_subject: format!("{IN_PREFIX}>"),
            deliver_policy: DeliverPolicy::All,
            ack_policy: AckPolicy::Explicit,
            ack_wait: config.ack_wait,
            max_deliver: config.max_deliver,
            max_ack_pending: (config.concurrency as i64 * 4).max(256),
            ..Default::default()
        })
        .await
        .map_err(|e| RunError::Consumer(e.to_string()))
}

async fn handle<I: Inbox, O: Outbox>(deps: &Deps<I, O>, message: jetstream::Message, pass: Option<Pass>) {
    let m = &deps.ops.metrics;
    m.handled.inc();
    m.in_flight.inc();
    let started = Instant::now();
    let (stream_seq, delivered, accepted_at, pass) = match (message.info(), pass) {
        (Ok(i), Some(pass)) => (i.stream_sequence, i.delivered, i.published, pass),
        _ => {
            warn!("a message without JetStream metadata; terminating it");
            let _ = message.ack_with(AckKind::Term).await;
            m.in_flight.dec();
            return;
        }
    };
    let event = Event {
        source: source_of(message.subject.as_str()).unwrap_or(""),
        body: &message.payload,
        accepted_at,
        stream_seq,
        delivered: delivered.max(1) as u64,
        redrive_since: crate::nats::redrive_since(message.headers.as_ref()),
    };
    m.stages.fetched.observe(since_accepted(event));
    let work = settle(
        &deps.inbox,
        &deps.outbox,
        deps.config.fanout_concurrency,
        event,
        deps.config.max_deliver,
        deps.config.handler_deadline,
        &pass,
        &m.stages,
    );
    let result = with_progress(work, &message, deps.config.ack_wait / 3).await;
    let ack = match result {
        Settle::Delivered(report) => {
            drop(pass);
            m.delivered.inc();
            m.recipients_total.add(report.recipients as u64);
            m.copies_stored.add(report.stored as u64);
            m.copies_published.add(report.published as u64);
            m.copies_muted.add(report.muted as u64);
            m.copies_found.add(report.found as u64);
            m.recipients.observe(report.recipients as f64);
            debug!(seq = stream_seq, recipients = report.recipients, "delivered");
            message.double_ack().await
        }
        Settle::DeadLettered { code } => {
            drop(pass);
            m.dead_lettered.inc();
            info!(seq = stream_seq, source = event.source, code, "dead-lettered");
            term(&message, &format!("{TERM_DEAD_LETTERED}: {code}")).await
        }
        Settle::Retry { delay, error } => {
            pass.hold(delay + HOLD_GRACE);
            if error.what == "handler deadline" {
                m.deadline_exceeded.inc();
            }
            m.retried.inc();
            warn!(seq = stream_seq, delivered, error = %error.chain(), retry_in_ms = delay.as_millis() as u64, "transient failure");
            message.ack_with(AckKind::Nak(Some(delay))).await
        }
    };
    if let Err(e) = ack {
        // The message will be redelivered; every step is idempotent.
        warn!(seq = stream_seq, error = %e, "ack failed");
    }
    m.handle_seconds.observe(started.elapsed().as_secs_f64());
    m.in_flight.dec();
}

/// Terminates a message with a reason, which the MSG_TERMINATED advisory carries (async-nats
/// sends `+TERM` without one).
pub async fn term(message: &jetstream::Message, reason: &str) -> Result<(), async_nats::Error> {
    let reply = message.reply.clone().ok_or_else(|| std::io::Error::other("not a JetStream message"))?;
    message.context.client().publish(reply, format!("+TERM {reason}").into()).await?;
    Ok(())
}

/// Runs `work`, telling the server it is still in progress every `every`.
async fn with_progress<T>(work: impl Future<Output = T>, message: &jetstream::Message, every: Duration) -> T {
    let mut work = std::pin::pin!(work);
    let every = every.max(Duration::from_millis(100));
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    loop {
        tokio::select! {
            out = &mut work => return out,
            _ = tick.tick() => { let _ = message.ack_with(AckKind::Progress).await; }
        }
    }
}
