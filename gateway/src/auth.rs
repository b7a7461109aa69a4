//! User-token verification: HS256 with `exp` required, `aud` checked, `sub` the user.
//!
//! The algorithm is fixed by configuration, never taken from the token's header, so `alg: none`
//! and algorithm-confusion tokens fail as a wrong signature would.

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode};
use serde::Deserialize;

use crate::config::AuthConfig;

#[derive(Debug, Clone, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub exp: u64,
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
    #[error("token signature or algorithm is not accepted")]
    Signature,
    #[error("token is malformed")]
    Malformed,
    #[error("token has no usable sub")]
    Subject,
}

impl AuthError {
    pub const ALL: [AuthError; 8] = [
        Self::Missing,
        Self::Expired,
        Self::NotYetValid,
        Self::NoExpiry,
        Self::Audience,
        Self::Signature,
        Self::Malformed,
        Self::Subject,
    ];

    pub fn code(self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::NoExpiry => "no_exp",
            Self::Audience => "audience",
            Self::Signature => "signature",
            Self::Malformed => "malformed",
            Self::Subject => "subject",
        }
    }
}

pub struct Verifier {
    key: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier").finish_non_exhaustive()
    }
}

impl Verifier {
    pub fn new(config: &AuthConfig) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_audience(&[&config.audience]);
        validation.set_required_spec_claims(&["exp", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = config.leeway.as_secs();
        Verifier {
            key: DecodingKey::from_secret(config.secret.as_bytes()),
            validation,
        }
    }

    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        let data =
            decode::<Claims>(token, &self.key, &self.validation).map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => AuthError::Expired,
                ErrorKind::ImmatureSignature => AuthError::NotYetValid,
                ErrorKind::MissingRequiredClaim(c) if c == "exp" => AuthError::NoExpiry,
                ErrorKind::MissingRequiredClaim(c) if c == "aud" => AuthError::Audience,
                ErrorKind::MissingRequiredClaim(_) => AuthError::Subject,
                ErrorKind::InvalidAudience => AuthError::Audience,
                ErrorKind::InvalidSignature
                | ErrorKind::InvalidAlgorithm
                | ErrorKind::InvalidAlgorithmName => AuthError::Signature,
                _ => AuthError::Malformed,
            })?;
        let sub = &data.claims.sub;
        if sub.is_empty() || sub.len() > herald_core::MAX_ID_BYTES {
            return Err(AuthError::Subject);
        }
        Ok(data.claims)
    }
}
