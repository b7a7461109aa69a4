//! A [`Subscriber`]: a WebSocket that stays up, as a [`Stream`] of [`SubscriberEvent`]s.
//!
//! It reconnects with exponential backoff and full jitter (or after the gateway's own
//! `reconnect.after_ms`), resumes from the last cursor so nothing is missed, drops what it has
//! already seen so nothing is shown twice, refreshes the token in-band on `token_expiring`,
//! asks for a fresh token after 4001, and stops on 4003 (retrying cannot help).
//!
//! ```no_run
//! use futures::StreamExt;
//! use herald_client::{Subscriber, SubscriberEvent};
//!
//! # async fn run() {
//! let mut events = Subscriber::new("ws://127.0.0.1:8080/v1/ws", "a-user-token").events();
//! while let Some(event) = events.next().await {
//!     match event {
//!         SubscriberEvent::Notification { notification, .. } => println!("{}", notification.title),
//!         SubscriberEvent::Reconnecting { delay_ms, .. } => eprintln!("reconnecting in {delay_ms} ms"),
//!         _ => {}
//!     }
//! }
//! # }
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use herald_core::Notification;
use serde::Serialize;
use tokio::sync::mpsc;

use crate::backoff::Backoff;
use crate::connection::{Connection, Event, newer};

/// What a subscriber sees; serialized with a `type` tag (the CLI prints one per line).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SubscriberEvent {
    /// Authenticated (the first time and after every reconnect).
    Connected {
        user: String,
        session: String,
    },
    /// A notification not seen before on this subscriber.
    Notification {
        cursor: String,
        replay: bool,
        notification: Notification,
    },
    /// Everything missed while away has been sent.
    Replayed {
        count: u64,
    },
    /// Read state changed (`ids: ["*"]` after read-all; `read: false` when marked unread).
    Read {
        ids: Vec<String>,
        read: bool,
    },
    Unread {
        count: u64,
    },
    /// The cursor was too old: reload the inbox over HTTP.
    Reset {
        reason: String,
    },
    /// The token was replaced in-band after `token_expiring`.
    TokenRefreshed,
    /// The connection dropped (close `code` when there was one); the next attempt is in `delay_ms`.
    Reconnecting {
        code: Option<u16>,
        reason: String,
        delay_ms: u64,
    },
    /// Refused for good (4003, or no token): the stream ends after this.
    Stopped {
        code: Option<u16>,
        reason: String,
    },
}

/// How long a new socket may take to be welcomed before it is abandoned and retried.
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);

type TokenFuture = Pin<Box<dyn Future<Output = Result<String, String>> + Send>>;
type TokenFn = Arc<dyn Fn(bool) -> TokenFuture + Send + Sync>;

pub struct Subscriber {
    url: String,
    token: TokenFn,
    cursor: Option<String>,
    backoff: Backoff,
    buffer: usize,
}

impl Subscriber {
    /// A subscriber with a fixed token.
    pub fn new(url: impl Into<String>, token: impl Into<String>) -> Self {
        let token: String = token.into();
        Self::with_provider(url, move |_fresh| {
            let t = token.clone();
            async move { Ok(t) }
        })
    }

    /// A subscriber that asks `provider(fresh)` for tokens: `fresh` is true after
    /// `token_expiring` and after a 4001 close.
    pub fn with_provider<F, Fut>(url: impl Into<String>, provider: F) -> Self
    where
        F: Fn(bool) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<String, String>> + Send + 'static,
    {
        Subscriber {
            url: url.into(),
            token: Arc::new(move |fresh| Box::pin(provider(fresh))),
            cursor: None,
            backoff: Backoff::default(),
            buffer: 256,
        }
    }

    /// Resumes after `cursor` (the last one the application processed).
    pub fn cursor(mut self, cursor: Option<String>) -> Self {
        self.cursor = cursor;
        self
    }

    pub fn backoff(mut self, base: Duration, max: Duration) -> Self {
        self.backoff = Backoff::new(base, max);
        self
    }

