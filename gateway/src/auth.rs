//! Token verification: `exp` required, `aud` checked, `iss` checked when configured, `nbf`
//! honoured, `sub` the user; and the service tokens of the admin API (`scope` has `admin`).
//!
//! The key is chosen by `kid` (or is the only one), and its own algorithm is the only one
//! accepted, so `alg: none` and algorithm-confusion tokens fail like a wrong signature.

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Validation, decode, decode_header};
use serde::Deserialize;

use crate::config::AuthConfig;
use crate::keys::Keyring;

#[derive(Debug, Clone, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub exp: u64,
    #[serde(default)]
    pub iat: Option<u64>,
    #[serde(default)]
    pub jti: Option<String>,
    #[serde(default)]
    pub scope: Option<Scope>,
}

/// `scope` as a space-separated string (RFC 8693) or an array of strings.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Scope {
    Text(String),
    List(Vec<String>),
}

impl Claims {
    pub fn has_scope(&self, wanted: &str) -> bool {
        match &self.scope {
            Some(Scope::Text(s)) => s.split_whitespace().any(|s| s == wanted),
            Some(Scope::List(l)) => l.iter().any(|s| s == wanted),
            None => false,
        }
    }
}

/// Why a token was refused; the code is the metrics label and the `error` frame's message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no token")]
    Missing,
    #[error("token expired")]
    Expired,
    #[error("token is not valid yet")]
    NotYetValid,
    #[error("token has no exp")]
    NoExpiry,
    #[error("token is for another audience")]
    Audience,
    #[error("token is from another issuer")]
    Issuer,
    #[error("token signature, key or algorithm is not accepted")]
    Signature,
    #[error("token is malformed")]
    Malformed,
    #[error("token has no usable sub")]
    Subject,
    #[error("token was revoked")]
    Revoked,
    #[error("a service token is not accepted here")]
    ServiceToken,
    #[error("this gateway accepts no service tokens (HERALD_SERVICE_JWT_SECRET is not set)")]
    NoServiceKey,
}

impl AuthError {
    pub fn code(self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::NoExpiry => "no_exp",
            Self::Audience => "audience",
            Self::Issuer => "issuer",
            Self::Signature => "signature",
            Self::Malformed => "malformed",
            Self::Subject => "subject",
            Self::Revoked => "revoked",
            Self::ServiceToken => "service_token",
            Self::NoServiceKey => "no_service_key",
        }
    }
}

#[derive(Debug)]
pub struct Verifier {
    pub keys: Keyring,
    validation: Validation,
}

impl Verifier {
    pub fn new(config: &AuthConfig, keys: Keyring) -> Self {
        let mut validation = Validation::default();
        validation.set_audience(&[&config.audience]);
        let mut required = vec!["exp", "aud", "sub"];
        if let Some(iss) = &config.issuer {
            validation.set_issuer(&[iss]);
            required.push("iss");
        }
        validation.set_required_spec_claims(&required);
        validation.validate_nbf = true;
        validation.leeway = config.leeway.as_secs();
        Verifier { keys, validation }
    }

    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        let header = decode_header(token).map_err(|_| AuthError::Malformed)?;
        let keys = self.keys.current();
        // A `kid` names a key; a single key configured without a name (an HS256 secret, a PEM
        // file) takes tokens with or without one, as identity providers put `kid` in every token.
        let only_unnamed = || keys.first().filter(|k| keys.len() == 1 && k.kid.is_none());
        let key = match &header.kid {
            Some(kid) => keys.iter().find(|k| k.kid.as_deref() == Some(kid.as_str())).or_else(only_unnamed),
            None if keys.len() == 1 => keys.first(),
            None => None,
        }
        .ok_or(AuthError::Signature)?;
        let mut validation = self.validation.clone();
        validation.algorithms = vec![key.algorithm];
        let data = decode::<Claims>(token, &key.key, &validation).map_err(|e| match e.kind() {
            ErrorKind::ExpiredSignature => AuthError::Expired,
            ErrorKind::ImmatureSignature => AuthError::NotYetValid,
            ErrorKind::MissingRequiredClaim(c) if c == "exp" => AuthError::NoExpiry,
            ErrorKind::MissingRequiredClaim(c) if c == "aud" => AuthError::Audience,
            ErrorKind::MissingRequiredClaim(c) if c == "iss" => AuthError::Issuer,
            ErrorKind::MissingRequiredClaim(_) => AuthError::Subject,
            ErrorKind::InvalidAudience => AuthError::Audience,
            ErrorKind::InvalidIssuer => AuthError::Issuer,
            ErrorKind::InvalidSignature
            | ErrorKind::InvalidAlgorithm
            | ErrorKind::InvalidAlgorithmName
            | ErrorKind::InvalidKeyFormat => AuthError::Signature,
            _ => AuthError::Malformed,
        })?;
        let sub = &data.claims.sub;
        if sub.is_empty() || sub.len() > herald_core::MAX_ID_BYTES {
            return Err(AuthError::Subject);
        }
        Ok(data.claims)
    }
}
