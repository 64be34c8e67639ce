//! `/users/{id}/tasks` and `/tasks/{id}`.

use axum::extract::State;
use axum::http::StatusCode;

use crate::AppState;
use crate::entities::task;
use crate::error::Error;
use crate::extract::{Id, Json};
use crate::service::tasks::{self, NewTask, TaskPatch};

pub(crate) async fn list(
    State(state): State<AppState>,
    Id(user_id): Id,
) -> Result<Json<Vec<task::Model>>, Error> {
    tasks::list_tasks(&state.db, user_id)
        .await?
        .map(Json)
        .ok_or_else(|| Error::not_found("user", user_id))
}

pub(crate) async fn create(
    State(state): State<AppState>,
    Id(user_id): Id,
    Json(new): Json<NewTask>,
) -> Result<(StatusCode, Json<task::Model>), Error> {
    let task = tasks::create_task(&state.db, user_id, new).await?;
    Ok((StatusCode::CREATED, Json(task)))
}

pub(crate) async fn get(
    State(state): State<AppState>,
    Id(id): Id,
) -> Result<Json<task::Model>, Error> {
    tasks::get_task(&state.db, id)
        .await?
        .map(Json)
        .ok_or_else(|| Error::not_found("task", id))
}

pub(crate) async fn update(
    State(state): State<AppState>,
    Id(id): Id,
    Json(patch): Json<TaskPatch>,
) -> Result<Json<task::Model>, Error> {
    Ok(Json(tasks::update_task(&state.db, id, patch).await?))
}

pub(crate) async fn delete(State(state): State<AppState>, Id(id): Id) -> Result<StatusCode, Error> {
    tasks::delete_task(&state.db, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
