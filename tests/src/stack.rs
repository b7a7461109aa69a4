//! A whole Herald on loopback: NATS, a local DynamoDB (dynoxide), a functions runner and gateways, with helpers to
//! publish, connect clients and look into the stores the way a user or an operator would.

use std::time::Duration;

use anyhow::{Context, bail};
use async_nats::jetstream;
use aws_sdk_dynamodb::types::AttributeValue;
use herald_client::{Connection, Event, NotificationRequest, Publisher, Recipients, token};
use herald_core::config::{DynamoConfig, NatsConfig, StreamsConfig, Vars};
use herald_core::subject;
use herald_functions::dynamo::{self, DynamoInbox};
use herald_functions::ports::{Inbox, Outbox};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use crate::servers::http_get;
use crate::servers::{LocalDynamo, NatsRole, NatsServer};

pub const SECRET: &str = "test-secret-please-change-32-bytes-or-more";
/// The admin tokens' own key (the internal plane's admin API).
pub const ADMIN_SECRET: &str = "test-admin-secret-not-the-user-one-32b";
pub const ADMIN_AUDIENCE: &str = "herald-admin";
/// Service tokens' secret (`HERALD_SERVICE_JWT_SECRET`), distinct from the users'.
pub const SERVICE_SECRET: &str = "test-service-secret-please-change";
pub const AUDIENCE: &str = "herald";

/// Knobs a test may turn; everything else is the production default.
#[derive(Debug, Clone)]
pub struct StackOptions {
    pub gateways: usize,
    pub ack_wait: Duration,
    pub user_max_per_subject: i64,
    pub in_duplicate_window: Duration,
    pub drain_period: Duration,
    pub start_runner: bool,
    /// NATS with the users and permissions of `infra/nats/permissions.conf`: the runner logs in
    /// as `functions`, gateways as `gateway` (and `admin` for their admin plane), the publisher
    /// as `creator`; `client`/`js` as the harness's unrestricted `inspector`.
    pub nats_permissions: bool,
    /// More users for a secured NATS, as lines of its `users` list.
    pub extra_nats_users: String,
    /// More configuration variables for every process, e.g. `("HERALD_PING_SECONDS", "1")`.
    pub env: Vec<(String, String)>,
    /// On a secured NATS: gateways log in with this nkey seed file (`HERALD_NATS_NKEY_SEED_FILE`)
    /// and a URL without a password, instead of as the `gateway` user.
    pub gateway_nkey_seed_file: Option<std::path::PathBuf>,
}

impl Default for StackOptions {
    fn default() -> Self {
        StackOptions {
            gateways: 1,
            ack_wait: Duration::from_secs(30),
            user_max_per_subject: 1000,
            in_duplicate_window: Duration::from_secs(120),
            drain_period: Duration::from_secs(1),
            start_runner: true,
            nats_permissions: false,
            extra_nats_users: String::new(),
            env: Vec::new(),
            gateway_nkey_seed_file: None,
        }
    }
}

/// One of our processes, run on its own tokio runtime and thread so that killing it drops
/// everything it owns at once (its tasks, its NATS connection, its sockets), as `kill -9` would.
pub struct Task {
    shutdown: CancellationToken,
    kill: Option<oneshot::Sender<()>>,
    done: Option<oneshot::Receiver<()>>,
}

impl Task {
    /// Runs `make(shutdown)` on a fresh runtime in a new thread.
    pub fn spawn<F, Fut>(name: &str, make: F) -> Self
    where
        F: FnOnce(CancellationToken) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        let shutdown = CancellationToken::new();
        let token = shutdown.clone();
        let (kill_tx, kill_rx) = oneshot::channel::<()>();
        let (done_tx, done_rx) = oneshot::channel::<()>();
        std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("a tokio runtime");
                rt.block_on(async move {
                    tokio::select! {
                        _ = make(token) => {}
                        _ = kill_rx => {}
                    }
                });
                // Drops every task still spawned on it, mid-step.
                rt.shutdown_background();
                let _ = done_tx.send(());
            })
            .expect("spawning a thread");
        Task { shutdown, kill: Some(kill_tx), done: Some(done_rx) }
    }

    /// Cancels and waits for a clean exit.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(done) = self.done.take() {
            let _ = done.await;
        }
    }

    /// Stops the task where it stands, as `kill -9` would: nothing after this point runs.
    pub async fn kill(mut self) {
        if let Some(kill) = self.kill.take() {
            let _ = kill.send(());
        }
        if let Some(done) = self.done.take() {
            let _ = done.await;
        }
    }
}

