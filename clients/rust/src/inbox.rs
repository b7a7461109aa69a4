//! The inbox over HTTP (CONTRACT §4) with a user token: pages, unread count, read state,
//! archive, preferences.

use std::time::{Duration, Instant};

use herald_core::Notification;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::http::{Api, ApiError, segment};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InboxItem {
    pub cursor: String,
    pub notification: Notification,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InboxPage {
    pub items: Vec<InboxItem>,
    /// The `before` of the following page; `None` on the last one.
    pub next: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadState {
    pub read: bool,
    pub unread: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Preferences {
    pub muted_kinds: Vec<String>,
}

/// Which page: `limit` 1 to 100 (default 50), `before` a cursor (exclusive), and filters.
#[derive(Debug, Clone, Default)]
pub struct ListOptions {
    pub limit: Option<u32>,
    pub before: Option<String>,
    pub unread: bool,
    pub kind: Option<String>,
    pub archived: bool,
}

/// The longest [`Inbox::wait_for_store`].
pub const MAX_WAIT_FOR_STORE: Duration = Duration::from_secs(60);

/// The waits between tries of a `404` (then the last one repeats).
const STORE_RETRY: [Duration; 5] = [
    Duration::from_millis(100),
    Duration::from_millis(200),
    Duration::from_millis(400),
    Duration::from_millis(800),
    Duration::from_millis(1000),
];

#[derive(Debug, Clone)]
pub struct Inbox {
    api: Api,
    wait_for_store: Duration,
}

impl Inbox {
    /// `base`: the gateway, e.g. `http://127.0.0.1:8080`; `token`: the user's.
    pub fn new(base: &str, token: impl Into<String>) -> Result<Self, ApiError> {
        Ok(Inbox { api: Api::new(base, token)?, wait_for_store: Duration::ZERO })
    }

    /// How long [`read`](Self::read), [`unread`](Self::unread) and [`archive`](Self::archive)
    /// keep trying while the gateway answers `404` (default: not at all). A notification is
    /// pushed first and stored just after (a big team's copies once the whole team is pushed,
    /// which can take seconds), so an id that just arrived on the socket may not be in the inbox
    /// yet; a few seconds covers it. After the wait the `404` is returned as usual. At most
    /// [`MAX_WAIT_FOR_STORE`].
    pub fn wait_for_store(mut self, wait: Duration) -> Self {
        self.wait_for_store = wait.min(MAX_WAIT_FOR_STORE);
        self
    }

    pub async fn list(&self, opts: &ListOptions) -> Result<InboxPage, ApiError> {
        let mut q = Vec::new();
        if let Some(l) = opts.limit {
            q.push(format!("limit={l}"));
        }
        if let Some(b) = &opts.before {
            q.push(format!("before={}", segment(b)));
        }
        if opts.unread {
            q.push("unread=true".into());
        }
        if let Some(k) = &opts.kind {
            q.push(format!("kind={}", segment(k)));
        }
        if opts.archived {
            q.push("archived=true".into());
        }
        let qs = if q.is_empty() { String::new() } else { format!("?{}", q.join("&")) };
        self.api.get(&format!("/v1/inbox{qs}")).await
    }

    pub async fn unread_count(&self) -> Result<u64, ApiError> {
        #[derive(Deserialize)]
        struct Count {
            unread: u64,
        }
        Ok(self.api.get::<Count>("/v1/inbox/unread-count").await?.unread)
    }

    pub async fn read(&self, id: &str) -> Result<ReadState, ApiError> {
        self.change(id, "read").await
    }

    pub async fn unread(&self, id: &str) -> Result<ReadState, ApiError> {
        self.change(id, "unread").await
    }

    /// Archives (and marks read) one notification.
    pub async fn archive(&self, id: &str) -> Result<ReadState, ApiError> {
        self.change(id, "archive").await
    }

    /// A read-state change, tried again on `404` until [`wait_for_store`](Self::wait_for_store)
    /// has passed.
    async fn change(&self, id: &str, what: &str) -> Result<ReadState, ApiError> {
        let deadline = Instant::now() + self.wait_for_store;
        let path = format!("/v1/inbox/{}/{what}", segment(id));
        for tries in 0.. {
            match self.api.post(&path, None).await {
                Err(ApiError::Status { status: 404, .. }) if Instant::now() < deadline => {
                    let wait = STORE_RETRY[tries.min(STORE_RETRY.len() - 1)];
                    tokio::time::sleep(wait.min(deadline.saturating_duration_since(Instant::now()))).await;
                }
                other => return other,
            }
        }
        unreachable!("the loop returns")
    }

    /// Marks everything read; returns the unread count after (0).
    pub async fn read_all(&self) -> Result<u64, ApiError> {
        let v: serde_json::Value = self.api.post("/v1/inbox/read-all", None).await?;
        Ok(v["unread"].as_u64().unwrap_or(0))
    }

    pub async fn preferences(&self) -> Result<Preferences, ApiError> {
        self.api.get("/v1/preferences").await
    }

    pub async fn set_preferences(&self, p: &Preferences) -> Result<Preferences, ApiError> {
        self.api.put("/v1/preferences", &json!(p)).await
    }
}
