//! `/users…`
//!
//! The handlers take only the database from the app's state (see `FromRef` in the crate root):
//! cloning a connection pool handle is all a request needs.

use axum::extract::State;
use axum::http::StatusCode;
use sea_orm::DatabaseConnection;
use serde::Deserialize;

use crate::JsonText;
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
    State(db): State<DatabaseConnection>,
    Id(id): Id,
) -> Result<JsonText<user::Model>, Error> {
    users::get_user(&db, id)
        .await?
        .ok_or_else(|| Error::not_found("user", id))
}

pub(crate) async fn list(
    State(db): State<DatabaseConnection>,
    Query(query): Query<ListQuery>,
) -> Result<JsonText<Vec<user::Model>>, Error> {
    let limit = page_limit(query.limit)?;
    Ok(users::list_users(&db, query.skip, limit).await?)
}

pub(crate) async fn create(
    State(db): State<DatabaseConnection>,
    Json(new): Json<NewUser>,
) -> Result<(StatusCode, Json<user::Model>), Error> {
    let user = users::create_user(&db, new).await?;
    Ok((StatusCode::CREATED, Json(user)))
}

pub(crate) async fn update(
    State(db): State<DatabaseConnection>,
    Id(id): Id,
    Json(patch): Json<UserPatch>,
) -> Result<Json<user::Model>, Error> {
    Ok(Json(users::update_user(&db, id, patch).await?))
}

pub(crate) async fn delete(
    State(db): State<DatabaseConnection>,
    Id(id): Id,
) -> Result<StatusCode, Error> {
    users::delete_user(&db, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn filter(
    State(db): State<DatabaseConnection>,
    Json(filter): Json<UserFilter>,
) -> Result<JsonText<Vec<user::Model>>, Error> {
    let filter = filter.validate()?;
    Ok(users::filter_users(&db, &filter).await?)
}

pub(crate) async fn filter_paginated(
    State(db): State<DatabaseConnection>,
    Json(filter): Json<UserFilter>,
) -> Result<JsonText<Page<user::Model>>, Error> {
    let filter = filter.validate()?;
    Ok(users::filter_users_paginated(&db, &filter).await?)
}
