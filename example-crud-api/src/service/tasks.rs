//! A user's tasks: cached as `users:<user_id>:tasks` (the list) and `tasks:<id>` (one task).

use cache_runtime::{cached, invalidates};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, DatabaseConnection, DbErr, EntityTrait,
    IntoActiveModel, QueryFilter, QueryOrder, QuerySelect, SqlErr,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{LIST_TTL, ROW_TTL, now};
use crate::entities::{task, user};
use crate::error::Error;

/// The body of `POST /users/{id}/tasks`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"title": "Write the report"}))]
pub struct NewTask {
    /// 1 to 200 characters (surrounding whitespace is trimmed).
    #[schema(min_length = 1, max_length = 200)]
    pub title: String,
    /// Defaults to `false`.
    #[serde(default)]
    #[schema(default = false)]
    pub done: bool,
}

/// The body of `PUT /tasks/{id}`: absent fields are left unchanged; neither may be `null`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"done": true}))]
pub struct TaskPatch {
    /// New title (1 to 200 characters).
    #[serde(
        default,
        deserialize_with = "super::non_null",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(nullable = false, min_length = 1, max_length = 200)]
    pub title: Option<String>,
    /// New state.
    #[serde(
        default,
        deserialize_with = "super::non_null",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(nullable = false)]
    pub done: Option<bool>,
}

pub(crate) fn valid_title(title: &str) -> Result<String, Error> {
    let title = title.trim();
    match title.chars().count() {
        0 => Err(Error::Invalid("`title` must not be empty".to_owned())),
        1..=200 => Ok(title.to_owned()),
        n => Err(Error::Invalid(format!(
            "`title` must be at most 200 characters, got {n}"
        ))),
    }
}

/// The tasks of a user ordered by id, or `None` if there is no such user (not cached).
///
/// # Errors
/// Database errors.
#[cached(key = "users:<user_id>:tasks", ttl = LIST_TTL)]
pub async fn list_tasks(
    db: &DatabaseConnection,
    user_id: i32,
) -> Result<Option<Vec<task::Model>>, DbErr> {
    if user::Entity::find_by_id(user_id).one(db).await?.is_none() {
        return Ok(None);
    }
    let tasks = task::Entity::find()
        .filter(task::Column::UserId.eq(user_id))
        .order_by_asc(task::Column::Id)
        .all(db)
        .await?;
    Ok(Some(tasks))
}

/// The users whose task lists may be cached (`users:<id>:tasks`): every user. Read by the
/// cache administration, which must reach each of those entries to clear "the tasks" (they
/// live under their users, not under `tasks:`).
///
/// # Errors
/// Database errors.
pub async fn task_list_owners(db: &DatabaseConnection) -> Result<Vec<i32>, DbErr> {
    user::Entity::find()
        .select_only()
        .column(user::Column::Id)
        .into_tuple::<i32>()
        .all(db)
        .await
}

/// One task, or `None`.
///
/// # Errors
/// Database errors.
#[cached(key = "tasks:<id>", ttl = ROW_TTL)]
pub async fn get_task(db: &DatabaseConnection, id: i32) -> Result<Option<task::Model>, DbErr> {
    task::Entity::find_by_id(id).one(db).await
}

/// Creates a task for a user. Only the user's task list changes: no `tasks:<id>` exists yet.
///
/// # Errors
/// 404 for an unknown user, 422 for an invalid title, database errors.
#[invalidates("users:<user_id>:tasks")]
pub async fn create_task(
    db: &DatabaseConnection,
    user_id: i32,
    new: NewTask,
) -> Result<task::Model, Error> {
    let title = valid_title(&new.title)?;
    if user::Entity::find_by_id(user_id).one(db).await?.is_none() {
        return Err(Error::not_found("user", user_id));
    }
    let row = task::ActiveModel {
        user_id: Set(user_id),
        title: Set(title),
        done: Set(new.done),
        created_at: Set(now()),
        ..Default::default()
    };
    row.insert(db).await.map_err(|e| match e.sql_err() {
        // The user was deleted since we looked.
        Some(SqlErr::ForeignKeyConstraintViolation(_)) => Error::not_found("user", user_id),
        _ => Error::Database(e),
    })
}

/// The owner of a task, read from the database (not the cache): the key of the owner's task
/// list needs it and the route does not carry it. A task never changes owner, so this read
/// cannot race with the write that follows.
async fn owner(db: &DatabaseConnection, id: i32) -> Result<i32, Error> {
    task::Entity::find_by_id(id)
        .select_only()
        .column(task::Column::UserId)
        .into_tuple::<i32>()
        .one(db)
        .await?
        .ok_or_else(|| Error::not_found("task", id))
}

/// Updates the fields present in `patch`.
///
/// # Errors
/// 404 for an unknown task, 422 for an invalid title, database errors.
pub async fn update_task(
    db: &DatabaseConnection,
    id: i32,
    patch: TaskPatch,
) -> Result<task::Model, Error> {
    let title = patch.title.as_deref().map(valid_title).transpose()?;
    let user_id = owner(db, id).await?;
    update_owned_task(db, user_id, id, title, patch.done).await
}

#[invalidates("users:<user_id>:tasks", "tasks:<id>")]
async fn update_owned_task(
    db: &DatabaseConnection,
    user_id: i32,
    id: i32,
    title: Option<String>,
    done: Option<bool>,
) -> Result<task::Model, Error> {
    let Some(current) = task::Entity::find_by_id(id)
        .filter(task::Column::UserId.eq(user_id))
        .one(db)
        .await?
    else {
        return Err(Error::not_found("task", id));
    };
    let mut row = current.clone().into_active_model();
    if let Some(title) = title {
        row.title = Set(title);
    }
    if let Some(done) = done {
        row.done = Set(done);
    }
    if !row.is_changed() {
        return Ok(current);
    }
    row.update(db).await.map_err(|e| match e {
        DbErr::RecordNotUpdated => Error::not_found("task", id),
        e => Error::Database(e),
    })
}

/// Deletes a task; returns its owner's id.
///
/// # Errors
/// 404 for an unknown task, database errors.
pub async fn delete_task(db: &DatabaseConnection, id: i32) -> Result<i32, Error> {
    let user_id = owner(db, id).await?;
    delete_owned_task(db, user_id, id).await?;
    Ok(user_id)
}

#[invalidates("users:<user_id>:tasks", "tasks:<id>")]
async fn delete_owned_task(db: &DatabaseConnection, user_id: i32, id: i32) -> Result<(), Error> {
    let deleted = task::Entity::delete_many()
        .filter(task::Column::Id.eq(id))
        .filter(task::Column::UserId.eq(user_id))
        .exec(db)
        .await?;
    if deleted.rows_affected == 0 {
        return Err(Error::not_found("task", id));
    }
    Ok(())
}
