//! Typed configuration shared by every deployable, read once from the environment.
//!
//! Each binary builds its own config struct at start from a [`Vars`] snapshot and passes it
//! down; nothing reads the environment later. Tests build a [`Vars`] from a map.

use std::collections::HashMap;

use crate::nats_auth::NatsAuth;
use crate::nats_tls::NatsTls;
use std::str::FromStr;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
#[error("{name}: {message}")]
pub struct ConfigError {
    pub name: String,
    pub message: String,
}

/// A snapshot of configuration variables.
#[derive(Debug, Clone, Default)]
pub struct Vars(HashMap<String, String>);

impl Vars {
    pub fn from_env() -> Self {
        Vars(std::env::vars().collect())
    }

    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Vars(pairs.into_iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect())
    }

    /// The same snapshot with `name` set to `value` (tests and tools derive one process's
    /// variables from another's).
    pub fn with(mut self, name: &str, value: impl Into<String>) -> Self {
        self.0.insert(name.to_owned(), value.into());
        self
    }

    /// Every variable, for handing to a child process.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The value, with empty treated as unset.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str).filter(|v| !v.is_empty())
    }

    pub fn string(&self, name: &str, default: &str) -> String {
        self.get(name).unwrap_or(default).to_owned()
    }

    pub fn required(&self, name: &str) -> Result<String, ConfigError> {
        self.get(name)
            .map(str::to_owned)
            .ok_or_else(|| ConfigError { name: name.to_owned(), message: "is required".to_owned() })
    }

    pub fn parse<T: FromStr>(&self, name: &str, default: T) -> Result<T, ConfigError>
    where
        T::Err: std::fmt::Display,
    {
        match self.get(name) {
            None => Ok(default),
            Some(v) => {
                v.parse().map_err(|e: T::Err| ConfigError { name: name.to_owned(), message: format!("{v:?}: {e}") })
            }
        }
    }

    /// A duration given in (possibly fractional) seconds.
    pub fn seconds(&self, name: &str, default: Duration) -> Result<Duration, ConfigError> {
        let secs: f64 = self.parse(name, default.as_secs_f64())?;
        Duration::try_from_secs_f64(secs).map_err(|e| ConfigError { name: name.to_owned(), message: e.to_string() })
    }
}

/// Where NATS is, and the CA its servers' certificates are checked against. The URL may carry
/// a user and password, so `Debug` shows it without them.
#[derive(Clone)]
pub struct NatsConfig {
    pub url: String,
    /// `HERALD_NATS_CA_PEM` (the PEM text) or `HERALD_NATS_CA_FILE` (a PEM file): TLS is
    /// required on every NATS connection, and only this CA is trusted. Unset: plain TCP unless
    /// a `tls://` URL asks for TLS.
    pub tls: Option<NatsTls>,
    /// `HERALD_NATS_CREDS_FILE` (a user JWT and its seed) or `HERALD_NATS_NKEY_SEED_FILE` (a
    /// bare nkey seed): the login, instead of a password or token in the URL.
    pub auth: Option<NatsAuth>,
}

impl std::fmt::Debug for NatsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsConfig")
            .field("url", &crate::nats::redacted(&self.url))
            .field("tls", &self.tls.is_some())
            .field("auth", &self.auth)
            .finish()
    }
}

impl NatsConfig {
    pub fn from_vars(v: &Vars) -> Result<Self, ConfigError> {
        let tls = match (v.get("HERALD_NATS_CA_PEM"), v.get("HERALD_NATS_CA_FILE")) {
            (Some(pem), _) => Some(("HERALD_NATS_CA_PEM", pem.as_bytes().to_vec())),
            (None, Some(path)) => Some((
                "HERALD_NATS_CA_FILE",
                std::fs::read(path)
                    .map_err(|e| ConfigError { name: "HERALD_NATS_CA_FILE".into(), message: format!("{path}: {e}") })?,
            )),
            (None, None) => None,
        };
        let tls = tls
            .map(|(name, pem)| {
                NatsTls::from_pem(&pem).map_err(|e| ConfigError { name: name.into(), message: e.to_string() })
            })
            .transpose()?;
        let (creds, nkey) = (v.get("HERALD_NATS_CREDS_FILE"), v.get("HERALD_NATS_NKEY_SEED_FILE"));
        let auth =
            NatsAuth::from_files(creds.map(std::path::Path::new), nkey.map(std::path::Path::new)).map_err(|e| {
                let name = if creds.is_some() { "HERALD_NATS_CREDS_FILE" } else { "HERALD_NATS_NKEY_SEED_FILE" };
                ConfigError { name: name.into(), message: e.to_string() }
            })?;
        Ok(NatsConfig { url: v.string("HERALD_NATS_URL", "nats://127.0.0.1:4222"), tls, auth })
    }

