//! Minting HS256 user and service tokens: for development, tests and the `herald` CLI. In
//! production the product's own auth service mints them with the shared secret.

use jsonwebtoken::{EncodingKey, Header, encode};
use serde_json::{Value, json};

/// A user token for `sub`, valid for `ttl_secs` from now.
pub fn user_token(secret: &str, audience: &str, sub: &str, ttl_secs: u64) -> String {
    let now = now_secs();
    sign(secret, &json!({"sub": sub, "aud": audience, "iat": now, "exp": now + ttl_secs}))
}

/// A service token for the service `sub` with `scope` (space-separated, e.g. `"publish"`),
/// valid for `ttl_secs`; sign it with the service secret (`HERALD_SERVICE_JWT_SECRET`).
pub fn service_token(secret: &str, audience: &str, sub: &str, scope: &str, ttl_secs: u64) -> String {
    let now = now_secs();
    sign(secret, &json!({"sub": sub, "aud": audience, "scope": scope, "iat": now, "exp": now + ttl_secs}))
}

/// Signs any claims with HS256 (tests use it to make broken tokens too).
pub fn sign(secret: &str, claims: &Value) -> String {
    encode(&Header::default(), claims, &EncodingKey::from_secret(secret.as_bytes()))
        .expect("HS256 signing with a secret cannot fail")
}

pub fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}
