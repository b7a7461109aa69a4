//! The command line's grammar: every subcommand, flag, environment default and example.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "herald",
    version,
    about = "Publish, listen to and manage Herald notifications",
    after_help = "Examples:
  herald token --user demo-user
  herald publish --source billing --user u-1 --kind invoice.paid --title 'Invoice paid'
  herald listen --token \"$(herald token --user u-1)\" --pretty
  herald inbox list --token \"$TOKEN\"
  herald dlq redrive --source billing

Environment: HERALD_URL (gateway), HERALD_TOKEN, HERALD_NATS_URL, HERALD_JWT_SECRET,
HERALD_SERVICE_JWT_SECRET, HERALD_JWT_AUDIENCE."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Mint a development token (user, or service with --scope)
    Token(TokenArgs),
    /// Publish a notification (NATS by default, or HTTP with --http)
    Publish(Box<PublishArgs>),
    /// Print every frame of a user's live connection, one JSON object per line
    #[command(visible_alias = "tail")]
    Listen(ListenArgs),
    /// Read and change a user's inbox over HTTP
    Inbox(InboxArgs),
    /// List or re-drive dead letters
    Dlq(DlqArgs),
    /// Revoke a user's tokens, or one token by its id (closes their sessions with 4001)
    Revoke(RevokeArgs),
}

#[derive(Debug, Args)]
pub struct Gateway {
    /// The gateway (http://host:port, or its ws:// URL)
    #[arg(long, env = "HERALD_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// The token to send (never printed)
    #[arg(long, env = "HERALD_TOKEN", hide_env_values = true)]
    pub token: String,
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  herald token --user demo-user                  # a user token for 24 h (HERALD_JWT_SECRET)
  herald token --user billing --scope publish    # a service token (HERALD_SERVICE_JWT_SECRET)
  herald token --user ops --scope admin --ttl 600")]
pub struct TokenArgs {
    /// The user id (the token's `sub`)
    #[arg(long, visible_alias = "sub")]
    pub user: String,
    /// Lifetime in seconds
    #[arg(long, default_value_t = 86_400)]
    pub ttl: u64,
    /// Make a service token with this scope (space-separated: publish, admin)
    #[arg(long)]
    pub scope: Option<String>,
    #[arg(long, env = "HERALD_JWT_SECRET", hide_env_values = true)]
    pub secret: Option<String>,
    /// The secret of service tokens (falls back to --secret)
    #[arg(long, env = "HERALD_SERVICE_JWT_SECRET", hide_env_values = true)]
    pub service_secret: Option<String>,
    #[arg(long, env = "HERALD_JWT_AUDIENCE", default_value = "herald")]
    pub audience: String,
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  herald publish --source billing --user u-1 --user u-2 --kind invoice.paid --title 'Invoice paid' --data '{\"n\":42}'
  herald publish --source billing --file request.json
  echo '{\"id\":\"x\",\"recipients\":{\"users\":[\"u-1\"]},\"kind\":\"k\",\"title\":\"t\"}' | herald publish --source billing --file -
  herald publish --http --token \"$(herald token --user billing --scope publish)\" --user u-1 --title Hi

The same id published again is one notification: retrying is always safe.")]
pub struct PublishArgs {
    /// The producing service (one subject token: herald.in.<source>)
    #[arg(long, default_value = "cli")]
    pub source: String,
    /// A whole request as JSON, from a file or `-` for stdin (flags below are then not used)
    #[arg(long, conflicts_with_all = ["user", "team", "title"])]
    pub file: Option<PathBuf>,
    /// A recipient user (repeatable)
    #[arg(long)]
    pub user: Vec<String>,
    /// A recipient team (repeatable)
    #[arg(long)]
    pub team: Vec<String>,
    #[arg(long, default_value = "message")]
    pub kind: String,
    #[arg(long, required_unless_present = "file")]
    pub title: Option<String>,
    #[arg(long)]
    pub body: Option<String>,
    /// Any JSON
    #[arg(long)]
    pub data: Option<String>,
    /// The idempotency key (default: a new one)
    #[arg(long)]
    pub id: Option<String>,
    #[command(flatten)]
    pub nats: NatsArgs,
    /// Publish with POST /v1/notifications on the gateway instead of NATS
    #[arg(long)]
    pub http: bool,
    #[arg(long, env = "HERALD_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// A service token with scope `publish` (with --http)
    #[arg(long, env = "HERALD_TOKEN", hide_env_values = true, required_if_eq("http", "true"))]
    pub token: Option<String>,
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  herald listen --token \"$TOKEN\"                       # JSON lines, for scripts and jq
  herald tail --token \"$TOKEN\" --pretty                # readable lines, for people
  herald listen --token \"$TOKEN\" --cursor 1700000000000000000000042

It reconnects by itself (backoff with jitter) and resumes from the last cursor; each
notification is printed once.")]
pub struct ListenArgs {
    #[command(flatten)]
    pub gateway: Gateway,
    /// Resume after this cursor
    #[arg(long)]
    pub cursor: Option<String>,
    /// Readable lines instead of JSON
    #[arg(long)]
    pub pretty: bool,
    /// Exit after this many notifications
    #[arg(long)]
    pub count: Option<u64>,
}

#[derive(Debug, Args)]
pub struct InboxArgs {
    #[command(subcommand)]
    pub command: InboxCommand,
}

#[derive(Debug, Subcommand)]
pub enum InboxCommand {
    /// One page of the inbox, newest first
    #[command(after_help = "Examples:
  herald inbox list --token \"$TOKEN\" --limit 20
  herald inbox list --token \"$TOKEN\" --unread --before <next from the previous page>")]
    List {
        #[command(flatten)]
        gateway: Gateway,
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[arg(long)]
        before: Option<String>,
        #[arg(long)]
        unread: bool,
        #[arg(long)]
        kind: Option<String>,
        #[arg(long)]
        archived: bool,
        #[arg(long)]
        pretty: bool,
    },
    /// The unread count
    #[command(after_help = "Example:\n  herald inbox unread --token \"$TOKEN\"")]
    Unread {
        #[command(flatten)]
        gateway: Gateway,
    },
    /// Mark notifications read (by id)
    #[command(after_help = "Example:\n  herald inbox read --token \"$TOKEN\" order-8812-shipped")]
    Read {
        #[command(flatten)]
        gateway: Gateway,
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Mark everything read
    #[command(after_help = "Example:\n  herald inbox read-all --token \"$TOKEN\"")]
    ReadAll {
        #[command(flatten)]
        gateway: Gateway,
    },
}

#[derive(Debug, Args)]
pub struct DlqArgs {
    #[command(subcommand)]
    pub command: DlqCommand,
}

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// Dead letters, oldest first, one JSON object per line
    #[command(after_help = "Examples:\n  herald dlq list\n  herald dlq list --source billing --limit 10")]
    List {
        #[arg(long)]
        source: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: usize,
        #[command(flatten)]
        nats: NatsArgs,
    },
    /// Send dead letters back to herald.in.<source> after a fix (a progress line on stderr)
    #[command(
        after_help = "Examples:\n  herald dlq redrive\n  herald dlq redrive --source billing\n  herald dlq redrive --seq 1234   # the original HERALD_IN sequence"
    )]
    Redrive {
        #[arg(long)]
        source: Option<String>,
        #[arg(long)]
        seq: Option<u64>,
        #[command(flatten)]
        nats: NatsArgs,
    },
}

