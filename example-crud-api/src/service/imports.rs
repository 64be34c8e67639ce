//! `POST /users/{id}/tasks/import`: replaces a user's whole task list, in batches, under the
//! distributed lock `import:<user_id>`.
//!
//! The lock keeps two imports of one user from interleaving on any instance; it cannot alone
//! stop a holder that stalled past its TTL (a GC pause, a frozen VM) from writing after the
//! next holder took over. So the database refuses stale holders itself: `import_fences` keeps,
//! per user, the highest fencing token an import has claimed, and every batch's transaction
//! first checks (and row-locks) that the token is still its own, then extends the lock (a
//! token-compared extend: it fails once another holder has the key). A holder that learns it
//! lost the lock (the watchdog's signal, a failed extend, or a fence that moved) stops between
//! batches and deletes the rows it inserted: an import either replaces the list completely or
//! leaves nothing.

use cache_runtime::invalidates;
use cache_runtime::lock::{LockError, LockGuard};
use sea_orm::sea_query::{Alias, Expr, ExprTrait as _, OnConflict, Query};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection,
    EntityTrait, QueryFilter, SqlErr, TransactionTrait,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::now;
use super::tasks::{NewTask, valid_title};
use crate::entities::task;
use crate::error::Error;

/// Most tasks one import may carry.
pub const MAX_IMPORT: usize = 1000;
/// Tasks written per transaction.
pub const IMPORT_BATCH: usize = 100;

/// The body of an import.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"tasks": [{"title": "Write the report"}, {"title": "Send it", "done": true}]}))]
pub struct Import {
    /// The new list: 1 to 1000 tasks, in order.
    #[schema(min_items = 1, max_items = 1000)]
    pub tasks: Vec<NewTask>,
}

/// The answer of an import.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Imported {
    /// How many tasks the user has now.
    pub imported: usize,
}

/// The outcome of an import that ran: what it created and deleted, for the events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replaced {
    /// Ids of the new tasks, in order.
    pub created: Vec<i32>,
    /// Ids of the tasks the import removed.
    pub deleted: Vec<i32>,
}

/// Checks an import's tasks before any lock is taken: every problem in one 422.
///
/// # Errors
/// 422 for no tasks, too many, or an invalid title (naming its index).
pub fn validate(import: Import) -> Result<Vec<(String, bool)>, Error> {
    let n = import.tasks.len();
    if !(1..=MAX_IMPORT).contains(&n) {
        return Err(Error::Invalid(format!(
            "`tasks` must hold 1 to {MAX_IMPORT} tasks, got {n}"
        )));
    }
    let mut problems = super::Problems::default();
    let tasks: Vec<(String, bool)> = import
        .tasks
        .into_iter()
        .enumerate()
        .filter_map(|(i, t)| {
            problems
                .check(valid_title(&t.title).map_err(|e| format!("tasks[{i}]: {e}")))
                .map(|title| (title, t.done))
        })
        .collect();
    if tasks.len() < n {
        return Err(problems.into_error());
    }
    Ok(tasks)
}

/// Replaces `user_id`'s tasks with `tasks` while `lock` (the lock `import:<user_id>`) holds.
/// Invalidates the user's task list and every `tasks:<id>` entry (the replaced ids are many;
/// one pattern marker costs one write), also when it fails: a failed import may have shown
/// rows for a moment.
///
/// # Errors
/// 404 for an unknown user (deleted meanwhile); 409 when the lock was lost or a newer import
/// claimed the user's fence (nothing is left of this import then); database errors.
#[invalidates("users:<user_id>:tasks", "tasks:*", result = false)]
pub async fn replace_tasks(
    db: &DatabaseConnection,
    user_id: i32,
    tasks: Vec<(String, bool)>,
    lock: &LockGuard,
) -> Result<Replaced, Error> {
    let token = i64::try_from(lock.fencing_token())
        .map_err(|_| Error::Internal("fencing token out of range".to_owned()))?;
    claim_fence(db, user_id, token).await?;
    let mut created = Vec::with_capacity(tasks.len());
    let outcome = write_batches(db, user_id, token, &tasks, lock, &mut created).await;
    match outcome {
        Ok(deleted) => Ok(Replaced { created, deleted }),
        Err(e) => {
            // Ours alone: no other import reuses these ids, so deleting them needs no fence.
            if !created.is_empty() {
                task::Entity::delete_many()
                    .filter(task::Column::Id.is_in(created.iter().copied()))
                    .exec(db)
                    .await?;
            }
            Err(e)
        }
    }
}

