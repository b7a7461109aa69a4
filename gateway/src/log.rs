//! Reading a user's notifications back from `HERALD_USER` with (batch) Direct Get.
//!
//! async-nats has no API for batch Direct Get, so the request is sent by hand: one request to
//! `$JS.API.DIRECT.GET.HERALD_USER` with `seq`, `next_by_subj` and `batch`, answered by up to
//! `batch` messages on our inbox and closed by a `204 EOB` status. Any stream replica answers,
//! so replay load spreads over the cluster and never touches the stream leader's consumers.

use std::time::Duration;

use async_nats::{Client, HeaderMap, Message};
use bytes::Bytes;
use futures::StreamExt;
use herald_core::notification::HDR_ACCEPTED_AT;
use herald_core::subject::USER_STREAM;
use serde_json::json;

/// One stored notification of a user.
#[derive(Debug, Clone)]
pub struct Entry {
    pub seq: u64,
    /// The previous sequence of the same user (0 for the first), where known.
    pub prev: u64,
    pub accepted_at_ms: Option<i64>,
    pub payload: Bytes,
}

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("direct get request failed: {0}")]
    Request(String),
    #[error("direct get timed out")]
    Timeout,
    #[error("direct get answered {0}")]
    Status(String),
}

#[derive(Debug, Clone)]
pub struct UserLog {
    client: Client,
    api: String,
    timeout: Duration,
}

impl UserLog {
    pub fn new(client: Client, timeout: Duration) -> Self {
        UserLog { client, api: format!("$JS.API.DIRECT.GET.{USER_STREAM}"), timeout }
    }

    /// The newest sequence stored for `subject`, 0 if none.
    pub async fn last_seq(&self, subject: &str) -> Result<u64, LogError> {
        let body = json!({ "last_by_subj": subject }).to_string();
        let reply = tokio::time::timeout(self.timeout, self.client.request(self.api.clone(), body.into()))
            .await
            .map_err(|_| LogError::Timeout)?
            .map_err(|e| LogError::Request(e.to_string()))?;
        match reply.status.map(|s| s.as_u16()) {
            Some(404) => Ok(0),
            None | Some(200) => Ok(header_u64(reply.headers.as_ref(), "Nats-Sequence").unwrap_or(0)),
            Some(s) => Err(LogError::Status(format!("{s} {}", reply.description.unwrap_or_default()))),
        }
    }

    /// Up to `batch` entries of `subject` with sequence ≥ `from`, in order. Fewer than `batch`
    /// means there are no more right now.
    pub async fn batch(&self, subject: &str, from: u64, batch: usize) -> Result<Vec<Entry>, LogError> {
        let inbox = self.client.new_inbox();
        let mut sub = self.client.subscribe(inbox.clone()).await.map_err(|e| LogError::Request(e.to_string()))?;
        let body = json!({ "seq": from, "next_by_subj": subject, "batch": batch }).to_string();
        self.client
            .publish_with_reply(self.api.clone(), inbox, body.into())
            .await
            .map_err(|e| LogError::Request(e.to_string()))?;
        let mut entries = Vec::new();
        let deadline = tokio::time::Instant::now() + self.timeout;
        loop {
            let msg = tokio::time::timeout_at(deadline, sub.next())
                .await
                .map_err(|_| LogError::Timeout)?
                .ok_or_else(|| LogError::Request("subscription closed".into()))?;
            match msg.status.map(|s| s.as_u16()) {
                // 204 ends a batch; 404 means nothing (more) matches.
                Some(204) | Some(404) => break,
                None | Some(200) => {
                    entries.push(entry(msg));
                    if entries.len() >= batch {
                        break;
                    }
                }
                Some(s) => {
                    return Err(LogError::Status(format!("{s} {}", msg.description.unwrap_or_default())));
                }
            }
        }
        let _ = sub.unsubscribe().await;
        Ok(entries)
    }
}

fn entry(msg: Message) -> Entry {
    let h = msg.headers.as_ref();
    Entry {
        seq: header_u64(h, "Nats-Sequence").unwrap_or(0),
        prev: header_u64(h, "Nats-Last-Sequence").unwrap_or(0),
        accepted_at_ms: header_u64(h, HDR_ACCEPTED_AT).map(|v| v as i64),
        payload: msg.payload,
    }
}

fn header_u64(h: Option<&HeaderMap>, name: &str) -> Option<u64> {
    h?.get(name)?.as_str().trim().parse().ok()
}