    /// Connection options for `url` (this deployment's, or another user's URL of the same
    /// servers) with its credentials and this TLS setting.
    pub fn options(&self, url: &str) -> async_nats::ConnectOptions {
        let options = crate::nats::options_with(url, self.tls.as_ref());
        match &self.auth {
            Some(auth) => auth.options(options),
            None => options,
        }
    }
}

/// The streams' limits. `HERALD_USER` is the replay buffer: what it no longer keeps, a
/// reconnecting client gets as `reset` and reloads from the inbox.
#[derive(Debug, Clone)]
pub struct StreamsConfig {
    pub replicas: usize,
    pub in_duplicate_window: Duration,
    pub in_max_age: Duration,
    pub user_max_age: Duration,
    pub user_max_per_subject: i64,
    pub user_duplicate_window: Duration,
    pub dlq_max_age: Duration,
}

impl StreamsConfig {
    pub fn from_vars(v: &Vars) -> Result<Self, ConfigError> {
        const DAY: u64 = 24 * 3600;
        Ok(StreamsConfig {
            replicas: v.parse("HERALD_STREAM_REPLICAS", 1)?,
            in_duplicate_window: v.seconds("HERALD_IN_DUPLICATE_WINDOW_SECONDS", Duration::from_secs(120))?,
            in_max_age: v.seconds("HERALD_IN_MAX_AGE_SECONDS", Duration::from_secs(7 * DAY))?,
            user_max_age: v.seconds("HERALD_USER_MAX_AGE_SECONDS", Duration::from_secs(7 * DAY))?,
            user_max_per_subject: v.parse("HERALD_USER_MAX_PER_USER", 1000)?,
            user_duplicate_window: v.seconds("HERALD_USER_DUPLICATE_WINDOW_SECONDS", Duration::from_secs(120))?,
            dlq_max_age: v.seconds("HERALD_DLQ_MAX_AGE_SECONDS", Duration::from_secs(30 * DAY))?,
        })
    }
}

/// Where DynamoDB is and what its tables are called.
#[derive(Debug, Clone)]
pub struct DynamoConfig {
    /// Set for a local server; unset in the cloud (the AWS default chain applies).
    pub endpoint: Option<String>,
    pub region: String,
    pub table_prefix: String,
}

impl DynamoConfig {
    pub fn from_vars(v: &Vars) -> Self {
        DynamoConfig {
            endpoint: v.get("HERALD_DYNAMODB_ENDPOINT").map(str::to_owned),
            region: v.get("AWS_REGION").or(v.get("AWS_DEFAULT_REGION")).unwrap_or("us-east-1").to_owned(),
            table_prefix: v.string("HERALD_TABLE_PREFIX", "herald_"),
        }
    }

    pub fn inbox_table(&self) -> String {
        format!("{}inbox", self.table_prefix)
    }

    pub fn members_table(&self) -> String {
        format!("{}team_members", self.table_prefix)
    }

    /// `user` → `muted_kinds` (a list of kinds stored but not pushed).
    pub fn preferences_table(&self) -> String {
        format!("{}preferences", self.table_prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_reports_the_variable() {
        let v = Vars::from_pairs([("HERALD_USER_MAX_PER_USER", "50"), ("HERALD_STREAM_REPLICAS", "x")]);
        assert!(StreamsConfig::from_vars(&v).unwrap_err().to_string().starts_with("HERALD_STREAM_REPLICAS"));
        let v = Vars::from_pairs([("HERALD_USER_MAX_PER_USER", "50"), ("HERALD_IN_DUPLICATE_WINDOW_SECONDS", "0.5")]);
        let s = StreamsConfig::from_vars(&v).unwrap();
        assert_eq!(s.user_max_per_subject, 50);
        assert_eq!(s.in_duplicate_window, Duration::from_millis(500));
    }
}