async fn write_batches(
    db: &DatabaseConnection,
    user_id: i32,
    token: i64,
    tasks: &[(String, bool)],
    lock: &LockGuard,
    created: &mut Vec<i32>,
) -> Result<Vec<i32>, Error> {
    for batch in tasks.chunks(IMPORT_BATCH) {
        let txn = db.begin().await?;
        hold_fence(&txn, user_id, token, lock).await?;
        let mut ids = Vec::with_capacity(batch.len());
        for (title, done) in batch {
            let row = task::ActiveModel {
                user_id: Set(user_id),
                title: Set(title.clone()),
                done: Set(*done),
                created_at: Set(now()),
                ..Default::default()
            };
            let row = row.insert(&txn).await.map_err(|e| match e.sql_err() {
                Some(SqlErr::ForeignKeyConstraintViolation(_)) => Error::not_found("user", user_id),
                _ => Error::Database(e),
            })?;
            ids.push(row.id);
        }
        txn.commit().await?;
        created.extend(ids);
    }
    let txn = db.begin().await?;
    hold_fence(&txn, user_id, token, lock).await?;
    let old: Vec<i32> = task::Entity::find()
        .filter(task::Column::UserId.eq(user_id))
        .filter(task::Column::Id.is_not_in(created.iter().copied()))
        .all(&txn)
        .await?
        .into_iter()
        .map(|t| t.id)
        .collect();
    task::Entity::delete_many()
        .filter(task::Column::Id.is_in(old.iter().copied()))
        .exec(&txn)
        .await?;
    txn.commit().await?;
    Ok(old)
}

const FENCES: &str = "import_fences";

fn lost() -> Error {
    Error::Conflict(
        "the import lock was lost to another import of this user; nothing was imported".to_owned(),
    )
}

/// Records `token` as the user's fence unless a higher one is there (a newer import).
async fn claim_fence(db: &DatabaseConnection, user_id: i32, token: i64) -> Result<(), Error> {
    let table = Alias::new(FENCES);
    let mut insert = Query::insert();
    insert
        .into_table(table.clone())
        .columns([Alias::new("user_id"), Alias::new("token")])
        .values([user_id.into(), token.into()])
        .map_err(|e| Error::Internal(e.to_string()))?
        .on_conflict(
            OnConflict::column(Alias::new("user_id"))
                .update_column(Alias::new("token"))
                .action_and_where(Expr::col((table, Alias::new("token"))).lte(token))
                .to_owned(),
        );
    let result = db.execute(&insert).await?;
    if result.rows_affected() == 0 {
        return Err(lost());
    }
    Ok(())
}

/// Inside a batch's transaction: fails unless the lock still holds and the user's fence is
/// still `token`, and row-locks the fence (PostgreSQL; SQLite's write lock does the same) so
/// that no newer import claims it before this transaction ends.
async fn hold_fence(
    txn: &impl ConnectionTrait,
    user_id: i32,
    token: i64,
    lock: &LockGuard,
) -> Result<(), Error> {
    if !lock.is_held() {
        return Err(lost());
    }
    let mut update = Query::update();
    update
        .table(Alias::new(FENCES))
        .value(Alias::new("token"), Expr::col(Alias::new("token")))
        .and_where(Expr::col(Alias::new("user_id")).eq(user_id))
        .and_where(Expr::col(Alias::new("token")).eq(token));
    match txn.execute(&update).await {
        Ok(result) if result.rows_affected() == 1 => {}
        Ok(_) => return Err(lost()),
        Err(e) => return Err(Error::Database(e)),
    }
    // And the lock itself, now that the fence row is ours until the commit: a holder whose
    // key was taken over learns it at this batch, not at the watchdog's next beat (TTL/3).
    match lock.extend(lock.ttl()).await {
        Ok(()) => Ok(()),
        Err(LockError::Lost) => Err(lost()),
        Err(e) => Err(Error::Unavailable(format!("the import lock: {e}"))),
    }
}

/// The statement of migration 3.
pub(crate) const CREATE_FENCES: &str =
    "CREATE TABLE import_fences (user_id INTEGER NOT NULL PRIMARY KEY, token BIGINT NOT NULL)";