impl Drop for Task {
    fn drop(&mut self) {
        if let Some(kill) = self.kill.take() {
            let _ = kill.send(());
        }
    }
}

pub struct Stack {
    pub nats: NatsServer,
    /// The local DynamoDB server (dynoxide; the field keeps its old name for the benchmarks).
    pub dynalite: LocalDynamo,
    pub options: StackOptions,
    pub runner: Option<Task>,
    pub gateways: Vec<(String, Task)>,
    /// The internal plane (`/metrics`, `/v1/admin/*`) of each gateway, by index.
    pub admin_addrs: Vec<String>,
    pub client: async_nats::Client,
    pub js: jetstream::Context,
    pub publisher: Publisher,
    pub dynamo: aws_sdk_dynamodb::Client,
}

impl Stack {
    pub async fn start(options: StackOptions) -> anyhow::Result<Self> {
        crate::init_logging();
        let nats = if options.nats_permissions {
            NatsServer::start_secured_with(&options.extra_nats_users)?
        } else {
            NatsServer::start()?
        };
        let dynalite = LocalDynamo::start()?;
        let client = herald_core::nats::options(&nats.url())
            .connect(nats.url())
            .await
            .context("connecting the harness to NATS")?;
        let publisher = if options.nats_permissions {
            let creator = Publisher::connect(&nats.url_as(NatsRole::Creator)).await;
            creator.context("connecting as the creator")?
        } else {
            Publisher::new(client.clone())
        };
        let mut stack = Stack {
            js: jetstream::new(client.clone()),
            publisher,
            dynamo: dynamo::client(&DynamoConfig {
                endpoint: Some(dynalite.endpoint()),
                region: "us-east-1".into(),
                table_prefix: "herald_".into(),
            })
            .await,
            client,
            nats,
            dynalite,
            options: options.clone(),
            runner: None,
            gateways: Vec::new(),
            admin_addrs: Vec::new(),
        };
        if options.start_runner {
            stack.start_runner().await?;
        } else {
            // Gateways need the streams; the runner is what makes them.
            herald_functions::streams::ensure(&stack.js, &stack.streams_config()).await?;
        }
        for _ in 0..options.gateways {
            stack.start_gateway().await?;
        }
        Ok(stack)
    }

    pub fn vars(&self) -> Vars {
        let nats = self.nats.url();
        let dyn_ep = self.dynalite.endpoint();
        let per = self.options.user_max_per_subject.to_string();
        let dup = self.options.in_duplicate_window.as_secs_f64().to_string();
        let ack = self.options.ack_wait.as_secs_f64().to_string();
        let drain = self.options.drain_period.as_secs_f64().to_string();
        let pairs: Vec<(&str, String)> = vec![
            ("HERALD_NATS_URL", nats),
            ("HERALD_DYNAMODB_ENDPOINT", dyn_ep),
            ("HERALD_JWT_SECRET", SECRET.into()),
            ("HERALD_SERVICE_JWT_SECRET", SERVICE_SECRET.into()),
            ("HERALD_JWT_AUDIENCE", AUDIENCE.into()),
            ("HERALD_ADMIN_JWT_SECRET", ADMIN_SECRET.into()),
            ("HERALD_USER_MAX_PER_USER", per),
            ("HERALD_IN_DUPLICATE_WINDOW_SECONDS", dup),
            ("HERALD_ACK_WAIT_SECONDS", ack),
            ("HERALD_DRAIN_SECONDS", drain),
            ("HERALD_SHUTDOWN_GRACE_SECONDS", "2".into()),
        ];
        let pairs: Vec<(&str, String)> =
            pairs.into_iter().chain(self.options.env.iter().map(|(k, v)| (k.as_str(), v.clone()))).collect();
        Vars::from_pairs(pairs.iter().map(|(k, v)| (*k, v.as_str())))
    }

