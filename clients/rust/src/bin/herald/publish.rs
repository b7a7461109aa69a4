//! `herald publish`: one request from flags, a JSON file or stdin, over NATS (retried with the
//! same id) or HTTP (`POST /v1/notifications`, retried the same way). Prints one JSON line.

use std::io::Read;

use anyhow::Context;
use herald_client::{HttpPublisher, NotificationRequest, Publisher, Recipients};
use serde_json::json;

use crate::args::PublishArgs;

pub async fn run(a: PublishArgs) -> anyhow::Result<()> {
    let request = request(&a)?;
    if a.http {
        let token = a.token.as_deref().context("--http needs --token (a service token with scope publish)")?;
        let accepted = HttpPublisher::new(&a.url, token)?.publish(&request).await?;
        println!("{}", json!({"id": accepted.id, "duplicate": accepted.duplicate}));
    } else {
        let client = a
            .nats
            .options()?
            .connect(&a.nats.url)
            .await
            .with_context(|| format!("connecting to {}", herald_core::nats::redacted(&a.nats.url)))?;
        let publisher = Publisher::new(client);
        let published = publisher.publish(&a.source, &request).await?;
        println!("{}", json!({"id": request.id, "sequence": published.sequence, "duplicate": published.duplicate}));
    }
    Ok(())
}

fn request(a: &PublishArgs) -> anyhow::Result<NotificationRequest> {
    if let Some(path) = &a.file {
        let text = if path.as_os_str() == "-" {
            let mut s = String::new();
            std::io::stdin().read_to_string(&mut s).context("reading the request from stdin")?;
            s
        } else {
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?
        };
        let mut req: NotificationRequest = serde_json::from_str(&text).context("the request is not valid JSON")?;
        if req.id.is_empty() {
            req.id = a.id.clone().unwrap_or_else(random_id);
        }
        return Ok(req);
    }
    anyhow::ensure!(!a.user.is_empty() || !a.team.is_empty(), "name at least one --user or --team");
    Ok(NotificationRequest {
        id: a.id.clone().unwrap_or_else(random_id),
        recipients: Recipients { users: a.user.clone(), teams: a.team.clone() },
        kind: a.kind.clone(),
        title: a.title.clone().context("--title is required")?,
        body: a.body.clone(),
        data: a.data.as_deref().map(serde_json::from_str).transpose().context("--data must be JSON")?,
        created_at: None,
    })
}

fn random_id() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("cli-{nanos:x}")
}
