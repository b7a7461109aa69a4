//! Revoked users and token ids, shared by every gateway through a NATS KV bucket.
//!
//! KV is already there (no new store to run), replicated like the streams, and a watch pushes
//! each change to every gateway within milliseconds. Each gateway mirrors the bucket in memory;
//! handshakes and refreshes check the mirror, and every change bumps a generation that open
//! sessions watch, so each re-checks itself and a revoked one closes with 4001 at once.
//!
//! Keys: `user.<b64url(user)>` revokes every token of the user issued at or before `at` (a
//! new login afterwards works); `jti.<b64url(jti)>` revokes one token. Values: `{"at","reason"}`.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::Duration;

use async_nats::jetstream::{self, kv};
use futures::StreamExt;
use herald_core::subject::{decode_token, token};
use serde::{Deserialize, Serialize};
use tracing::warn;

use crate::auth::Claims;
use crate::events::Events;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    pub at: u64,
    #[serde(default)]
    pub reason: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    User,
    TokenId,
}

impl Target {
    fn prefix(self) -> &'static str {
        match self {
            Target::User => "user.",
            Target::TokenId => "jti.",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RevocationError {
    #[error("revocation bucket: {0}")]
    Bucket(String),
}

/// The in-memory mirror of the bucket.
#[derive(Debug, Default)]
pub struct Revocations {
    users: RwLock<HashMap<String, Revocation>>,
    jtis: RwLock<HashMap<String, Revocation>>,
}

impl Revocations {
    /// Whether these claims are revoked: their token id is, or their user is and the token was
    /// issued at or before the revocation (a token without `iat` counts as old).
    pub fn is_revoked(&self, c: &Claims) -> bool {
        let user_revoked = self
            .users
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&c.sub)
            .is_some_and(|r| c.iat.is_none_or(|iat| iat <= r.at));
        user_revoked
            || c.jti.as_ref().is_some_and(|j| self.jtis.read().unwrap_or_else(|p| p.into_inner()).contains_key(j))
    }

    pub fn list(&self) -> Vec<(Target, String, Revocation)> {
        let mut out: Vec<_> = self
            .users
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(k, v)| (Target::User, k.clone(), v.clone()))
            .collect();
        out.extend(
            self.jtis
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .map(|(k, v)| (Target::TokenId, k.clone(), v.clone())),
        );
        out
    }

    fn apply(&self, entry: &kv::Entry) {
        let (map, id) = if let Some(t) = entry.key.strip_prefix(Target::User.prefix()) {
            (&self.users, decode_token(t))
        } else if let Some(t) = entry.key.strip_prefix(Target::TokenId.prefix()) {
            (&self.jtis, decode_token(t))
        } else {
            return;
        };
        let Some(id) = id else { return };
        let mut map = map.write().unwrap_or_else(|p| p.into_inner());
        match entry.operation {
            kv::Operation::Put => match serde_json::from_slice::<Revocation>(&entry.value) {
                Ok(r) => {
                    map.insert(id, r);
                }
                Err(e) => warn!(key = %entry.key, error = %e, "unreadable revocation; ignored"),
            },
            kv::Operation::Delete | kv::Operation::Purge => {
                map.remove(&id);
            }
        }
    }
}

/// Creates (or updates) the bucket.
pub async fn bucket(
    js: &jetstream::Context,
    name: &str,
    ttl: Duration,
    replicas: usize,
) -> Result<kv::Store, RevocationError> {
    js.create_or_update_key_value(kv::Config {
        bucket: name.to_owned(),
        description: "Herald: revoked users and token ids".to_owned(),
        history: 1,
        max_age: ttl,
        num_replicas: replicas,
        ..Default::default()
    })
    .await
    .map_err(|e| RevocationError::Bucket(e.to_string()))
}

/// Opens the existing bucket without changing it (all a read-only NATS user may do).
pub async fn open(js: &jetstream::Context, name: &str) -> Result<kv::Store, RevocationError> {
    js.get_key_value(name).await.map_err(|e| RevocationError::Bucket(e.to_string()))
}

pub async fn revoke(store: &kv::Store, target: Target, id: &str, r: &Revocation) -> Result<(), RevocationError> {
    let key = format!("{}{}", target.prefix(), token(id));
    let value = serde_json::to_vec(r).expect("a revocation serializes");
    store.put(key, value.into()).await.map_err(|e| RevocationError::Bucket(e.to_string()))?;
    Ok(())
}

/// Loads the bucket into `mirror`, then follows it until the process ends; `loaded` fires once
/// the mirror holds everything that was in the bucket at start.
pub async fn follow(store: kv::Store, mirror: &Revocations, events: &Events, loaded: tokio::sync::oneshot::Sender<()>) {
    let mut loaded = Some(loaded);
    loop {
        let empty = matches!(store.status().await, Ok(s) if s.values() == 0);
        if empty && let Some(l) = loaded.take() {
            let _ = l.send(());
        }
        let mut watch = match store.watch_with_history(">").await {
            Ok(w) => w,
            Err(e) => {
                warn!(error = %e, "watching revocations failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        while let Some(entry) = watch.next().await {
            match entry {
                Ok(entry) => {
                    mirror.apply(&entry);
                    events.revocations_changed();
                    if entry.delta == 0
                        && let Some(l) = loaded.take()
                    {
                        let _ = l.send(());
                    }
                }
                Err(e) => {
                    warn!(error = %e, "revocation watch error");
                    break;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
