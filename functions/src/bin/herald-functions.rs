//! `herald-functions`: the runner binary. Reads its config once and runs until SIGTERM/Ctrl-C.
//!
//! `herald-functions redrive [--source S] [--seq N]` instead re-drives dead letters (all, those
//! of one source, or the one whose original `HERALD_IN` sequence is N) and exits;
//! `herald-functions sweep` removes every user's expired inbox items once and exits (for a
//! scheduler, when the runners' own sweep is off).

use anyhow::{Context, bail};
use herald_core::config::{NatsConfig, Vars};
use herald_functions::redrive::{Filter, redrive};
use herald_functions::{Config, run};
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("HERALD_LOG").unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let vars = Vars::from_env();
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("redrive") {
        return redrive_command(&vars, &args[1..]).await;
    }
    if args.first().map(String::as_str) == Some("sweep") && args.len() == 1 {
        return sweep_command(&vars).await;
    }
    if let Some(a) = args.first() {
        bail!("unknown argument {a:?}; usage: herald-functions [redrive [--source S] [--seq N] | sweep]");
    }
    let config = Config::from_vars(&vars)?;
    let listen = vars.string("HERALD_FUNCTIONS_LISTEN", "127.0.0.1:8081");
    let listener = tokio::net::TcpListener::bind(&listen).await.with_context(|| format!("binding {listen}"))?;
    let shutdown = CancellationToken::new();
    tokio::spawn(herald_core::signal::cancel_on_signal(shutdown.clone()));
    run(listener, config, shutdown).await?;
    Ok(())
}

async fn sweep_command(vars: &Vars) -> anyhow::Result<()> {
    let config = Config::from_vars(vars)?;
    let store = herald_functions::dynamo::DynamoInbox::connect(&config.dynamo).await;
    let r = store.sweep_all(herald_functions::sweep::PAUSE).await?;
    println!("swept {} users: {} expired items removed, {} users left for later", r.users, r.removed, r.failed);
    Ok(())
}

async fn redrive_command(vars: &Vars, args: &[String]) -> anyhow::Result<()> {
    let mut filter = Filter::default();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--source" => filter.source = Some(value.clone()),
            "--seq" => filter.original_seq = Some(value.parse().context("--seq")?),
            _ => {
                bail!("unknown flag {flag}; usage: herald-functions redrive [--source S] [--seq N]")
            }
        }
    }
    let nats = NatsConfig::from_vars(vars)?;
    let client = nats
        .options(&nats.url)
        .name("herald-functions-redrive")
        .custom_inbox_prefix(herald_core::subject::FUNCTIONS_INBOX_PREFIX)
        .connect(&nats.url)
        .await
        .with_context(|| format!("connecting to {}", nats.url))?;
    let js = async_nats::jetstream::new(client);
    let done = redrive(&js, &filter).await?;
    for r in &done {
        println!(
            "re-drove dead letter {} (source {}, original seq {}) as HERALD_IN seq {}",
            r.dlq_seq,
            r.source,
            r.original_seq.map_or("?".to_owned(), |s| s.to_string()),
            r.new_seq
        );
    }
    println!("{} dead letters re-driven", done.len());
    Ok(())
}
