//! A small emulator of the two documented AWS Lambda APIs a function meets: the Runtime API
//! (`/2018-06-01/runtime/...`, which the real `lambda_runtime` binary polls) and the Invoke API
//! (`POST /2015-03-31/functions/{name}/invocations`, which the bridge calls through
//! aws-sdk-lambda). An Invoke waits in a bounded queue until a function instance takes it with
//! `invocation/next`, and is answered by that instance's `response` or `error`.
//!
//! Each instance is the real binary, run as a child process with `AWS_LAMBDA_RUNTIME_API`
//! pointing here, and killed on drop; several instances take invocations concurrently, as Lambda
//! scales a function out.

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use herald_core::config::Vars;
use tokio::sync::{Mutex, mpsc, oneshot};

use crate::procs::bin_path;
use crate::stack::Task;

/// What an instance answered: its response body, or its error body.
type Answer = Result<Bytes, Bytes>;

struct Invocation {
    body: Bytes,
    answer: oneshot::Sender<Answer>,
}

struct Emu {
    queue: mpsc::Sender<Invocation>,
    next: Mutex<mpsc::Receiver<Invocation>>,
    pending: std::sync::Mutex<HashMap<String, oneshot::Sender<Answer>>>,
    ids: AtomicU64,
    invocations: AtomicU64,
}

pub struct LambdaEmulator {
    pub addr: std::net::SocketAddr,
    emu: Arc<Emu>,
    instances: Vec<Child>,
    _server: Task,
}

impl LambdaEmulator {
    /// Serves the APIs on a free port and starts `instances` of the binary `bin` (built in the
    /// same profile as this test) with `vars` as its environment.
    pub async fn start(bin: &str, instances: usize, vars: &Vars) -> anyhow::Result<Self> {
        let (queue, next) = mpsc::channel(256);
        let emu = Arc::new(Emu {
            queue,
            next: Mutex::new(next),
            pending: Default::default(),
            ids: AtomicU64::new(0),
            invocations: AtomicU64::new(0),
        });
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let app = router(emu.clone());
        let server = Task::spawn("lambda-emulator", move |shutdown| async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("a tokio listener");
            let _ = axum::serve(listener, app).with_graceful_shutdown(shutdown.cancelled_owned()).await;
        });
        let path = bin_path(bin)?;
        let mut children = Vec::new();
        for i in 0..instances {
            let mut cmd = Command::new(&path);
            cmd.env_clear()
                .envs(vars.iter())
                .env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
                .env("AWS_LAMBDA_FUNCTION_NAME", "herald-deliver")
                .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
                .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
                .env("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/herald-deliver")
                .env("AWS_LAMBDA_LOG_STREAM_NAME", format!("instance-{i}"))
                .env("HERALD_LOG", std::env::var("HERALD_TEST_LOG").unwrap_or_else(|_| "warn".into()))
                .stdin(Stdio::null())
                .stdout(Stdio::null());
            children.push(cmd.spawn().with_context(|| format!("starting {}", path.display()))?);
        }
        Ok(LambdaEmulator { addr, emu, instances: children, _server: server })
    }

    /// The endpoint to give aws-sdk-lambda (`HERALD_LAMBDA_ENDPOINT`).
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Invocations answered so far.
    pub fn invocations(&self) -> u64 {
        self.emu.invocations.load(Ordering::Relaxed)
    }
}

impl Drop for LambdaEmulator {
    fn drop(&mut self) {
        for c in &mut self.instances {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn router(emu: Arc<Emu>) -> Router {
    Router::new()
        .route("/2015-03-31/functions/{name}/invocations", post(invoke))
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route(
            "/2018-06-01/runtime/invocation/{id}/response",
            post(|s: State<Arc<Emu>>, p: Path<String>, b: Bytes| answer(s, p, b, true)),
        )
        .route(
            "/2018-06-01/runtime/invocation/{id}/error",
            post(|s: State<Arc<Emu>>, p: Path<String>, b: Bytes| answer(s, p, b, false)),
        )
        .route(
            "/2018-06-01/runtime/init/error",
            post(|body: Bytes| async move {
                tracing::error!(error = %String::from_utf8_lossy(&body), "lambda init error");
                StatusCode::ACCEPTED
            }),
        )
        .with_state(emu)
}

async fn invoke(State(emu): State<Arc<Emu>>, Path(_name): Path<String>, body: Bytes) -> Response {
    let (tx, rx) = oneshot::channel();
    if emu.queue.send(Invocation { body, answer: tx }).await.is_err() {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    match tokio::time::timeout(Duration::from_secs(120), rx).await {
        Ok(Ok(Ok(body))) => {
            emu.invocations.fetch_add(1, Ordering::Relaxed);
            (StatusCode::OK, [("content-type", "application/json"), ("x-amz-executed-version", "$LATEST")], body)
                .into_response()
        }
        Ok(Ok(Err(body))) => {
            emu.invocations.fetch_add(1, Ordering::Relaxed);
            (StatusCode::OK, [("content-type", "application/json"), ("x-amz-function-error", "Unhandled")], body)
                .into_response()
        }
        _ => (
            StatusCode::GATEWAY_TIMEOUT,
            [("x-amzn-errortype", "ServiceException")],
            r#"{"message":"no function instance answered"}"#,
        )
            .into_response(),
    }
}

async fn next(State(emu): State<Arc<Emu>>) -> Response {
    let invocation = emu.next.lock().await.recv().await;
    let Some(inv) = invocation else {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    };
    let id = format!("req-{}", emu.ids.fetch_add(1, Ordering::Relaxed));
    emu.pending.lock().unwrap_or_else(|p| p.into_inner()).insert(id.clone(), inv.answer);
    let deadline = time::OffsetDateTime::now_utc().unix_timestamp() * 1000 + 120_000;
    let mut headers = HeaderMap::new();
    let mut set = |k: &'static str, v: String| {
        headers.insert(k, v.parse().expect("a header value"));
    };
    set("lambda-runtime-aws-request-id", id);
    set("lambda-runtime-deadline-ms", deadline.to_string());
    set("lambda-runtime-invoked-function-arn", "arn:aws:lambda:us-east-1:000000000000:function:herald-deliver".into());
    set("lambda-runtime-trace-id", "Root=1-00000000-000000000000000000000000".into());
    set("content-type", "application/json".into());
    (StatusCode::OK, headers, inv.body).into_response()
}

async fn answer(State(emu): State<Arc<Emu>>, Path(id): Path<String>, body: Bytes, ok: bool) -> StatusCode {
    let waiter = emu.pending.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
    match waiter {
        Some(w) => {
            let _ = w.send(if ok { Ok(body) } else { Err(body) });
            StatusCode::ACCEPTED
        }
        None => StatusCode::NOT_FOUND,
    }
}
