//! `/users…`

use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;

use crate::AppState;
use crate::entities::user;
use crate::error::Error;
use crate::extract::{Id, Json, Query};
use crate::filter::{UserFilter, page_limit};
use crate::service::Page;
use crate::service::users::{self, NewUser, UserPatch};

/// Query of `GET /users`.
#[derive(Debug, Deserialize)]
pub(crate) struct ListQuery {
    #[serde(default)]
    skip: u64,
    limit: Option<u64>,
}

pub(crate) async fn get(
    State(state): State<AppState>,
    Id(id): Id,
) -> Result<Json<user::Model>, Error> {
    users::get_user(&state.db, id)
        .await?
        .map(Json)
        .ok_or_else(|| Error::not_found("user", id))
}

pub(crate) async fn list(
    State(state): State<AppState>,
    Query(query): Query<ListQuery>,
) -> Result<Json<Vec<user::Model>>, Error> {
    let limit = page_limit(query.limit)?;
    Ok(Json(users::list_users(&state.db, query.skip, limit).await?))
}

pub(crate) async fn create(
    State(state): State<AppState>,
    Json(new): Json<NewUser>,
) -> Result<(StatusCode, Json<user::Model>), Error> {
    let user = users::create_user(&state.db, new).await?;
    Ok((StatusCode::CREATED, Json(user)))
}

pub(crate) async fn update(
    State(state): State<AppState>,
    Id(id): Id,
    Json(patch): Json<UserPatch>,
) -> Result<Json<user::Model>, Error> {
    Ok(Json(users::update_user(&state.db, id, patch).await?))
}

pub(crate) async fn delete(State(state): State<AppState>, Id(id): Id) -> Result<StatusCode, Error> {
    users::delete_user(&state.db, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn filter(
    State(state): State<AppState>,
    Json(filter): Json<UserFilter>,
) -> Result<Json<Vec<user::Model>>, Error> {
    let filter = filter.validate()?;
    Ok(Json(users::filter_users(&state.db, &filter).await?))
}

pub(crate) async fn filter_paginated(
    State(state): State<AppState>,
    Json(filter): Json<UserFilter>,
) -> Result<Json<Page<user::Model>>, Error> {
    let filter = filter.validate()?;
    Ok(Json(
        users::filter_users_paginated(&state.db, &filter).await?,
    ))
}
