//! `/users/{id}/tasks` and `/tasks/{id}`.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use cache_runtime::lock::LockError;
use serde::Deserialize;
use utoipa::IntoParams;

use crate::AppState;
use crate::entities::task;
use crate::error::{Error, ErrorBody};
use crate::events::Kind;
use crate::extract::{Id, Json, Query};
use crate::service::imports::{self, Import, Imported};
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
    state
        .events
        .publish(Kind::TaskCreated, task.id, user_id)
        .await;
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
    let task = tasks::update_task(&state.db, id, patch).await?;
    state
        .events
        .publish(Kind::TaskUpdated, id, task.user_id)
        .await;
    Ok(Json(task))
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
    let user_id = tasks::delete_task(&state.db, id).await?;
    state.events.publish(Kind::TaskDeleted, id, user_id).await;
    Ok(StatusCode::NO_CONTENT)
}

/// How long an import holds its lock between the watchdog's extensions: a holder that dies
/// frees the user's imports after this long.
const IMPORT_LOCK_TTL: Duration = Duration::from_secs(10);
/// The longest `?wait_ms`.
const MAX_WAIT_MS: u64 = 30_000;

/// Query of `POST /users/{id}/tasks/import`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ImportQuery {
    /// How long to wait for a running import of this user to end before answering 409, in
    /// milliseconds (0 to 30000, default 0).
    #[param(maximum = 30000)]
    wait_ms: Option<u64>,
}

/// Replaces the user's whole task list, in batches, under the distributed lock
/// `import:<id>`: two imports of one user never interleave, on any instance, and an import
/// either replaces the list completely or leaves it as it was.
#[utoipa::path(
    post,
    path = "/users/{id}/tasks/import",
    operation_id = "import_tasks",
    tag = "tasks",
    params(("id" = i32, Path, description = "The user's id"), ImportQuery),
    request_body = Import,
    responses(
        (status = 201, description = "The list is replaced", body = Imported),
        (status = 404, description = "No such user", body = ErrorBody),
        (
            status = 409,
            description = "An import for this user is running (on any instance), or this one lost its lock and undid itself",
            body = ErrorBody
        ),
        (status = 422, description = "No tasks, more than 1000, an invalid title, or `wait_ms` out of range", body = ErrorBody),
        (
            status = 503,
            description = "Redis, which holds the lock, is unreachable",
            body = ErrorBody,
            headers(("Retry-After" = u32, description = "Seconds to wait"))
        ),
    )
)]
pub(crate) async fn import(
    State(state): State<AppState>,
    Id(user_id): Id,
    Query(query): Query<ImportQuery>,
    Json(body): Json<Import>,
) -> Result<(StatusCode, Json<Imported>), Error> {
    let wait_ms = query.wait_ms.unwrap_or(0);
    if wait_ms > MAX_WAIT_MS {
        return Err(Error::Invalid(format!(
            "`wait_ms` must be at most {MAX_WAIT_MS}, got {wait_ms}"
        )));
    }
    let tasks = imports::validate(body)?;
    if tasks::list_tasks(&state.db, user_id).await?.is_none() {
        return Err(Error::not_found("user", user_id));
    }
    let name = format!("import:{user_id}");
    let mut lock = match state
        .locks
        .acquire(&name, IMPORT_LOCK_TTL, Duration::from_millis(wait_ms))
        .await
    {
        Ok(lock) => lock,
        Err(LockError::Busy) => {
            return Err(Error::Conflict(format!(
                "an import for user {user_id} is running; retry later, or wait with `?wait_ms=`"
            )));
        }
        Err(e) => return Err(Error::Unavailable(format!("the import lock: {e}"))),
    };
    lock.watchdog();
    let replaced = imports::replace_tasks(&state.db, user_id, tasks, &lock).await;
    if let Err(e) = lock.release().await {
        // Lost meanwhile: the import checked its fence, so it undid itself already.
        tracing::warn!(error = %e, user_id, "import lock not released");
    }
    let replaced = replaced?;
    let events = &state.events;
    events
        .publish_all(Kind::TaskDeleted, &replaced.deleted, user_id)
        .await;
    events
        .publish_all(Kind::TaskCreated, &replaced.created, user_id)
        .await;
    Ok((
        StatusCode::CREATED,
        Json(Imported {
            imported: replaced.created.len(),
        }),
    ))
}