    /// Starts the connection task; events queue up to a bound (then the socket is read no
    /// faster than the application consumes). Dropping the stream stops the task.
    pub fn events(self) -> impl Stream<Item = SubscriberEvent> + Send + Unpin + 'static {
        let (tx, mut rx) = mpsc::channel(self.buffer.max(1));
        tokio::spawn(self.run(tx));
        futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
    }

    async fn run(mut self, tx: mpsc::Sender<SubscriberEvent>) {
        let mut fresh = false;
        loop {
            let (code, reason, planned) = match self.session(&tx, fresh).await {
                Ended::Receiver => return,
                Ended::Stop { code, reason } => {
                    let _ = tx.send(SubscriberEvent::Stopped { code, reason }).await;
                    return;
                }
                Ended::Dropped { code, reason, planned } => (code, reason, planned),
            };
            fresh = code == Some(4001);
            let delay = planned.unwrap_or_else(|| self.backoff.next_delay());
            let ev = SubscriberEvent::Reconnecting { code, reason, delay_ms: delay.as_millis() as u64 };
            if tx.send(ev).await.is_err() {
                return;
            }
            tokio::time::sleep(delay).await;
        }
    }

    /// One connection, from the token to its end.
    async fn session(&mut self, tx: &mpsc::Sender<SubscriberEvent>, fresh: bool) -> Ended {
        let token = match (self.token)(fresh).await {
            Ok(t) => t,
            Err(e) => return Ended::Dropped { code: None, reason: format!("no token: {e}"), planned: None },
        };
        // A server that accepts and never answers (half-open, or dying) must not hang us.
        let welcome_by = tokio::time::Instant::now() + OPEN_TIMEOUT;
        let connect = Connection::connect(&self.url, &token, self.cursor.as_deref());
        let mut conn = match tokio::time::timeout_at(welcome_by, connect).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => return Ended::Dropped { code: None, reason: e.to_string(), planned: None },
            Err(_) => return Ended::Dropped { code: None, reason: "connect timed out".into(), planned: None },
        };
        let mut planned = None;
        let mut welcomed = false;
        loop {
            let next =
                if welcomed { Ok(conn.next().await) } else { tokio::time::timeout_at(welcome_by, conn.next()).await };
            let event = match next {
                Ok(Ok(e)) => e,
                Ok(Err(e)) => return Ended::Dropped { code: None, reason: e.to_string(), planned },
                Err(_) => return Ended::Dropped { code: None, reason: "no welcome in time".into(), planned },
            };
            welcomed |= matches!(event, Event::Welcome { .. });
            let out = match event {
                Event::Welcome { user, session, cursor, .. } => {
                    self.backoff.reset();
                    // A first connection starts here: resuming from it after a drop misses nothing.
                    if self.cursor.is_none() {
                        self.cursor = cursor;
                    }
                    Some(SubscriberEvent::Connected { user, session })
                }
                Event::Notification { cursor, replay, notification } => {
                    if self.cursor.as_deref().is_some_and(|seen| !newer(&cursor, seen)) {
                        None
                    } else {
                        self.cursor = Some(cursor.clone());
                        Some(SubscriberEvent::Notification { cursor, replay, notification })
                    }
                }
                Event::Replayed { count, .. } => Some(SubscriberEvent::Replayed { count }),
                Event::Read { ids, read } => Some(SubscriberEvent::Read { ids, read }),
                Event::Unread { count } => Some(SubscriberEvent::Unread { count }),
                Event::Reset { reason } => Some(SubscriberEvent::Reset { reason }),
                Event::TokenExpiring { .. } => match (self.token)(true).await {
                    Ok(t) => match conn.refresh(&t).await {
                        Ok(()) => Some(SubscriberEvent::TokenRefreshed),
                        Err(e) => return Ended::Dropped { code: None, reason: e.to_string(), planned },
                    },
                    // Without a new token the gateway closes with 4001 at expiry; then we ask again.
                    Err(_) => None,
                },
                Event::Reconnect { after_ms, .. } => {
                    planned = Some(Duration::from_millis(after_ms));
                    None
                }
                Event::Closed { code: Some(4003), reason } => return Ended::Stop { code: Some(4003), reason },
                Event::Closed { code, reason } => return Ended::Dropped { code, reason, planned },
                Event::Error { .. } | Event::Unknown => None,
            };
            if let Some(ev) = out
                && tx.send(ev).await.is_err()
            {
                return Ended::Receiver;
            }
        }
    }

    /// The newest cursor handled (to persist and pass to [`Subscriber::cursor`] next time).
    pub fn last_cursor(&self) -> Option<&str> {
        self.cursor.as_deref()
    }
}

enum Ended {
    /// The application dropped the stream.
    Receiver,
    Stop {
        code: Option<u16>,
        reason: String,
    },
    Dropped {
        code: Option<u16>,
        reason: String,
        planned: Option<Duration>,
    },
}