/// Where NATS is, and the CA it is trusted with when it requires TLS (as in the cloud).
#[derive(Debug, Args)]
pub struct NatsArgs {
    #[arg(id = "nats_url", long = "nats", env = "HERALD_NATS_URL", default_value = "nats://127.0.0.1:4222")]
    pub url: String,
    /// PEM file of the CA that signed the NATS servers' certificates: TLS is then required and
    /// that CA is the only one trusted (the deployment's)
    #[arg(id = "nats_ca", long = "nats-ca", env = "HERALD_NATS_CA_FILE")]
    pub ca: Option<std::path::PathBuf>,
    /// NATS credentials file (a user JWT and its nkey seed) to log in with, instead of a
    /// password in the URL
    #[arg(id = "nats_creds", long = "nats-creds", env = "HERALD_NATS_CREDS_FILE", conflicts_with = "nats_nkey")]
    pub creds: Option<std::path::PathBuf>,
    /// File holding an nkey seed (`SU…`) to log in with, instead of a password in the URL
    #[arg(id = "nats_nkey", long = "nats-nkey", env = "HERALD_NATS_NKEY_SEED_FILE")]
    pub nkey: Option<std::path::PathBuf>,
}

impl NatsArgs {
    /// Connection options for the URL (its user and password, or `--nats-creds` / `--nats-nkey`,
    /// and TLS with `--nats-ca`).
    pub fn options(&self) -> anyhow::Result<async_nats::ConnectOptions> {
        use anyhow::Context;
        let tls = match &self.ca {
            None => None,
            Some(path) => {
                let pem = std::fs::read(path).with_context(|| format!("reading the NATS CA {}", path.display()))?;
                Some(
                    herald_core::nats_tls::NatsTls::from_pem(&pem)
                        .with_context(|| format!("the NATS CA {}", path.display()))?,
                )
            }
        };
        let options = herald_core::nats::options_with(&self.url, tls.as_ref());
        let auth = herald_core::nats_auth::NatsAuth::from_files(self.creds.as_deref(), self.nkey.as_deref())
            .context("the NATS login")?;
        Ok(match auth {
            Some(auth) => auth.options(options),
            None => options,
        })
    }
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  herald revoke --token \"$(herald token --user ops --scope admin)\" --user u-1 --reason 'laptop stolen'
  herald revoke --token \"$ADMIN_TOKEN\" --jti 8c1f…")]
pub struct RevokeArgs {
    #[command(flatten)]
    pub gateway: Gateway,
    /// Every token of this user issued until now
    #[arg(long, required_unless_present = "jti", conflicts_with = "jti")]
    pub user: Option<String>,
    /// One token, by its `jti`
    #[arg(long)]
    pub jti: Option<String>,
    #[arg(long, default_value = "")]
    pub reason: String,
}