    /// A gateway's variables: on a secured NATS, its own user and the admin user for the admin
    /// plane.
    pub fn gateway_vars(&self) -> Vars {
        let vars = self.vars();
        if !self.nats.secured() {
            return vars;
        }
        let vars = vars
            .with("HERALD_NATS_URL", self.nats.url_as(NatsRole::Gateway))
            .with("HERALD_NATS_ADMIN_URL", self.nats.url_as(NatsRole::Admin))
            .with("HERALD_NATS_CREATOR_URL", self.nats.url_as(NatsRole::Creator));
        match &self.options.gateway_nkey_seed_file {
            Some(seed) => vars
                .with("HERALD_NATS_URL", format!("nats://127.0.0.1:{}", self.nats.port))
                .with("HERALD_NATS_NKEY_SEED_FILE", seed.display().to_string()),
            None => vars,
        }
    }

    pub fn streams_config(&self) -> StreamsConfig {
        StreamsConfig::from_vars(&self.vars()).expect("test vars are valid")
    }

    pub fn nats_config(&self) -> NatsConfig {
        NatsConfig::from_vars(&self.vars()).expect("the stack's NATS settings are valid")
    }

    pub async fn start_runner(&mut self) -> anyhow::Result<()> {
        self.start_runner_with(|i, o| (i, o)).await
    }

