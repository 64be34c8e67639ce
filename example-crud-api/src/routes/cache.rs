//! `/cache/…`: administration, calling the cache directly.

use axum::extract::State;
use cache_runtime::{KeyError, StatsSnapshot};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::AppState;
use crate::error::Error;
use crate::extract::{Id, Json};

/// Body of `POST /cache/clear`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ClearRequest {
    cache_type: CacheType,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum CacheType {
    Users,
    Tasks,
    All,
}

fn key_error(e: KeyError) -> Error {
    Error::Invalid(e.to_string())
}

pub(crate) async fn stats(State(state): State<AppState>) -> Json<StatsSnapshot> {
    Json(state.cache.stats())
}

/// Removes this cache's entries of one kind (or all); keys other programs wrote survive.
pub(crate) async fn clear(
    State(state): State<AppState>,
    Json(request): Json<ClearRequest>,
) -> Result<Json<Value>, Error> {
    let pattern = match request.cache_type {
        CacheType::Users => "users:*",
        CacheType::Tasks => "tasks:*",
        CacheType::All => "*",
    };
    let deleted = state
        .cache
        .clear_matching(pattern)
        .await
        .map_err(key_error)?;
    tracing::info!(pattern, deleted, "cache cleared");
    Ok(Json(json!({ "cleared": request.cache_type })))
}

/// Drops everything that may hold user `id`: its entry, its task list, and every list and
/// filter result (any of which may contain it). Other users' entries stay.
pub(crate) async fn invalidate_user(
    State(state): State<AppState>,
    Id(id): Id,
) -> Result<Json<Value>, Error> {
    let patterns = [
        format!("users:{id}"),
        format!("users:{id}:*"),
        "users:list:*".to_owned(),
        "users:filter:*".to_owned(),
    ];
    for pattern in &patterns {
        state.cache.invalidate(pattern).await.map_err(key_error)?;
    }
    Ok(Json(json!({ "invalidated": patterns })))
}
