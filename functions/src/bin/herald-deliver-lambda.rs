//! `herald-deliver-lambda`: the `deliver` function on AWS Lambda (`provided.al2023`, built as
//! `bootstrap`). Clients are built once, before the first invocation; each invocation returns
//! only after NATS has confirmed every publish and the connection is flushed.

use herald_core::config::Vars;
use herald_functions::Config;
use herald_functions::batch::{Batch, BatchResponse};
use herald_functions::coalesce::Coalesced;
use herald_functions::dynamo::{self, DynamoInbox};
use herald_functions::lambda::handle_batch;
use herald_functions::nats::JetStreamOutbox;
use herald_functions::order::Gate;
use lambda_runtime::{Error, LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("HERALD_LOG").unwrap_or_else(|_| "info".into()))
        .without_time()
        .init();
    let config = Config::from_vars(&Vars::from_env())?;
    let client = config
        .nats
        .options(&config.nats.url)
        .name("herald-deliver-lambda")
        .custom_inbox_prefix(herald_core::subject::FUNCTIONS_INBOX_PREFIX)
        .connect(&config.nats.url)
        .await?;
    let outbox = JetStreamOutbox::new(async_nats::jetstream::new(client.clone()));
    outbox.load().await?;
    let inbox = DynamoInbox::new(dynamo::client(&config.dynamo).await, &config.dynamo).with_ttl(config.inbox_ttl);
    if config.create_tables {
        inbox.ensure_tables().await?;
    }
    // The records of a batch are handled at once: their store calls are sent together.
    let inbox = Coalesced::new(inbox, config.store_lanes);
    let gate = Gate::default();
    let (inbox, outbox, client, config, gate) = (&inbox, &outbox, &client, &config, &gate);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Batch>| async move {
        let answer: BatchResponse = handle_batch(inbox, outbox, config, gate, &event.payload).await;
        client.flush().await?;
        Ok::<_, Error>(answer)
    }))
    .await
}
