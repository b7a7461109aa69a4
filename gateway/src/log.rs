//! Reading a user's notifications back from `HERALD_USER`.
//!
//! Bulk reads use batch Direct Get: async-nats has no API for it, so the request is sent by
//! hand: one request to `$JS.API.DIRECT.GET.HERALD_USER` with `seq`, `next_by_subj` and `batch`,
//! answered by up to `batch` messages on our inbox and closed by a `204 EOB` status. Any replica
//! answers, so replay load spreads over the cluster, but a replica may lag: a Direct Get right
//! after a publish ack can miss it. So an answer from Direct Get is never proof that nothing
//! more is there; the `*_leader` reads (`$JS.API.STREAM.MSG.GET`, served by the stream leader
//! only, which has everything acknowledged) are, and the session uses them where it must know.

use std::time::Duration;

use async_nats::{Client, HeaderMap, Message};
use base64::Engine;
use bytes::Bytes;
use futures::StreamExt;
use herald_core::notification::{HDR_ACCEPTED_AT, HDR_MUTED};
use herald_core::subject::USER_STREAM;
use serde::Deserialize;
use serde_json::json;

/// One stored notification of a user.
#[derive(Debug, Clone)]
pub struct Entry {
    pub seq: u64,
    /// The previous sequence of the same user (0 for the first), where known (live messages).
    pub prev: u64,
    pub accepted_at_ms: Option<i64>,
    /// A muted copy: it moves the session's position but is never sent.
    pub muted: bool,
    pub payload: Bytes,
}

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("stream read failed: {0}")]
    Request(String),
    #[error("stream read timed out")]
    Timeout,
    #[error("stream read answered {0}")]
    Status(String),
}

/// What the stream is: its epoch (creation time, the cursors' qualifier) and per-user cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamFacts {
    pub epoch: u64,
    pub max_per_user: i64,
}

#[derive(Debug, Clone)]
pub struct UserLog {
    client: Client,
    direct: String,
    leader: String,
    info: String,
    timeout: Duration,
}

impl UserLog {
    pub fn new(client: Client, timeout: Duration) -> Self {
        UserLog {
            client,
            direct: format!("$JS.API.DIRECT.GET.{USER_STREAM}"),
            leader: format!("$JS.API.STREAM.MSG.GET.{USER_STREAM}"),
            info: format!("$JS.API.STREAM.INFO.{USER_STREAM}"),
            timeout,
        }
    }

    async fn request(&self, subject: &str, body: String) -> Result<Message, LogError> {
        tokio::time::timeout(self.timeout, self.client.request(subject.to_owned(), body.into()))
            .await
            .map_err(|_| LogError::Timeout)?
            .map_err(|e| LogError::Request(e.to_string()))
    }

    /// The newest sequence stored for `subject`, 0 if none, as the stream leader knows it:
    /// everything acknowledged is at or below it.
    pub async fn last_seq(&self, subject: &str) -> Result<u64, LogError> {
        let reply = self.request(&self.leader, json!({ "last_by_subj": subject }).to_string()).await?;
        Ok(leader_entry(&reply.payload)?.map_or(0, |e| e.seq))
    }

    /// The first entry of `subject` with sequence ≥ `from`, from the stream leader.
    pub async fn next_leader(&self, subject: &str, from: u64) -> Result<Option<Entry>, LogError> {
        let body = json!({ "seq": from, "next_by_subj": subject }).to_string();
        let reply = self.request(&self.leader, body).await?;
        leader_entry(&reply.payload)
    }

    /// How many notifications the stream holds for `subject` (one leader request).
    pub async fn count(&self, subject: &str) -> Result<u64, LogError> {
        let reply = self.request(&self.info, json!({ "subjects_filter": subject }).to_string()).await?;
        let info: InfoReply = serde_json::from_slice(&reply.payload).map_err(|e| LogError::Status(e.to_string()))?;
        if let Some(e) = info.error {
            return Err(LogError::Status(format!("{} {}", e.code, e.description)));
        }
        Ok(info.state.and_then(|s| s.subjects).and_then(|m| m.get(subject).copied()).unwrap_or(0))
    }

    /// The stream's epoch and per-user cap.
    pub async fn facts(&self) -> Result<StreamFacts, LogError> {
        let reply = self.request(&self.info, "{}".into()).await?;
        let info: InfoReply = serde_json::from_slice(&reply.payload).map_err(|e| LogError::Status(e.to_string()))?;
        if let Some(e) = info.error {
            return Err(LogError::Status(format!("{} {}", e.code, e.description)));
        }
        let created = info.created.ok_or_else(|| LogError::Status("stream info without created".into()))?;
        let epoch = time::OffsetDateTime::parse(&created, &time::format_description::well_known::Rfc3339)
            .map_err(|e| LogError::Status(format!("stream created {created:?}: {e}")))?
            .unix_timestamp()
            .max(1) as u64;
        let max_per_user = info.config.and_then(|c| c.max_msgs_per_subject).unwrap_or(-1);
        Ok(StreamFacts { epoch, max_per_user })
    }

