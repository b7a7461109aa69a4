//! `herald listen` (`tail`): a reconnecting subscriber printing one JSON object per event, or
//! readable lines with `--pretty`.

use futures::StreamExt;
use herald_client::{Subscriber, SubscriberEvent};

use crate::args::ListenArgs;

pub async fn run(a: ListenArgs) -> anyhow::Result<()> {
    let url = ws_url(&a.gateway.url);
    let mut events = Subscriber::new(url, a.gateway.token).cursor(a.cursor).events();
    let mut notifications = 0u64;
    while let Some(event) = events.next().await {
        if a.pretty {
            println!("{}", pretty(&event));
        } else {
            println!("{}", serde_json::to_string(&event)?);
        }
        match event {
            SubscriberEvent::Notification { .. } => {
                notifications += 1;
                if a.count.is_some_and(|c| notifications >= c) {
                    return Ok(());
                }
            }
            SubscriberEvent::Stopped { code, reason } => {
                anyhow::bail!("the gateway refused this connection ({}: {reason})", code.unwrap_or(0))
            }
            _ => {}
        }
    }
    Ok(())
}

/// `http://h:p` → `ws://h:p/v1/ws`; a ws:// URL is used as given.
fn ws_url(url: &str) -> String {
    if url.starts_with("ws://") || url.starts_with("wss://") {
        return url.to_owned();
    }
    let base = url.trim_end_matches('/');
    let base = base.strip_prefix("http://").map(|r| format!("ws://{r}")).unwrap_or_else(|| {
        base.strip_prefix("https://").map(|r| format!("wss://{r}")).unwrap_or_else(|| format!("ws://{base}"))
    });
    format!("{base}/v1/ws")
}

fn pretty(e: &SubscriberEvent) -> String {
    let now = time::OffsetDateTime::now_utc();
    let clock = format!("{:02}:{:02}:{:02}", now.hour(), now.minute(), now.second());
    let what = match e {
        SubscriberEvent::Connected { user, .. } => format!("connected as {user}"),
        SubscriberEvent::Notification { cursor, replay, notification: n } => {
            let body = n.body.as_deref().map(|b| format!(" — {b}")).unwrap_or_default();
            let replayed = if *replay { " (missed while away)" } else { "" };
            format!("● [{}] {}{body}{replayed}  id={} cursor={cursor}", n.kind, n.title, n.id)
        }
        SubscriberEvent::Replayed { count } => format!("caught up: {count} missed notification(s) replayed"),
        SubscriberEvent::Read { ids, read } => {
            format!("marked {} on some device: {}", if *read { "read" } else { "unread" }, ids.join(", "))
        }
        SubscriberEvent::Unread { count } => format!("unread: {count}"),
        SubscriberEvent::Reset { reason } => format!("reset ({reason}): reload the inbox"),
        SubscriberEvent::TokenRefreshed => "token refreshed".into(),
        SubscriberEvent::Reconnecting { code, reason, delay_ms } => {
            let code = code.map(|c| format!("{c} ")).unwrap_or_default();
            format!("disconnected ({code}{reason}); reconnecting in {delay_ms} ms")
        }
        SubscriberEvent::Stopped { code, reason } => format!("stopped ({}: {reason})", code.unwrap_or(0)),
    };
    format!("{clock}  {what}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn gateway_urls_become_socket_urls() {
        assert_eq!(super::ws_url("http://h:8080"), "ws://h:8080/v1/ws");
        assert_eq!(super::ws_url("https://h/"), "wss://h/v1/ws");
        assert_eq!(super::ws_url("ws://h:1/v1/ws"), "ws://h:1/v1/ws");
    }
}