    /// Starts a runner whose inbox and outbox pass through `wrap` (see `run_with`).
    pub async fn start_runner_with<I, O, W>(&mut self, wrap: W) -> anyhow::Result<()>
    where
        I: Inbox + 'static,
        O: Outbox + 'static,
        W: FnOnce(DynamoInbox, herald_functions::nats::JetStreamOutbox) -> (I, O) + Send + 'static,
    {
        let vars = self.vars().with("HERALD_NATS_URL", self.nats.url_as(NatsRole::Functions));
        let config = herald_functions::Config::from_vars(&vars)?;
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let ops = listener.local_addr()?;
        let task = Task::spawn("runner", move |token| async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("a tokio listener");
            if let Err(e) = herald_functions::runner::run_with(listener, config, token, wrap).await {
                tracing::error!(error = %e, "runner failed");
            }
        });
        wait_ready(&format!("http://{ops}/readyz")).await.context("runner did not become ready")?;
        self.runner = Some(task);
        Ok(())
    }

    /// Starts one more gateway; returns its index.
    pub async fn start_gateway(&mut self) -> anyhow::Result<usize> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let (gateway, admin) = self.spawn_gateway(listener, std::net::TcpListener::bind("127.0.0.1:0")?).await?;
        self.gateways.push(gateway);
        self.admin_addrs.push(admin);
        Ok(self.gateways.len() - 1)
    }

    /// Kills gateway `i` as `kill -9` would and starts a new one on the same address.
    pub async fn restart_gateway(&mut self, i: usize) -> anyhow::Result<()> {
        self.kill_gateway(i).await;
        self.revive_gateway(i).await
    }

    /// Kills gateway `i` as `kill -9` would; [`Stack::revive_gateway`] starts it again.
    pub async fn kill_gateway(&mut self, i: usize) {
        let addr = self.gateways[i].0.clone();
        let (_, task) = std::mem::replace(&mut self.gateways[i], (addr, Task::spawn("killed", |_| async {})));
        task.kill().await;
    }

    /// Starts a gateway again on the address of gateway `i`.
    pub async fn revive_gateway(&mut self, i: usize) -> anyhow::Result<()> {
        // The same public and internal addresses: clients and scrapers keep theirs.
        let listener = rebind(&self.gateways[i].0).await?;
        let admin = rebind(&self.admin_addrs[i]).await?;
        let (gateway, admin) = self.spawn_gateway(listener, admin).await?;
        self.gateways[i] = gateway;
        self.admin_addrs[i] = admin;
        Ok(())
    }

    /// A gateway on `listener`: its address and task, and its internal plane's address.
    async fn spawn_gateway(
        &self,
        listener: std::net::TcpListener,
        admin: std::net::TcpListener,
    ) -> anyhow::Result<((String, Task), String)> {
        let config = herald_gateway::Config::from_vars(&self.gateway_vars())?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        admin.set_nonblocking(true)?;
        let admin_addr = admin.local_addr()?.to_string();
        let task = Task::spawn("gateway", move |token| async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("a tokio listener");
            let admin = tokio::net::TcpListener::from_std(admin).expect("a tokio listener");
            if let Err(e) = herald_gateway::run_with_admin(listener, admin, config, token).await {
                tracing::error!(error = %e, "gateway failed");
            }
        });
        // The internal plane's /readyz: the public port may require a PROXY header.
        wait_ready(&format!("http://{admin_addr}/readyz")).await.context("gateway did not become ready")?;
        Ok(((addr.to_string(), task), admin_addr))
    }

    pub fn gateway_addr(&self, i: usize) -> &str {
        &self.gateways[i].0
    }

    /// Gateway `i`'s internal plane address.
    pub fn admin_addr(&self, i: usize) -> &str {
        &self.admin_addrs[i]
    }

    /// The `/metrics` page of gateway `i` (from its internal plane).
    pub async fn metrics(&self, i: usize) -> anyhow::Result<String> {
        Ok(http_get(&format!("http://{}/metrics", self.admin_addr(i))).await?.1)
    }

    /// An admin token (signed with the admin key, `scope: admin`) for `sub`.
    pub fn admin_token(&self, sub: &str) -> String {
        let now = token::now_secs();
        let claims = serde_json::json!({"sub": sub, "aud": ADMIN_AUDIENCE, "exp": now + 600, "scope": "admin"});
        token::sign(ADMIN_SECRET, &claims)
    }

    /// A request to gateway `gw`'s internal plane: status and JSON body (`null` if none).
    pub async fn admin_request(
        &self,
        gw: usize,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
        token: &str,
    ) -> anyhow::Result<(u16, serde_json::Value)> {
        http_request(self.admin_addr(gw), method, path, body, Some(token)).await
    }

    pub fn ws_url(&self, i: usize) -> String {
        format!("ws://{}/v1/ws", self.gateways[i].0)
    }

    pub fn token(&self, user: &str) -> String {
        token::user_token(SECRET, AUDIENCE, user, 3600)
    }

    /// A service token for `service` with `scope` (space-separated).
    pub fn service_token(&self, service: &str, scope: &str) -> String {
        token::service_token(SERVICE_SECRET, AUDIENCE, service, scope, 3600)
    }

    /// An HTTP request to gateway `gw` with a bearer token and an optional JSON body.
    pub async fn http(
        &self,
        gw: usize,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&serde_json::Value>,
    ) -> anyhow::Result<crate::http::Response> {
        crate::http::call(self.gateway_addr(gw), method, path, token, body).await
    }

    /// Connects `user` to gateway 0 and waits for `welcome`.
    pub async fn connect(&self, user: &str, cursor: Option<&str>) -> anyhow::Result<Connection> {
        self.connect_to(0, user, cursor).await
    }

    pub async fn connect_to(&self, gw: usize, user: &str, cursor: Option<&str>) -> anyhow::Result<Connection> {
        let mut c = Connection::connect(&self.ws_url(gw), &self.token(user), cursor).await?;
        match next_event(&mut c).await? {
            Event::Welcome { user: u, .. } if u == user => {}
            other => bail!("expected welcome, got {other:?}"),
        }
        // `unread` follows `welcome` before anything else: consumed here, so that a test reading
        // the connection directly sees its notifications first.
        match next_frame(&mut c).await? {
            Event::Unread { .. } => Ok(c),
            other => bail!("expected unread after welcome, got {other:?}"),
        }
    }

    pub async fn publish(&self, id: &str, users: &[&str]) -> anyhow::Result<herald_client::Published> {
        Ok(self.publisher.publish("test", &request(id, users)).await?)
    }

    /// The inbox library on this stack's DynamoDB (teams, preferences, items).
    pub fn inbox(&self) -> DynamoInbox {
        DynamoInbox::new(
            self.dynamo.clone(),
            &DynamoConfig {
                endpoint: Some(self.dynalite.endpoint()),
                region: "us-east-1".into(),
                table_prefix: "herald_".into(),
            },
        )
    }

    /// How many inbox items DynamoDB holds for (user, id): 0 or 1.
    pub async fn stored(&self, user: &str, id: &str) -> anyhow::Result<usize> {
        let got = self
            .dynamo
            .get_item()
            .table_name("herald_notifications")
            .key("user", AttributeValue::S(user.into()))
            .key("nid", AttributeValue::S(id.into()))
            .consistent_read(true)
            .send()
            .await?;
        Ok(usize::from(got.item.is_some()))
    }

    /// How many messages `HERALD_USER` holds for `user`.
    pub async fn stream_count(&self, user: &str) -> anyhow::Result<u64> {
        let stream = self.js.get_stream(subject::USER_STREAM).await?;
        let info = stream.info_with_subjects(subject::user_subject(user)).await?;
        let mut total = 0;
        let mut info = info;
        use futures::StreamExt;
        while let Some(s) = info.next().await {
            total += s?.1 as u64;
        }
        Ok(total)
    }
}

