//! Who is calling: extractors for the two kinds of token (CONTRACT §4).
//!
//! [`User`] takes a user token (`HERALD_JWT_SECRET` or the configured public keys, no `scope`,
//! not revoked); [`Service`] a service token (`HERALD_SERVICE_JWT_SECRET`, whose `scope` names
//! the endpoint's scope). Each refuses the other kind with 403, a missing or bad token with 401,
//! and charges the caller's rate limit (429) once it knows who the caller is.

use std::marker::PhantomData;
use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use super::error::ApiError;
use crate::auth::{AuthError, Claims};
use crate::http::bearer;
use crate::state::AppState;

/// A user's request: the verified claims; `sub` is the user.
#[derive(Debug, Clone)]
pub struct User(pub Claims);

impl FromRequestParts<Arc<AppState>> for User {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, st: &Arc<AppState>) -> Result<Self, ApiError> {
        let token =
            bearer(&parts.headers).ok_or_else(|| ApiError::Unauthenticated("a user token is required".into()))?;
        let claims = st.verify_user(token).map_err(|e| {
            st.metrics.auth_failure(e.code());
            match e {
                AuthError::ServiceToken => ApiError::Forbidden("a service token cannot call a user endpoint".into()),
                e => ApiError::Unauthenticated(e.to_string()),
            }
        })?;
        st.api.limits.user(&claims.sub)?;
        Ok(User(claims))
    }
}

/// The scope a service endpoint requires.
pub trait Scope {
    const NAME: &'static str;
}

/// `POST /v1/notifications`.
#[derive(Debug)]
pub struct Publish;
impl Scope for Publish {
    const NAME: &'static str = "publish";
}

/// Team membership.
#[derive(Debug)]
pub struct Admin;
impl Scope for Admin {
    const NAME: &'static str = "admin";
}

/// A service's request with scope `S`: the verified claims; `sub` names the service.
#[derive(Debug)]
pub struct Service<S>(pub Claims, pub PhantomData<S>);

impl<S: Scope + Send> FromRequestParts<Arc<AppState>> for Service<S> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, st: &Arc<AppState>) -> Result<Self, ApiError> {
        let token =
            bearer(&parts.headers).ok_or_else(|| ApiError::Unauthenticated("a service token is required".into()))?;
        let claims = match st.api.verify_service(token) {
            Ok(c) => c,
            // A valid user token is the wrong kind of token, not a bad one.
            Err(_) if st.verifier.verify(token).is_ok() => {
                st.metrics.auth_failure("user_token_on_service_endpoint");
                return Err(ApiError::Forbidden("a user token cannot call a service endpoint".into()));
            }
            Err(e) => {
                st.metrics.auth_failure(e.code());
                return Err(ApiError::Unauthenticated(e.to_string()));
            }
        };
        if !claims.has_scope(S::NAME) {
            st.metrics.auth_failure("scope");
            return Err(ApiError::Forbidden(format!("the token's scope lacks {}", S::NAME)));
        }
        st.api.limits.service(&claims.sub)?;
        Ok(Service(claims, PhantomData))
    }
}
