//! `/users/{id}/tasks` and `/tasks/{id}`.

use axum::extract::State;
use axum::http::StatusCode;

use crate::AppState;
use crate::entities::task;
use crate::error::{Error, ErrorBody};
use crate::extract::{Id, Json};
use crate::service::tasks::{self, NewTask, TaskPatch};

/// A user's tasks, ordered by id.
#[utoipa::path(
    get,
    path = "/users/{id}/tasks",
    operation_id = "list_tasks",
    tag = "tasks",
    params(("id" = i32, Path, description = "The user's id")),
    responses(
        (status = 200, description = "The user's tasks, ordered by id", body = Vec<task::Model>),
        (status = 404, description = "No such user", body = ErrorBody),
        (status = 422, description = "`id` is not an integer", body = ErrorBody),
    )
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    Id(user_id): Id,
) -> Result<Json<Vec<task::Model>>, Error> {
    tasks::list_tasks(&state.db, user_id)
        .await?
        .map(Json)
        .ok_or_else(|| Error::not_found("user", user_id))
}

/// Creates a task for a user.
#[utoipa::path(
    post,
    path = "/users/{id}/tasks",
    operation_id = "create_task",
    tag = "tasks",
    params(("id" = i32, Path, description = "The user's id")),
    request_body = NewTask,
    responses(
        (status = 201, description = "The new task", body = task::Model),
        (status = 404, description = "No such user", body = ErrorBody),
        (status = 422, description = "Invalid title", body = ErrorBody),
    )
)]
pub(crate) async fn create(
    State(state): State<AppState>,
    Id(user_id): Id,
    Json(new): Json<NewTask>,
) -> Result<(StatusCode, Json<task::Model>), Error> {
    let task = tasks::create_task(&state.db, user_id, new).await?;
    Ok((StatusCode::CREATED, Json(task)))
}

/// One task.
#[utoipa::path(
    get,
    path = "/tasks/{id}",
    operation_id = "get_task",
    tag = "tasks",
    params(("id" = i32, Path, description = "The task's id")),
    responses(
        (status = 200, description = "The task", body = task::Model),
        (status = 404, description = "No such task", body = ErrorBody),
        (status = 422, description = "`id` is not an integer", body = ErrorBody),
    )
)]
pub(crate) async fn get(
    State(state): State<AppState>,
    Id(id): Id,
) -> Result<Json<task::Model>, Error> {
    tasks::get_task(&state.db, id)
        .await?
        .map(Json)
        .ok_or_else(|| Error::not_found("task", id))
}

/// Changes the fields present in the body.
#[utoipa::path(
    put,
    path = "/tasks/{id}",
    operation_id = "update_task",
    tag = "tasks",
    params(("id" = i32, Path, description = "The task's id")),
    request_body = TaskPatch,
    responses(
        (status = 200, description = "The updated task", body = task::Model),
        (status = 404, description = "No such task", body = ErrorBody),
        (status = 422, description = "Invalid title, or a field that is `null`", body = ErrorBody),
    )
)]
pub(crate) async fn update(
    State(state): State<AppState>,
    Id(id): Id,
    Json(patch): Json<TaskPatch>,
) -> Result<Json<task::Model>, Error> {
    Ok(Json(tasks::update_task(&state.db, id, patch).await?))
}

/// Deletes a task.
#[utoipa::path(
    delete,
    path = "/tasks/{id}",
    operation_id = "delete_task",
    tag = "tasks",
    params(("id" = i32, Path, description = "The task's id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such task", body = ErrorBody),
        (status = 422, description = "`id` is not an integer", body = ErrorBody),
    )
)]
pub(crate) async fn delete(State(state): State<AppState>, Id(id): Id) -> Result<StatusCode, Error> {
    tasks::delete_task(&state.db, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