/// The ids of the notifications among `events`, in order.
pub fn notification_ids(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Notification { notification, .. } => Some(notification.id.clone()),
            _ => None,
        })
        .collect()
}

/// A minimal valid request.
pub fn request(id: &str, users: &[&str]) -> NotificationRequest {
    NotificationRequest {
        id: id.into(),
        recipients: Recipients { users: users.iter().map(|u| u.to_string()).collect(), teams: vec![] },
        kind: "test".into(),
        title: format!("title of {id}"),
        body: None,
        data: None,
        created_at: None,
    }
}

/// Publishes each `(id, users)` of `plan` in order, `every` apart, on a task of its own (traffic
/// that keeps flowing while a test restarts or drains something).
pub fn publish_paced(publisher: Publisher, plan: Vec<(String, Vec<String>)>, every: Duration) -> JoinHandle<()> {
    tokio::spawn(async move {
        for (id, users) in plan {
            let refs: Vec<&str> = users.iter().map(String::as_str).collect();
            publisher.publish("test", &request(&id, &refs)).await.expect("publish");
            tokio::time::sleep(every).await;
        }
    })
}

/// The next event, or an error after 10 s; `read` and `unread` frames (read state, which most
/// tests do not look at) are passed over: see [`next_frame`] for every frame.
pub async fn next_event(c: &mut Connection) -> anyhow::Result<Event> {
    loop {
        let e = next_frame(c).await?;
        if !matches!(e, Event::Read { .. } | Event::Unread { .. }) {
            return Ok(e);
        }
    }
}

/// The next event of any type, or an error after 10 s.
pub async fn next_frame(c: &mut Connection) -> anyhow::Result<Event> {
    tokio::time::timeout(Duration::from_secs(10), c.next()).await.context("no event within 10 s")?.map_err(Into::into)
}

/// Everything but `read` and `unread` frames that arrives within `quiet` of the previous event
/// (or the start).
pub async fn drain_events(c: &mut Connection, quiet: Duration) -> Vec<Event> {
    drain_frames(c, quiet)
        .await
        .into_iter()
        .filter(|e| !matches!(e, Event::Read { .. } | Event::Unread { .. }))
        .collect()
}

/// Every frame that arrives within `quiet` of the previous one (or the start).
pub async fn drain_frames(c: &mut Connection, quiet: Duration) -> Vec<Event> {
    let mut out = Vec::new();
    while let Ok(Ok(e)) = tokio::time::timeout(quiet, c.next()).await {
        let closed = matches!(e, Event::Closed { .. });
        out.push(e);
        if closed {
            break;
        }
    }
    out
}

pub async fn wait_ready(url: &str) -> anyhow::Result<()> {
    for _ in 0..200 {
        if http_get(url).await.map(|(s, _)| s == 200).unwrap_or(false) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("{url} not ready in 10 s")
}

/// A bare HTTP/1.1 request over loopback with an optional bearer token and JSON body: status and
/// JSON body (`null` when there is none or it is not JSON).
pub async fn http_request(
    addr: &str,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
    token: Option<&str>,
) -> anyhow::Result<(u16, serde_json::Value)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await?;
    let text = String::from_utf8_lossy(&buf).to_string();
    let status = text.split(' ').nth(1).context("status line")?.parse()?;
    let json = text.split_once("\r\n\r\n").and_then(|(_, b)| serde_json::from_str(b).ok()).unwrap_or_default();
    Ok((status, json))
}

/// Binds `addr` again once the sockets of a killed process let go of it.
async fn rebind(addr: &str) -> anyhow::Result<std::net::TcpListener> {
    let mut tries = 0;
    loop {
        match std::net::TcpListener::bind(addr) {
            Ok(l) => return Ok(l),
            Err(e) if tries < 100 => {
                tries += 1;
                tracing::debug!(error = %e, addr, "rebinding");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}