    /// Up to `batch` entries of `subject` with sequence ≥ `from`, in order, and no more than
    /// `max_bytes` (the server stops before a message would pass it; it always sends one), from
    /// whichever replica answers. Fewer than `batch` does not prove there are no more (a replica
    /// may lag, or the bytes ran out).
    pub async fn batch(
        &self,
        subject: &str,
        from: u64,
        batch: usize,
        max_bytes: usize,
    ) -> Result<Vec<Entry>, LogError> {
        let inbox = self.client.new_inbox();
        let mut sub = self.client.subscribe(inbox.clone()).await.map_err(|e| LogError::Request(e.to_string()))?;
        let body = json!({ "seq": from, "next_by_subj": subject, "batch": batch, "max_bytes": max_bytes }).to_string();
        self.client
            .publish_with_reply(self.direct.clone(), inbox, body.into())
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
        muted: h.and_then(|h| h.get(HDR_MUTED)).is_some_and(|v| v.as_str().trim() == "1"),
        payload: msg.payload,
    }
}

fn header_u64(h: Option<&HeaderMap>, name: &str) -> Option<u64> {
    h?.get(name)?.as_str().trim().parse().ok()
}

/// A header's value in a raw NATS header block (`NATS/1.0\r\nName: value\r\n...`).
pub fn raw_header<'a>(block: &'a str, name: &str) -> Option<&'a str> {
    block.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

#[derive(Deserialize)]
struct ApiErr {
    code: u16,
    #[serde(default)]
    description: String,
}

#[derive(Deserialize)]
struct MsgGetReply {
    message: Option<StoredMsg>,
    error: Option<ApiErr>,
}

#[derive(Deserialize)]
struct StoredMsg {
    seq: u64,
    #[serde(default)]
    hdrs: Option<String>,
    #[serde(default)]
    data: Option<String>,
}

#[derive(Deserialize)]
struct InfoReply {
    created: Option<String>,
    config: Option<InfoConfig>,
    state: Option<InfoState>,
    error: Option<ApiErr>,
}

#[derive(Deserialize)]
struct InfoConfig {
    max_msgs_per_subject: Option<i64>,
}

#[derive(Deserialize)]
struct InfoState {
    subjects: Option<std::collections::HashMap<String, u64>>,
}

/// A `STREAM.MSG.GET` answer: the entry, `None` for "no such message" (404).
fn leader_entry(payload: &[u8]) -> Result<Option<Entry>, LogError> {
    let reply: MsgGetReply = serde_json::from_slice(payload).map_err(|e| LogError::Status(e.to_string()))?;
    if let Some(e) = reply.error {
        return if e.code == 404 { Ok(None) } else { Err(LogError::Status(format!("{} {}", e.code, e.description))) };
    }
    let Some(m) = reply.message else { return Ok(None) };
    let b64 = base64::engine::general_purpose::STANDARD;
    let decode = |s: Option<String>| -> Result<Vec<u8>, LogError> {
        s.map(|s| b64.decode(s).map_err(|e| LogError::Status(format!("bad base64: {e}"))))
            .transpose()
            .map(Option::unwrap_or_default)
    };
    let hdrs = String::from_utf8(decode(m.hdrs)?).unwrap_or_default();
    Ok(Some(Entry {
        seq: m.seq,
        prev: 0,
        accepted_at_ms: raw_header(&hdrs, HDR_ACCEPTED_AT).and_then(|v| v.parse().ok()),
        muted: raw_header(&hdrs, HDR_MUTED) == Some("1"),
        payload: Bytes::from(decode(m.data)?),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_leader_answers() {
        let b64 = base64::engine::general_purpose::STANDARD;
        let hdrs = b64.encode("NATS/1.0\r\nHerald-Muted: 1\r\nHerald-Accepted-At: 17\r\n\r\n");
        let body = format!(r#"{{"message":{{"subject":"s","seq":9,"hdrs":"{hdrs}","data":"{}"}}}}"#, b64.encode("{}"));
        let e = leader_entry(body.as_bytes()).unwrap().unwrap();
        assert_eq!((e.seq, e.muted, e.accepted_at_ms, &e.payload[..]), (9, true, Some(17), &b"{}"[..]));
        assert!(leader_entry(br#"{"error":{"code":404,"description":"no message found"}}"#).unwrap().is_none());
        assert!(leader_entry(br#"{"error":{"code":500,"description":"x"}}"#).is_err());
    }
}
