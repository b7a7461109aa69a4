//! The OpenAPI 3.1 document of the HTTP API, generated from the handlers' annotations and the
//! types they exchange (utoipa), and served at `/v1/openapi.json`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::state::AppState;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Herald HTTP API",
        description = "Publishing over HTTP, the inbox, read state, preferences and teams. \
            The WebSocket protocol (`GET /v1/ws`) and the rules that tie both together are in docs/protocol.md.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    modifiers(&Tokens),
    tags(
        (name = "publishing", description = "Services publish notifications (service token, scope `publish`)."),
        (name = "inbox", description = "The user's notifications and their read state (user token)."),
        (name = "preferences", description = "The user's muted kinds (user token)."),
        (name = "teams", description = "Team membership (service token, scope `admin`)."),
    ),
)]
pub struct ApiDoc;

/// The two kinds of bearer token.
struct Tokens;

impl Modify for Tokens {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let bearer = |description: &str| {
            let mut h = Http::new(HttpAuthScheme::Bearer);
            h.bearer_format = Some("JWT".into());
            h.description = Some(description.into());
            SecurityScheme::Http(h)
        };
        components.add_security_scheme(
            "user_token",
            bearer(
                "A user token: `sub` is the user, signed with HERALD_JWT_SECRET (or the configured keys), no `scope`.",
            ),
        );
        components.add_security_scheme(
            "service_token",
            bearer(
                "A service token: signed with HERALD_SERVICE_JWT_SECRET, `scope` lists the scopes (space-separated).",
            ),
        );
    }
}

pub async fn document(State(st): State<Arc<AppState>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], st.api.openapi.clone())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_document_is_openapi_3_1_and_describes_every_route() {
        let doc = serde_json::to_value(super::super::document()).unwrap();
        if std::env::var_os("HERALD_PRINT_OPENAPI").is_some() {
            println!("{}", serde_json::to_string_pretty(&doc).unwrap());
        }
        assert_eq!(doc["openapi"], "3.1.0");
        let publish = &doc["paths"]["/v1/notifications"]["post"];
        assert_eq!(publish["security"][0]["service_token"][0], "publish");
        for status in ["202", "400", "401", "403", "413", "429"] {
            assert!(publish["responses"][status].is_object(), "{status}");
        }
        assert!(doc["components"]["schemas"]["NotificationRequest"].is_object());
    }
}
