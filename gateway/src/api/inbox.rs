//! The inbox of the calling user (CONTRACT §4): pages newest first with the WebSocket's
//! cursors, the unread count, and read / unread / archive / read-all. Every change is
//! published to the user's devices on every gateway (`read_events`).

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use herald_core::{Cursor, MAX_ID_BYTES, Notification};
use herald_store::StoreError;
use herald_store::inbox::{Change, Filter};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::auth::User;
use super::error::{ApiError, ErrorBody};
use crate::read_events::{self, ReadEvent};
use crate::state::AppState;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct InboxQuery {
    /// Items per page, 1 to 100 (default 50).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<i64>,
    /// Only items older than this cursor (exclusive): the `next` of the previous page.
    before: Option<String>,
    /// Only unread items.
    unread: Option<bool>,
    /// Only items of this kind.
    kind: Option<String>,
    /// Only archived items (they are left out otherwise).
    archived: Option<bool>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct InboxItem {
    /// The notification's cursor, the same as on the WebSocket.
    pub cursor: String,
    pub notification: Notification,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct InboxPage {
    pub items: Vec<InboxItem>,
    /// The `before` of the following page; `null` on the last.
    pub next: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UnreadCount {
    pub unread: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Marked {
    pub id: String,
    pub read: bool,
    /// The user's unread count after the change.
    pub unread: u64,
}

pub(super) fn unavailable(e: StoreError) -> ApiError {
    tracing::warn!(error = %e, "store request failed");
    ApiError::Unavailable("the store did not answer; retry".into())
}

#[utoipa::path(
    get,
    path = "/v1/inbox",
    tag = "inbox",
    summary = "A page of the user's inbox, newest first",
    params(InboxQuery),
    responses(
        (status = 200, body = InboxPage),
        (status = 400, description = "A bad `limit`, `before` or filter.", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, description = "A service token.", body = ErrorBody),
        (status = 429, body = ErrorBody, headers(("Retry-After" = u64))),
        (status = 503, body = ErrorBody),
    ),
    security(("user_token" = [])),
)]
pub async fn list(
    State(st): State<Arc<AppState>>,
    User(claims): User,
    query: Result<Query<InboxQuery>, QueryRejection>,
) -> Result<Json<InboxPage>, ApiError> {
    let Query(q) = query?;
    let limit = q.limit.unwrap_or(50);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::invalid("limit must be 1 to 100"));
    }
    let before = match q.before.as_deref() {
        None => None,
        Some(b) => Some(b.parse::<Cursor>().map_err(|_| ApiError::invalid("before is not a cursor"))?),
    };
    let filter = Filter { unread: q.unread.unwrap_or(false), kind: q.kind, archived: q.archived.unwrap_or(false) };
    let page = st.api.store.list(&claims.sub, limit as usize, before, &filter).await.map_err(unavailable)?;
    Ok(Json(InboxPage {
        items: page
            .items
            .into_iter()
            .map(|i| InboxItem { cursor: i.cursor.to_string(), notification: i.notification })
            .collect(),
        next: page.next.map(|c| c.to_string()),
    }))
}

#[utoipa::path(
    get,
    path = "/v1/inbox/unread-count",
    tag = "inbox",
    summary = "The user's unread count",
    responses(
        (status = 200, body = UnreadCount),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 429, body = ErrorBody, headers(("Retry-After" = u64))),
        (status = 503, body = ErrorBody),
    ),
    security(("user_token" = [])),
)]
pub async fn unread_count(State(st): State<Arc<AppState>>, User(claims): User) -> Result<Json<UnreadCount>, ApiError> {
    Ok(Json(UnreadCount { unread: st.api.store.unread_count(&claims.sub).await.map_err(unavailable)?.unread }))
}

async fn mark(
    st: &AppState,
    user: &str,
    id: Result<Path<String>, PathRejection>,
    change: Change,
) -> Result<Json<Marked>, ApiError> {
    let Path(id) = id?;
    let not_found = || ApiError::NotFound("you have no notification with this id".into());
    if id.is_empty() || id.len() > MAX_ID_BYTES {
        return Err(not_found());
    }
    let marked = st.api.store.mark(user, &id, change).await.map_err(unavailable)?.ok_or_else(not_found)?;
    if marked.changed {
        let event =
            ReadEvent { ids: vec![id.clone()], read: marked.read, unread: marked.unread, rev: Some(marked.rev) };
        read_events::publish(&st.client, user, &event).await;
    }
    Ok(Json(Marked { id, read: marked.read, unread: marked.unread }))
}

#[utoipa::path(
    post,
    path = "/v1/inbox/{id}/read",
    tag = "inbox",
    summary = "Mark one notification read",
    params(("id" = String, Path, description = "The notification's id, percent-encoded.", example = "order-8812-shipped")),
    responses(
        (status = 200, body = Marked),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, description = "The user has no such notification.", body = ErrorBody),
        (status = 429, body = ErrorBody, headers(("Retry-After" = u64))),
        (status = 503, body = ErrorBody),
    ),
    security(("user_token" = [])),
)]
pub async fn read(
    State(st): State<Arc<AppState>>,
    User(claims): User,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<Marked>, ApiError> {
    mark(&st, &claims.sub, id, Change::Read).await
}

#[utoipa::path(
    post,
    path = "/v1/inbox/{id}/unread",
    tag = "inbox",
    summary = "Mark one notification unread",
    params(("id" = String, Path, description = "The notification's id, percent-encoded.", example = "order-8812-shipped")),
    responses(
        (status = 200, body = Marked),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, description = "The user has no such notification.", body = ErrorBody),
        (status = 429, body = ErrorBody, headers(("Retry-After" = u64))),
        (status = 503, body = ErrorBody),
    ),
    security(("user_token" = [])),
)]
pub async fn unread(
    State(st): State<Arc<AppState>>,
    User(claims): User,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<Marked>, ApiError> {
    mark(&st, &claims.sub, id, Change::Unread).await
}

#[utoipa::path(
    post,
    path = "/v1/inbox/{id}/archive",
    tag = "inbox",
    summary = "Archive one notification (and mark it read)",
    params(("id" = String, Path, description = "The notification's id, percent-encoded.", example = "order-8812-shipped")),
    responses(
        (status = 200, body = Marked),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, description = "The user has no such notification.", body = ErrorBody),
        (status = 429, body = ErrorBody, headers(("Retry-After" = u64))),
        (status = 503, body = ErrorBody),
    ),
    security(("user_token" = [])),
)]
pub async fn archive(
    State(st): State<Arc<AppState>>,
    User(claims): User,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<Marked>, ApiError> {
    mark(&st, &claims.sub, id, Change::Archive).await
}

#[utoipa::path(
    post,
    path = "/v1/inbox/read-all",
    tag = "inbox",
    summary = "Mark everything read (one write, whatever the inbox holds)",
    responses(
        (status = 200, body = UnreadCount),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 429, body = ErrorBody, headers(("Retry-After" = u64))),
        (status = 503, body = ErrorBody),
    ),
    security(("user_token" = [])),
)]
pub async fn read_all(State(st): State<Arc<AppState>>, User(claims): User) -> Result<Json<UnreadCount>, ApiError> {
    let rev = st.api.store.read_all(&claims.sub).await.map_err(unavailable)?;
    let event = ReadEvent { ids: vec!["*".into()], read: true, unread: 0, rev: Some(rev) };
    read_events::publish(&st.client, &claims.sub, &event).await;
    Ok(Json(UnreadCount { unread: 0 }))
}
