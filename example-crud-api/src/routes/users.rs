//! `/users…`
//!
//! The handlers take only the database from the app's state (see `FromRef` in the crate root):
//! cloning a connection pool handle is all a request needs.

use axum::extract::State;
use axum::http::StatusCode;
use sea_orm::DatabaseConnection;
use serde::Deserialize;
use utoipa::IntoParams;

use crate::AppState;
use crate::JsonText;
use crate::entities::user;
use crate::error::{Error, ErrorBody};
use crate::events::Kind;
use crate::extract::{Id, Json, Query};
use crate::filter::{UserFilter, page_limit, page_skip};
use crate::service::users::{self, NewUser, UserPatch};
use crate::service::{Page, is_cached_page};

/// Query of `GET /users`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    /// Rows to skip (default 0, at most 1,000,000).
    #[param(maximum = 1_000_000)]
    skip: Option<u64>,
    /// Page size (default 100, 1 to 1000).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u64>,
}

/// One user.
#[utoipa::path(
    get,
    path = "/users/{id}",
    operation_id = "get_user",
    tag = "users",
    params(("id" = i32, Path, description = "The user's id")),
    responses(
        (status = 200, description = "The user", body = user::Model),
        (status = 404, description = "No such user", body = ErrorBody),
        (status = 422, description = "`id` is not an integer", body = ErrorBody),
    )
)]
pub(crate) async fn get(
    State(db): State<DatabaseConnection>,
    Id(id): Id,
) -> Result<JsonText<user::Model>, Error> {
    users::get_user(&db, id)
        .await?
        .ok_or_else(|| Error::not_found("user", id))
}

/// A page of users ordered by id.
#[utoipa::path(
    get,
    path = "/users",
    operation_id = "list_users",
    tag = "users",
    params(ListQuery),
    responses(
        (status = 200, description = "The page, ordered by id", body = Vec<user::Model>),
        (
            status = 422,
            description = "`skip` or `limit` out of range or not a number",
            body = ErrorBody
        ),
    )
)]
pub(crate) async fn list(
    State(db): State<DatabaseConnection>,
    Query(query): Query<ListQuery>,
) -> Result<JsonText<Vec<user::Model>>, Error> {
    let skip = page_skip(query.skip)?;
    let limit = page_limit(query.limit)?;
    let page = if is_cached_page(skip) {
        users::list_users(&db, skip, limit).await?
    } else {
        users::list_users_uncached(&db, skip, limit).await?
    };
    Ok(page)
}

/// Creates a user.
#[utoipa::path(
    post,
    path = "/users",
    operation_id = "create_user",
    tag = "users",
    request_body = NewUser,
    responses(
        (status = 201, description = "The new user", body = user::Model),
        (status = 409, description = "The email is taken", body = ErrorBody),
        (status = 422, description = "Invalid fields (each one named)", body = ErrorBody),
    )
)]
pub(crate) async fn create(
    State(state): State<AppState>,
    Json(new): Json<NewUser>,
) -> Result<(StatusCode, Json<user::Model>), Error> {
    let user = users::create_user(&state.db, new).await?;
    state
        .events
        .publish(Kind::UserCreated, user.id, user.id)
        .await;
    Ok((StatusCode::CREATED, Json(user)))
}

/// Changes the fields present in the body.
#[utoipa::path(
    put,
    path = "/users/{id}",
    operation_id = "update_user",
    tag = "users",
    params(("id" = i32, Path, description = "The user's id")),
    request_body = UserPatch,
    responses(
        (status = 200, description = "The updated user", body = user::Model),
        (status = 404, description = "No such user", body = ErrorBody),
        (status = 409, description = "The email is taken", body = ErrorBody),
        (
            status = 422,
            description = "Invalid fields, or `null` for a field other than `age`",
            body = ErrorBody
        ),
    )
)]
pub(crate) async fn update(
    State(state): State<AppState>,
    Id(id): Id,
    Json(patch): Json<UserPatch>,
) -> Result<Json<user::Model>, Error> {
    // A new password ends every session: before the change (a store that cannot do it
    // answers 503 and nothing changes), and after it (a login that raced the change).
    if patch.password.is_some() {
        end_sessions(&state, id).await?;
    }
    let updated = users::update_user(&state.db, id, patch).await?;
    if updated.password_changed {
        end_sessions(&state, id).await?;
    }
    state.events.publish(Kind::UserUpdated, id, id).await;
    Ok(Json(updated.user))
}

async fn end_sessions(state: &AppState, user_id: i32) -> Result<(), Error> {
    state
        .auth
        .sessions()
        .delete_user(&user_id.to_string())
        .await
        .map(drop)
        .map_err(super::auth::session_error)
}

/// Deletes a user and its tasks.
#[utoipa::path(
    delete,
    path = "/users/{id}",
    operation_id = "delete_user",
    tag = "users",
    params(("id" = i32, Path, description = "The user's id")),
    responses(
        (status = 204, description = "Deleted, with its tasks"),
        (status = 404, description = "No such user", body = ErrorBody),
        (status = 422, description = "`id` is not an integer", body = ErrorBody),
    )
)]
pub(crate) async fn delete(State(state): State<AppState>, Id(id): Id) -> Result<StatusCode, Error> {
    // The sessions go first: a deleted user must not stay logged in.
    end_sessions(&state, id).await?;
    users::delete_user(&state.db, id).await?;
    end_sessions(&state, id).await?;
    state.events.publish(Kind::UserDeleted, id, id).await;
    Ok(StatusCode::NO_CONTENT)
}

/// The users matching a filter.
#[utoipa::path(
    post,
    path = "/users/filter",
    operation_id = "filter_users",
    tag = "users",
    request_body = UserFilter,
    responses(
        (
            status = 200,
            description = "The matching users, in the filter's order",
            body = Vec<user::Model>
        ),
        (
            status = 422,
            description = "Unknown field or op, an operand of the wrong type, or a bound exceeded",
            body = ErrorBody
        ),
    )
)]
pub(crate) async fn filter(
    State(db): State<DatabaseConnection>,
    Json(filter): Json<UserFilter>,
) -> Result<JsonText<Vec<user::Model>>, Error> {
    let filter = filter.validate()?;
    let users = if is_cached_page(filter.skip()) {
        users::filter_users(&db, &filter).await?
    } else {
        users::filter_users_uncached(&db, &filter).await?
    };
    Ok(users)
}

/// A page of the users matching a filter, with their total count.
#[utoipa::path(
    post,
    path = "/users/filter-paginated",
    operation_id = "filter_users_paginated",
    tag = "users",
    request_body = UserFilter,
    responses(
        (
            status = 200,
            description = "The page and the number of matching users",
            body = Page<user::Model>
        ),
        (
            status = 422,
            description = "Unknown field or op, an operand of the wrong type, or a bound exceeded",
            body = ErrorBody
        ),
    )
)]
pub(crate) async fn filter_paginated(
    State(db): State<DatabaseConnection>,
    Json(filter): Json<UserFilter>,
) -> Result<JsonText<Page<user::Model>>, Error> {
    let filter = filter.validate()?;
    let page = if is_cached_page(filter.skip()) {
        users::filter_users_paginated(&db, &filter).await?
    } else {
        users::filter_users_paginated_uncached(&db, &filter).await?
    };
    Ok(page)
}
