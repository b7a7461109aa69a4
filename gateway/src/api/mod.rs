//! The HTTP API beside the WebSocket (CONTRACT §4): publishing for services, and (with the
//! store) the inbox, read state, preferences and teams. Each endpoint is an annotated handler;
//! [`routes`] collects them into the router and the OpenAPI document at once, so the document
//! served at `/v1/openapi.json` is the code's own description of itself.

pub mod auth;
pub mod config;
pub mod error;
pub mod inbox;
pub mod notifications;
pub mod openapi;
pub mod preferences;
pub mod rate;
pub mod teams;

use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::routing::get;
use bytes::Bytes;
use herald_client::Publisher;
use tokio_util::sync::CancellationToken;
use tower_http::cors::{AllowOrigin, CorsLayer};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{AuthError, Claims, Verifier};
use crate::config::AuthConfig;
use crate::config::Config;
use crate::keys::{KeyError, KeySource, Keyring};
use crate::state::AppState;

pub use config::ApiConfig;

#[derive(Debug, thiserror::Error)]
pub enum SharedError {
    #[error("the service token key: {0}")]
    Keys(#[from] KeyError),
    #[error("connecting to NATS as a creator: {0}")]
    Connect(#[from] async_nats::ConnectError),
}

/// What the API's handlers share, beside the gateway's state.
#[derive(Debug)]
pub struct Shared {
    /// Verifies service tokens; `None` without `HERALD_SERVICE_JWT_SECRET`.
    service: Option<Verifier>,
    pub limits: rate::ApiLimits,
    pub publisher: Publisher,
    /// The OpenAPI document, rendered once.
    pub openapi: Bytes,
    /// The inbox, counters, preferences and teams.
    pub store: herald_store::Store,
    /// This gateway's sessions, by user, for `read` and `unread` frames.
    pub read_hub: Arc<crate::read_events::ReadHub>,
}

impl Shared {
    pub async fn new(
        config: &Config,
        client: async_nats::Client,
        read_hub: Arc<crate::read_events::ReadHub>,
    ) -> Result<Self, SharedError> {
        let api = &config.api;
        let service = match &api.service_secret {
            None => None,
            Some(secret) => {
                // The audience is checked like user tokens'; the issuer is not: service tokens
                // are minted by whoever holds the service secret, not by the users' IdP.
                let auth = AuthConfig {
                    keys: KeySource::Secret { secret: secret.clone(), kid: None },
                    audience: config.auth.audience.clone(),
                    issuer: None,
                    leeway: config.auth.leeway,
                };
                Some(Verifier::new(&auth, Keyring::load(auth.keys.clone())?))
            }
        };
        let creator = match &api.creator_nats_url {
            None => client,
            Some(url) => {
                config.nats.options(url).name("herald-gateway-publish").retry_on_initial_connect().connect(url).await?
            }
        };
        Ok(Shared {
            service,
            limits: rate::ApiLimits::new(api.user_rate, api.user_burst, api.service_rate, api.service_burst),
            // A few quick retries with the same id; the handler's timeout bounds them.
            publisher: Publisher::new(creator).with_attempts(3),
            openapi: Bytes::from(document().to_pretty_json().expect("the OpenAPI document serializes")),
            store: herald_store::Store::connect(&api.dynamo).await.with_ttl(api.inbox_ttl),
            read_hub,
        })
    }

    pub fn verify_service(&self, token: &str) -> Result<Claims, AuthError> {
        self.service.as_ref().ok_or(AuthError::NoServiceKey)?.verify(token)
    }
}

/// Every API route, each with its OpenAPI description.
fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(notifications::publish))
        .routes(routes!(inbox::list))
        .routes(routes!(inbox::unread_count))
        .routes(routes!(inbox::read))
        .routes(routes!(inbox::unread))
        .routes(routes!(inbox::archive))
        .routes(routes!(inbox::read_all))
        .routes(routes!(preferences::get, preferences::put))
        .routes(routes!(teams::add, teams::remove))
        .routes(routes!(teams::list))
}

/// The OpenAPI document of [`routes`].
pub fn document() -> utoipa::openapi::OpenApi {
    routes().split_for_parts().1
}

/// The API's routes with CORS for `HERALD_ALLOWED_ORIGINS` (empty: any origin; bearer tokens,
/// not cookies, authenticate, so another origin gains nothing it could not do without a browser).
pub fn app(config: &Config) -> Router<Arc<AppState>> {
    let (router, _) = routes().split_for_parts();
    let origins = &config.allowed_origins;
    let allow = if origins.is_empty() || origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    let cors = CorsLayer::new()
        .allow_origin(allow)
        .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            HeaderName::from_static(notifications::IDEMPOTENCY_KEY),
        ])
        .expose_headers([header::RETRY_AFTER])
        .max_age(std::time::Duration::from_secs(600));
    router.route("/v1/openapi.json", get(openapi::document)).layer(cors)
}

/// The API's part of `/metrics`: the store's requests by operation, rate-limit buckets, and
/// read-state frames dropped at a full session mailbox.
pub fn metrics(st: &AppState) -> String {
    let mut r = herald_core::metrics::Render::default();
    st.api.store.requests().render(&mut r);
    r.gauge(
        "herald_gateway_api_rate_buckets",
        "Users and services with a rate-limit bucket.",
        st.api.limits.tracked() as i64,
    )
    .counter(
        "herald_gateway_read_frames_dropped_total",
        "read/unread frames dropped at a full session mailbox.",
        "",
        st.api.read_hub.dropped.load(std::sync::atomic::Ordering::Relaxed),
    );
    r.finish()
}

/// Drops idle rate-limit buckets every minute until `stop`.
pub fn spawn_housekeeping(state: Arc<AppState>, stop: CancellationToken) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(rate::FORGET_EVERY);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => state.api.limits.forget_idle(),
            }
        }
    });
}
