//! `herald inbox`: list, unread count, read, read-all, over HTTP with the user's token.

use herald_client::{Inbox, ListOptions};
use serde_json::json;

use crate::args::{InboxArgs, InboxCommand};

pub async fn run(a: InboxArgs) -> anyhow::Result<()> {
    match a.command {
        InboxCommand::List { gateway, limit, before, unread, kind, archived, pretty } => {
            let inbox = Inbox::new(&gateway.url, gateway.token)?;
            let page = inbox.list(&ListOptions { limit: Some(limit), before, unread, kind, archived }).await?;
            if pretty {
                for item in &page.items {
                    let n = &item.notification;
                    let mark = if n.read { " " } else { "●" };
                    println!("{mark} {}  [{}] {}  id={}", n.created_at, n.kind, n.title, n.id);
                }
                match &page.next {
                    Some(next) => println!("more: --before {next}"),
                    None => println!("(end)"),
                }
            } else {
                println!("{}", serde_json::to_string(&page)?);
            }
        }
        InboxCommand::Unread { gateway } => {
            let n = Inbox::new(&gateway.url, gateway.token)?.unread_count().await?;
            println!("{}", json!({"unread": n}));
        }
        InboxCommand::Read { gateway, ids } => {
            let inbox = Inbox::new(&gateway.url, gateway.token)?;
            for id in ids {
                let r = inbox.read(&id).await?;
                println!("{}", json!({"id": id, "read": r.read, "unread": r.unread}));
            }
        }
        InboxCommand::ReadAll { gateway } => {
            let n = Inbox::new(&gateway.url, gateway.token)?.read_all().await?;
            println!("{}", json!({"unread": n}));
        }
    }
    Ok(())
}
