//! The admin API with a service token (scope `admin`): revocations.

use serde_json::{Value, json};

use crate::http::{Api, ApiError};

/// Whom to revoke: every token of a user issued until now, or one token by its `jti`.
#[derive(Debug, Clone)]
pub enum Revoke {
    User(String),
    Token(String),
}

#[derive(Debug, Clone)]
pub struct Admin {
    api: Api,
}

impl Admin {
    pub fn new(base: &str, service_token: impl Into<String>) -> Result<Self, ApiError> {
        Ok(Admin { api: Api::new(base, service_token)? })
    }

    /// Revokes; open sessions of the target close with 4001 on every gateway. Returns the entry.
    pub async fn revoke(&self, target: &Revoke, reason: &str) -> Result<Value, ApiError> {
        let body = match target {
            Revoke::User(u) => json!({"user": u, "reason": reason}),
            Revoke::Token(j) => json!({"jti": j, "reason": reason}),
        };
        self.api.post("/v1/admin/revocations", Some(&body)).await
    }

    pub async fn revocations(&self) -> Result<Value, ApiError> {
        self.api.get("/v1/admin/revocations").await
    }
}
