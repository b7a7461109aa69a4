//! `herald`: the command line for developers and operators.
//!
//! ```text
//! herald token --sub USER [--ttl SECONDS]                 # HERALD_JWT_SECRET, HERALD_JWT_AUDIENCE
//! herald token --sub SERVICE --scope 'publish admin' [--ttl SECONDS]   # HERALD_SERVICE_JWT_SECRET
//! herald publish --source S --user U [--user U2] [--team T] [--kind K] --title T
//!                [--body B] [--data JSON] [--id ID]       # HERALD_NATS_URL
//! herald listen --url WS_URL --token TOKEN [--cursor C]   # prints every frame
//! ```

use anyhow::{Context, bail};
use herald_client::{Connection, Event, NotificationRequest, Publisher, Recipients, token};
use herald_core::config::Vars;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let command = args.next().unwrap_or_default();
    let flags = Flags::parse(args.collect())?;
    let vars = Vars::from_env();
    match command.as_str() {
        "token" => {
            let audience = vars.string("HERALD_JWT_AUDIENCE", "herald");
            let ttl: u64 = flags.one("ttl").unwrap_or("86400").parse().context("--ttl")?;
            let sub = flags.required("sub")?;
            match flags.one("scope") {
                None => println!("{}", token::user_token(&vars.required("HERALD_JWT_SECRET")?, &audience, sub, ttl)),
                Some(scope) => {
                    let secret = vars.required("HERALD_SERVICE_JWT_SECRET")?;
                    println!("{}", token::service_token(&secret, &audience, sub, scope, ttl));
                }
            }
        }
        "publish" => {
            let url = vars.string("HERALD_NATS_URL", "nats://127.0.0.1:4222");
            let request = NotificationRequest {
                id: flags.one("id").map(str::to_owned).unwrap_or_else(random_id),
                recipients: Recipients { users: flags.all("user"), teams: flags.all("team") },
                kind: flags.one("kind").unwrap_or("message").to_owned(),
                title: flags.required("title")?.to_owned(),
                body: flags.one("body").map(str::to_owned),
                data: flags.one("data").map(serde_json::from_str).transpose().context("--data must be JSON")?,
                created_at: None,
            };
            let publisher = Publisher::connect(&url).await?;
            let published = publisher.publish(flags.required("source")?, &request).await?;
            println!(
                "{}",
                serde_json::json!({"id": request.id, "sequence": published.sequence, "duplicate": published.duplicate})
            );
        }
        "listen" => {
            let cursor = flags.one("cursor");
            let mut conn = Connection::connect(flags.required("url")?, flags.required("token")?, cursor).await?;
            loop {
                let event = conn.next().await?;
                println!("{event:?}");
                if let Event::Closed { .. } = event {
                    break;
                }
            }
        }
        _ => bail!("usage: herald token|publish|listen [--flag value]… (see the README)"),
    }
    Ok(())
}

fn random_id() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("cli-{nanos:x}")
}

/// `--name value` pairs; a name may repeat.
struct Flags(Vec<(String, String)>);

impl Flags {
    fn parse(args: Vec<String>) -> anyhow::Result<Self> {
        let mut pairs = Vec::new();
        let mut it = args.into_iter();
        while let Some(a) = it.next() {
            let Some(name) = a.strip_prefix("--") else { bail!("unexpected argument {a:?}") };
            let value = it.next().with_context(|| format!("--{name} needs a value"))?;
            pairs.push((name.to_owned(), value));
        }
        Ok(Flags(pairs))
    }

    fn one(&self, name: &str) -> Option<&str> {
        self.0.iter().rev().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    fn all(&self, name: &str) -> Vec<String> {
        self.0.iter().filter(|(n, _)| n == name).map(|(_, v)| v.clone()).collect()
    }

    fn required(&self, name: &str) -> anyhow::Result<&str> {
        self.one(name).with_context(|| format!("--{name} is required"))
    }
}
