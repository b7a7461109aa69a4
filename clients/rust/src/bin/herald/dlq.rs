//! `herald dlq`: dead letters on `HERALD_DLQ`, listed (one JSON object per line) or re-driven
//! with the functions' own re-drive, with a progress line on stderr.

use std::io::Write;

use anyhow::Context;
use herald_core::notification::{HDR_ORIGINAL_SEQ, HDR_REASON, HDR_REASON_CODE};
use herald_core::subject::{self, DLQ_PREFIX, DLQ_STREAM};
use herald_functions::redrive::{Filter, redrive_with_progress};
use serde_json::json;

use crate::args::{DlqArgs, DlqCommand, NatsArgs};

async fn jetstream(nats: &NatsArgs) -> anyhow::Result<async_nats::jetstream::Context> {
    let client = nats
        .options()?
        .name("herald-cli")
        .custom_inbox_prefix(subject::ADMIN_INBOX_PREFIX)
        .connect(&nats.url)
        .await
        .with_context(|| format!("connecting to {}", herald_core::nats::redacted(&nats.url)))?;
    Ok(async_nats::jetstream::new(client))
}

pub async fn run(a: DlqArgs) -> anyhow::Result<()> {
    match a.command {
        DlqCommand::List { source, limit, nats } => list(&nats, source.as_deref(), limit).await,
        DlqCommand::Redrive { source, seq, nats } => {
            let js = jetstream(&nats).await?;
            let mut stream = js.get_stream(DLQ_STREAM).await.context("opening HERALD_DLQ")?;
            let total = stream.info().await.context("reading HERALD_DLQ")?.state.messages;
            let filter = Filter { source, original_seq: seq };
            let mut n = 0u64;
            let mut err = std::io::stderr();
            let done = redrive_with_progress(&js, &filter, |_| {
                n += 1;
                let _ = write!(err, "\rre-driven {n} of at most {total} dead letters");
                let _ = err.flush();
            })
            .await?;
            eprintln!("\rre-driven {} dead letter(s){}", done.len(), " ".repeat(20));
            for r in done {
                println!(
                    "{}",
                    json!({"dlq_seq": r.dlq_seq, "source": r.source, "original_seq": r.original_seq, "new_seq": r.new_seq})
                );
            }
            Ok(())
        }
    }
}

/// Reads the stream by sequence (deleted ones are skipped), oldest first.
async fn list(nats: &NatsArgs, source: Option<&str>, limit: usize) -> anyhow::Result<()> {
    let js = jetstream(nats).await?;
    let mut stream = js.get_stream(DLQ_STREAM).await.context("opening HERALD_DLQ")?;
    let state = stream.info().await.context("reading HERALD_DLQ")?.state.clone();
    let mut shown = 0;
    for seq in state.first_sequence..=state.last_sequence {
        if shown >= limit || state.messages == 0 {
            break;
        }
        let Ok(m) = stream.get_raw_message(seq).await else { continue };
        let letter_source = m.subject.strip_prefix(DLQ_PREFIX).unwrap_or(&m.subject);
        if source.is_some_and(|s| s != letter_source) {
            continue;
        }
        let header = |name: &str| m.headers.get(name).map(|v| v.as_str().to_owned());
        let body: serde_json::Value =
            serde_json::from_slice(&m.payload).unwrap_or_else(|_| json!(String::from_utf8_lossy(&m.payload)));
        println!(
            "{}",
            json!({
                "seq": seq,
                "source": letter_source,
                "reason_code": header(HDR_REASON_CODE),
                "reason": header(HDR_REASON),
                "original_seq": header(HDR_ORIGINAL_SEQ).and_then(|s| s.parse::<u64>().ok()),
                "body": body,
            })
        );
        shown += 1;
    }
    Ok(())
}
