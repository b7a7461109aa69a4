//! Team membership for services with the `admin` scope: a team is expanded to its members when
//! a notification is handled, so a change applies from the next notification.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use herald_core::MAX_ID_BYTES;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::auth::{Admin, Service};
use super::error::{ApiError, ErrorBody};
use super::inbox::unavailable;
use crate::state::AppState;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MembersQuery {
    /// Members per page, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
    /// Only members whose id sorts after this one: the `next` of the previous page.
    after: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MembersPage {
    pub members: Vec<String>,
    /// The `after` of the following page; `null` on the last.
    pub next: Option<String>,
}

fn ids(path: Result<Path<(String, String)>, PathRejection>) -> Result<(String, String), ApiError> {
    let Path((team, user)) = path?;
    for (what, id) in [("team", &team), ("user", &user)] {
        if id.is_empty() || id.len() > MAX_ID_BYTES {
            return Err(ApiError::invalid(format!("a {what} id is 1 to {MAX_ID_BYTES} bytes")));
        }
    }
    Ok((team, user))
}

#[utoipa::path(
    put,
    path = "/v1/teams/{team}/members/{user}",
    tag = "teams",
    summary = "Add a user to a team",
    params(
        ("team" = String, Path, description = "The team's id, percent-encoded."),
        ("user" = String, Path, description = "The user's id, percent-encoded."),
    ),
    responses(
        (status = 204, description = "The user is a member (adding twice is harmless)."),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, description = "A user token, or no `admin` scope.", body = ErrorBody),
        (status = 429, body = ErrorBody, headers(("Retry-After" = u64))),
        (status = 503, body = ErrorBody),
    ),
    security(("service_token" = ["admin"])),
)]
pub async fn add(
    State(st): State<Arc<AppState>>,
    _: Service<Admin>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let (team, user) = ids(path)?;
    st.api.store.add_member(&team, &user).await.map_err(unavailable)?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    delete,
    path = "/v1/teams/{team}/members/{user}",
    tag = "teams",
    summary = "Remove a user from a team",
    params(
        ("team" = String, Path, description = "The team's id, percent-encoded."),
        ("user" = String, Path, description = "The user's id, percent-encoded."),
    ),
    responses(
        (status = 204, description = "The user is not a member (removing twice is harmless)."),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 429, body = ErrorBody, headers(("Retry-After" = u64))),
        (status = 503, body = ErrorBody),
    ),
    security(("service_token" = ["admin"])),
)]
pub async fn remove(
    State(st): State<Arc<AppState>>,
    _: Service<Admin>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let (team, user) = ids(path)?;
    st.api.store.remove_member(&team, &user).await.map_err(unavailable)?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    get,
    path = "/v1/teams/{team}/members",
    tag = "teams",
    summary = "A page of a team's members, in id order",
    params(("team" = String, Path, description = "The team's id, percent-encoded."), MembersQuery),
    responses(
        (status = 200, body = MembersPage),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 429, body = ErrorBody, headers(("Retry-After" = u64))),
        (status = 503, body = ErrorBody),
    ),
    security(("service_token" = ["admin"])),
)]
pub async fn list(
    State(st): State<Arc<AppState>>,
    _: Service<Admin>,
    team: Result<Path<String>, PathRejection>,
    query: Result<Query<MembersQuery>, QueryRejection>,
) -> Result<Json<MembersPage>, ApiError> {
    let (Path(team), Query(q)) = (team?, query?);
    if team.is_empty() || team.len() > MAX_ID_BYTES {
        return Err(ApiError::invalid(format!("a team id is 1 to {MAX_ID_BYTES} bytes")));
    }
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::invalid("limit must be 1 to 1000"));
    }
    let after = q.after.filter(|a| !a.is_empty());
    let page = st.api.store.list_members_page(&team, limit as usize, after.as_deref()).await.map_err(unavailable)?;
    Ok(Json(MembersPage { members: page.members, next: page.next }))
}
