//! `/cache/…`: administration, calling the cache directly.

use axum::extract::State;
use cache_runtime::KeyError;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::AppState;
use crate::error::{Error, ErrorBody};
use crate::extract::{Admin, Id, Json};

/// Body of `POST /cache/clear`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ClearRequest {
    /// Which entries to remove.
    cache_type: CacheType,
}

/// The kinds of entries `POST /cache/clear` removes.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
enum CacheType {
    /// `users:*` (users, lists, filter results, users' task lists).
    Users,
    /// `tasks:*` (single tasks) and every user's task list (`users:<id>:tasks`).
    Tasks,
    /// Every session (everyone is logged out).
    Sessions,
    /// Every entry of this cache (sessions stay).
    All,
}

/// The answer of `POST /cache/clear`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Cleared {
    /// What was cleared.
    cleared: CacheType,
}

/// The answer of `POST /cache/invalidate/user/{id}`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Invalidated {
    /// The key patterns invalidated.
    invalidated: Vec<String>,
}

fn key_error(e: KeyError) -> Error {
    Error::Invalid(e.to_string())
}

/// The cache runtime's counters.
#[utoipa::path(
    get,
    path = "/cache/stats",
    operation_id = "cache_stats",
    tag = "cache",
    responses(
        (
            status = 200,
            description = "Hits, misses, errors, invalidations and mode, in all and per key \
                prefix; `sessions`: the session store's counters and live counts; `rate_limits`: each \
                limiter's decisions (allowed, limited, and those taken without Redis)",
            body = serde_json::Value
        ),
        (status = 401, description = "No credentials, or invalid ones", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
    ),
    security(("session_cookie" = []), ("session_authorization" = []), ("session_header" = []), ("bearer" = []))
)]
pub(crate) async fn stats(State(state): State<AppState>, _admin: Admin) -> Json<Value> {
    let mut stats = serde_json::to_value(state.cache.stats()).unwrap_or_default();
    let sessions = state.auth.sessions();
    let mut counts = serde_json::to_value(sessions.stats()).unwrap_or_default();
    // Live counts need Redis: absent while it is down.
    if let (Ok(count), Some(map)) = (sessions.count().await, counts.as_object_mut()) {
        map.insert("active".into(), count.active.into());
        map.insert("users".into(), count.users.into());
    }
    if let Some(map) = stats.as_object_mut() {
        map.insert("sessions".into(), counts);
        map.insert(
            "rate_limits".into(),
            serde_json::to_value(state.limits.stats()).unwrap_or_default(),
        );
        map.insert(
            "events".into(),
            serde_json::to_value(state.events.pubsub().stats()).unwrap_or_default(),
        );
        map.insert(
            "locks".into(),
            serde_json::to_value(state.locks.stats()).unwrap_or_default(),
        );
    }
    Json(stats)
}

/// Removes this cache's entries of one kind (or all); keys other programs wrote survive.
#[utoipa::path(
    post,
    path = "/cache/clear",
    operation_id = "clear_cache",
    tag = "cache",
    request_body = ClearRequest,
    responses(
        (status = 200, description = "The entries are gone", body = Cleared),
        (status = 422, description = "Unknown `cache_type`", body = ErrorBody),
        (status = 401, description = "No credentials, or invalid ones", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
    ),
    security(("session_cookie" = []), ("session_authorization" = []), ("session_header" = []), ("bearer" = []))
)]
pub(crate) async fn clear(
    State(state): State<AppState>,
    _admin: Admin,
    Json(request): Json<ClearRequest>,
) -> Result<Json<Cleared>, Error> {
    let pattern = match request.cache_type {
        CacheType::Users => "users:*",
        CacheType::Tasks => "tasks:*",
        CacheType::All => "*",
        CacheType::Sessions => {
            let ended = state
                .auth
                .sessions()
                .clear()
                .await
                .map_err(super::auth::session_error)?;
            tracing::info!(ended, "sessions cleared");
            return Ok(Json(Cleared {
                cleared: request.cache_type,
            }));
        }
    };
    let deleted = state
        .cache
        .clear_matching(pattern)
        .await
        .map_err(key_error)?;
    if let CacheType::Tasks = request.cache_type {
        // Task lists live under their users: one marker each (the administration may take
        // O(users) here; no request path does).
        for owner in crate::service::tasks::task_list_owners(&state.db).await? {
            state
                .cache
                .invalidate(&format!("users:{owner}:tasks"))
                .await
                .map_err(key_error)?;
        }
    }
    tracing::info!(pattern, deleted, "cache cleared");
    Ok(Json(Cleared {
        cleared: request.cache_type,
    }))
}

/// Drops everything that may hold user `id`: its entry, its task list, and every list and
/// filter result (any of which may contain it). Other users' entries stay.
#[utoipa::path(
    post,
    path = "/cache/invalidate/user/{id}",
    operation_id = "invalidate_user",
    tag = "cache",
    params(("id" = i32, Path, description = "The user's id")),
    responses(
        (status = 200, description = "The patterns invalidated", body = Invalidated),
        (status = 422, description = "`id` is not an integer", body = ErrorBody),
        (status = 401, description = "No credentials, or invalid ones", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
    ),
    security(("session_cookie" = []), ("session_authorization" = []), ("session_header" = []), ("bearer" = []))
)]
pub(crate) async fn invalidate_user(
    State(state): State<AppState>,
    _admin: Admin,
    Id(id): Id,
) -> Result<Json<Invalidated>, Error> {
    let patterns = [
        format!("users:{id}"),
        format!("users:{id}:*"),
        "users:list:*".to_owned(),
        "users:filter:*".to_owned(),
    ];
    for pattern in &patterns {
        state.cache.invalidate(pattern).await.map_err(key_error)?;
    }
    Ok(Json(Invalidated {
        invalidated: patterns.into(),
    }))
}
