//! A small JSON-over-HTTP client for the gateway's API (`/v1/inbox`, `/v1/notifications`,
//! `/v1/admin/…`): a bearer token, JSON in and out, and CONTRACT §4's error shape turned into
//! [`ApiError::Status`]. Plain `http://` only: put a TLS-terminating proxy in front for https.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::TokioExecutor;
use serde::de::DeserializeOwned;
use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{status} {code}: {message}")]
    Status {
        status: u16,
        code: String,
        message: String,
        /// `Retry-After` in seconds, on 429 and 503.
        retry_after: Option<u64>,
    },
    #[error("requesting {url}: {message}")]
    Transport { url: String, message: String },
    #[error("an answer that is not the expected JSON: {0}")]
    BadAnswer(String),
    #[error("not an http:// URL: {0}")]
    BadUrl(String),
}

impl ApiError {
    /// Whether trying again later may succeed (the network, 429, 5xx).
    pub fn is_retryable(&self) -> bool {
        match self {
            ApiError::Transport { .. } => true,
            ApiError::Status { status, .. } => *status == 429 || *status >= 500,
            _ => false,
        }
    }
}

/// The gateway's HTTP API at `base` (e.g. `http://127.0.0.1:8080`) with one bearer token.
#[derive(Clone)]
pub struct Api {
    base: String,
    token: String,
    client: Client<HttpConnector, Full<Bytes>>,
    timeout: Duration,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token.
        f.debug_struct("Api").field("base", &self.base).finish_non_exhaustive()
    }
}

impl Api {
    pub fn new(base: &str, token: impl Into<String>) -> Result<Self, ApiError> {
        let base = base.trim_end_matches('/');
        let base = match base.strip_prefix("ws://") {
            Some(rest) => format!("http://{}", rest.trim_end_matches("/v1/ws")),
            None => base.to_owned(),
        };
        if !base.starts_with("http://") {
            return Err(ApiError::BadUrl(base));
        }
        Ok(Api {
            base,
            token: token.into(),
            client: Client::builder(TokioExecutor::new()).build_http(),
            timeout: Duration::from_secs(30),
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ApiError> {
        self.call(Method::GET, path, None).await
    }

    pub async fn post<T: DeserializeOwned>(&self, path: &str, body: Option<&Value>) -> Result<T, ApiError> {
        self.call(Method::POST, path, body).await
    }

    pub async fn put<T: DeserializeOwned>(&self, path: &str, body: &Value) -> Result<T, ApiError> {
        self.call(Method::PUT, path, Some(body)).await
    }

    /// One request; the answer's JSON (`null` for an empty body) or the error it carries.
    pub async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<T, ApiError> {
        let url = format!("{}{path}", self.base);
        let transport = |m: String| ApiError::Transport { url: url.clone(), message: m };
        let mut req = Request::builder()
            .method(method)
            .uri(&url)
            .header("authorization", format!("Bearer {}", self.token))
            .header("accept", "application/json");
        let body = match body {
            Some(v) => {
                req = req.header("content-type", "application/json");
                Full::new(Bytes::from(v.to_string()))
            }
            None => Full::new(Bytes::new()),
        };
        let req = req.body(body).map_err(|e| ApiError::BadUrl(e.to_string()))?;
        let res = tokio::time::timeout(self.timeout, self.client.request(req))
            .await
            .map_err(|_| transport("timed out".into()))?
            .map_err(|e| transport(e.to_string()))?;
        let status = res.status();
        let retry_after =
            res.headers().get("retry-after").and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse().ok());
        let bytes = res.into_body().collect().await.map_err(|e| transport(e.to_string()))?.to_bytes();
        let json: Value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).map_err(|_| ApiError::BadAnswer(String::from_utf8_lossy(&bytes).into()))?
        };
        if !status.is_success() {
            let err = &json["error"];
            return Err(ApiError::Status {
                status: status.as_u16(),
                code: err["code"].as_str().unwrap_or(status.canonical_reason().unwrap_or("http")).to_owned(),
                message: err["message"].as_str().map_or_else(|| status_text(status), str::to_owned),
                retry_after,
            });
        }
        serde_json::from_value(json).map_err(|e| ApiError::BadAnswer(e.to_string()))
    }
}

fn status_text(s: StatusCode) -> String {
    s.canonical_reason().unwrap_or("error").to_owned()
}

/// Percent-encodes one path segment (a notification id may hold any UTF-8).
pub fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_percent_encoded() {
        assert_eq!(segment("order-1.shipped"), "order-1.shipped");
        assert_eq!(segment("a/b c?é"), "a%2Fb%20c%3F%C3%A9");
    }

    #[test]
    fn a_websocket_url_names_its_gateway() {
        assert_eq!(Api::new("ws://h:8080/v1/ws", "t").unwrap().base(), "http://h:8080");
        assert!(Api::new("https://h", "t").is_err());
    }
}
