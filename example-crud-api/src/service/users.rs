//! Users: reads cached under `users:…`; each write invalidates exactly what it can change.
//!
//! The reads return [`JsonText`]: the rows serialized once, when loaded, so that a cache hit is
//! answered with the cached text as it is, without decoding rows and encoding them again.

use std::fmt;

use cache_runtime::{cached, invalidates};
use sea_orm::{
    AccessMode, ActiveModelTrait, ActiveValue::Set, ColumnTrait, DatabaseConnection, DbBackend,
    DbErr, EntityTrait, IntoActiveModel, IsolationLevel, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect, TransactionTrait,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::accounts::{hash_password, valid_password};
use super::{LIST_TTL, Page, Problems, ROW_TTL, json, now};
use crate::JsonText;
use crate::entities::{task, user};
use crate::error::Error;
use crate::filter::ValidFilter;

/// The body of `POST /users` (its `Debug` does not show the password).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "Ada", "email": "ada@example.com", "age": 36}))]
pub struct NewUser {
    /// 1 to 100 characters (surrounding whitespace is trimmed).
    #[schema(min_length = 1, max_length = 100)]
    pub name: String,
    /// Contains `@`, at most 254 characters; unique.
    #[schema(max_length = 254)]
    pub email: String,
    /// 0 to 150.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 150)]
    pub age: Option<i32>,
    /// Defaults to `true`.
    #[serde(default = "active_by_default")]
    #[schema(default = true)]
    pub is_active: bool,
    /// 8 to 128 characters; stored only as an argon2id hash. Without one the user cannot log
    /// in.
    // Never serialized; `skip_serializing_if` rather than `skip_serializing`, which would
    // drop the field from the OpenAPI schema too.
    #[serde(default, skip_serializing_if = "never")]
    #[schema(min_length = 8, max_length = 128, format = Password, write_only)]
    pub password: Option<String>,
}

fn active_by_default() -> bool {
    true
}

/// For `skip_serializing_if`: a password is never serialized.
fn never<T>(_: &T) -> bool {
    true
}

/// `Some("<redacted>")` for a present password, so that `Debug` never shows one.
fn redacted(password: Option<&String>) -> Option<&'static str> {
    password.map(|_| "<redacted>")
}

impl fmt::Debug for NewUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewUser")
            .field("name", &self.name)
            .field("email", &self.email)
            .field("age", &self.age)
            .field("is_active", &self.is_active)
            .field("password", &redacted(self.password.as_ref()))
            .finish()
    }
}

impl fmt::Debug for UserPatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserPatch")
            .field("name", &self.name)
            .field("email", &self.email)
            .field("age", &self.age)
            .field("is_active", &self.is_active)
            .field("password", &redacted(self.password.as_ref()))
            .finish()
    }
}

/// The body of `PUT /users/{id}`: absent fields are left unchanged; `"age": null` clears the
/// age. The other fields cannot be null: `null` for them is a 422. Its `Debug` does not show
/// the password.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "Ada L.", "age": null}))]
pub struct UserPatch {
    /// New name (1 to 100 characters).
    #[serde(
        default,
        deserialize_with = "super::non_null",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(nullable = false, min_length = 1, max_length = 100)]
    pub name: Option<String>,
    /// New email (contains `@`, at most 254 characters; unique).
    #[serde(
        default,
        deserialize_with = "super::non_null",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(nullable = false, max_length = 254)]
    pub email: Option<String>,
    /// New age (0 to 150), or `null` to clear it (`Some(None)` here).
    #[serde(
        default,
        deserialize_with = "super::nullable",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<i32>, minimum = 0, maximum = 150)]
    pub age: Option<Option<i32>>,
    /// New active flag.
    #[serde(
        default,
        deserialize_with = "super::non_null",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(nullable = false)]
    pub is_active: Option<bool>,
    /// New password (8 to 128 characters): every session of the user ends.
    #[serde(
        default,
        deserialize_with = "super::non_null",
        skip_serializing_if = "never"
    )]
    #[schema(nullable = false, min_length = 8, max_length = 128, format = Password, write_only)]
    pub password: Option<String>,
}

/// Checks and trims a name.
fn valid_name(name: &str) -> Result<String, String> {
    let name = name.trim();
    match name.chars().count() {
        0 => Err("`name` must not be empty".to_owned()),
        1..=100 => Ok(name.to_owned()),
        n => Err(format!("`name` must be at most 100 characters, got {n}")),
    }
}

/// Checks and trims an email address.
fn valid_email(email: &str) -> Result<String, String> {
    let email = email.trim();
    if !email.contains('@') {
        return Err("`email` must contain `@`".to_owned());
    }
    match email.chars().count() {
        0..=254 => Ok(email.to_owned()),
        n => Err(format!("`email` must be at most 254 characters, got {n}")),
    }
}

fn valid_age(age: Option<i32>) -> Result<Option<i32>, String> {
    match age {
        Some(0..=150) | None => Ok(age),
        Some(n) => Err(format!("`age` must be between 0 and 150, got {n}")),
    }
}

fn email_taken(email: &str) -> impl FnOnce() -> String + '_ {
    move || format!("`email` {email:?} is already taken")
}

/// One user as JSON, or `None` (not cached: a 404 stays cheap to fix by creating the user).
///
/// # Errors
/// Database errors.
#[cached(key = "users:<id>", ttl = ROW_TTL)]
pub async fn get_user(
    db: &DatabaseConnection,
    id: i32,
) -> Result<Option<JsonText<user::Model>>, DbErr> {
    let user = user::Entity::find_by_id(id).one(db).await?;
    user.as_ref().map(json).transpose()
}

/// A page of users ordered by id, as JSON; `skip` and `limit` are hashed into
/// `users:list:<hash>`. For pages beyond [`MAX_CACHED_SKIP`](super::MAX_CACHED_SKIP), call
/// [`list_users_uncached`].
///
/// # Errors
/// Database errors.
#[cached(key = "users:list", ttl = LIST_TTL)]
pub async fn list_users(
    db: &DatabaseConnection,
    skip: u64,
    limit: u64,
) -> Result<JsonText<Vec<user::Model>>, DbErr> {
    list_users_uncached(db, skip, limit).await
}

/// [`list_users`] without the cache: read from the database every time.
///
/// # Errors
/// Database errors.
pub async fn list_users_uncached(
    db: &DatabaseConnection,
    skip: u64,
    limit: u64,
) -> Result<JsonText<Vec<user::Model>>, DbErr> {
    let users = user::Entity::find()
        .order_by_asc(user::Column::Id)
        .offset(skip)
        .limit(limit)
        .all(db)
        .await?;
    json(&users)
}

/// The users matching `filter`, as JSON, cached under `users:filter:<hash of the filter>`.
/// For pages beyond [`MAX_CACHED_SKIP`](super::MAX_CACHED_SKIP), call
/// [`filter_users_uncached`].
///
/// # Errors
/// Database errors.
#[cached(key = "users:filter", ttl = LIST_TTL)]
pub async fn filter_users(
    db: &DatabaseConnection,
    filter: &ValidFilter,
) -> Result<JsonText<Vec<user::Model>>, DbErr> {
    filter_users_uncached(db, filter).await
}

/// [`filter_users`] without the cache.
///
/// # Errors
/// Database errors.
pub async fn filter_users_uncached(
    db: &DatabaseConnection,
    filter: &ValidFilter,
) -> Result<JsonText<Vec<user::Model>>, DbErr> {
    let users = filter
        .query(db.get_database_backend())
        .offset(filter.skip())
        .limit(filter.limit())
        .all(db)
        .await?;
    json(&users)
}

/// A page of the users matching `filter` with the total count, as JSON, cached under
/// `users:filter:paginated:<hash>`. For pages beyond
/// [`MAX_CACHED_SKIP`](super::MAX_CACHED_SKIP), call [`filter_users_paginated_uncached`].
///
/// # Errors
/// Database errors.
#[cached(key = "users:filter:paginated", ttl = LIST_TTL)]
pub async fn filter_users_paginated(
    db: &DatabaseConnection,
    filter: &ValidFilter,
) -> Result<JsonText<Page<user::Model>>, DbErr> {
    filter_users_paginated_uncached(db, filter).await
}

/// [`filter_users_paginated`] without the cache.
///
/// The count and the page are read in one read-only transaction, so that they see the same
/// rows: two statements on their own could straddle a write (`total` 4 with 5 items). On
/// PostgreSQL the transaction is `REPEATABLE READ`, whose snapshot is the same for both
/// statements (the default `READ COMMITTED` takes one per statement). A SQLite transaction
/// reads one snapshot (WAL mode) from its first read to its end anyway.
///
/// # Errors
/// Database errors.
pub async fn filter_users_paginated_uncached(
    db: &DatabaseConnection,
    filter: &ValidFilter,
) -> Result<JsonText<Page<user::Model>>, DbErr> {
    let backend = db.get_database_backend();
    let txn = match backend {
        DbBackend::Postgres => {
            db.begin_with_config(
                Some(IsolationLevel::RepeatableRead),
                Some(AccessMode::ReadOnly),
            )
            .await?
        }
        // SQLite has neither setting (sea-orm warns when given one).
        _ => db.begin().await?,
    };
    let total = user::Entity::find()
        .filter(filter.condition(backend))
        .count(&txn)
        .await?;
    let items = filter
        .query(backend)
        .offset(filter.skip())
        .limit(filter.limit())
        .all(&txn)
        .await?;
    txn.commit().await?;
    json(&Page {
        items,
        total,
        skip: filter.skip(),
        limit: filter.limit(),
    })
}

/// Creates a user. Lists and filter results may now include it; no other entry can (a missing
/// user is never cached).
///
/// # Errors
/// 422 for invalid fields, 409 for a taken email, database errors.
#[invalidates("users:list:*", "users:filter:*")]
pub async fn create_user(db: &DatabaseConnection, new: NewUser) -> Result<user::Model, Error> {
    let mut problems = Problems::default();
    let name = problems.check(valid_name(&new.name));
    let email = problems.check(valid_email(&new.email));
    let age = problems.check(valid_age(new.age));
    let password = problems.check(new.password.as_deref().map(valid_password).transpose());
    let (Some(name), Some(email), Some(age), Some(_)) = (name, email, age, password) else {
        return Err(problems.into_error());
    };
    let password_hash = match new.password {
        Some(password) => Some(hash_password(password).await?),
        None => None,
    };
    let row = user::ActiveModel {
        name: Set(name),
        email: Set(email.clone()),
        age: Set(age),
        is_active: Set(new.is_active),
        role: Set(user::Role::User.as_str().to_owned()),
        password_hash: Set(password_hash),
        created_at: Set(now()),
        ..Default::default()
    };
    row.insert(db)
        .await
        .map_err(|e| Error::conflict_on_unique(e, email_taken(&email)))
}

/// What [`update_user`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Updated {
    /// The user as stored now.
    pub user: user::Model,
    /// Whether a new password hash was stored (the patch had a `password`; setting the same
    /// password again counts too, as it gets a new salt). The caller ends every session of the
    /// user when it is `true`.
    pub password_changed: bool,
}

impl Updated {
    /// Whether a new password was stored; see the field [`Updated::password_changed`].
    pub fn password_changed(&self) -> bool {
        self.password_changed
    }
}

/// Updates the fields present in `patch`; a `password` is hashed (off the async workers) and
/// stored, and reported as [`Updated::password_changed`]. Invalidates the row and every list
/// or filter result (which may contain it, or should now); other users' rows and every user's
/// tasks stay cached, which is what lets a write-heavy mix still hit the cache.
///
/// # Errors
/// 404 for an unknown user, 422 for invalid fields, 409 for a taken email, database errors.
/// Nothing is stored then, the password included.
#[invalidates("users:<id>", "users:list:*", "users:filter:*")]
pub async fn update_user(
    db: &DatabaseConnection,
    id: i32,
    patch: UserPatch,
) -> Result<Updated, Error> {
    let mut problems = Problems::default();
    let name = problems.check(patch.name.as_deref().map(valid_name).transpose());
    let email = problems.check(patch.email.as_deref().map(valid_email).transpose());
    let age = problems.check(patch.age.map(valid_age).transpose());
    let password = problems.check(patch.password.as_deref().map(valid_password).transpose());
    let (Some(name), Some(email), Some(age), Some(_)) = (name, email, age, password) else {
        return Err(problems.into_error());
    };
    let Some(current) = user::Entity::find_by_id(id).one(db).await? else {
        return Err(Error::not_found("user", id));
    };
    let mut row = current.clone().into_active_model();
    if let Some(name) = name {
        row.name = Set(name);
    }
    if let Some(email) = &email {
        row.email = Set(email.clone());
    }
    if let Some(age) = age {
        row.age = Set(age);
    }
    if let Some(is_active) = patch.is_active {
        row.is_active = Set(is_active);
    }
    let password_changed = patch.password.is_some();
    if let Some(password) = patch.password {
        row.password_hash = Set(Some(hash_password(password).await?));
    }
    if !row.is_changed() {
        return Ok(Updated {
            user: current,
            password_changed,
        });
    }
    let user = row.update(db).await.map_err(|e| match e {
        // Deleted between the read and the write.
        DbErr::RecordNotUpdated => Error::not_found("user", id),
        e => Error::conflict_on_unique(e, email_taken(email.as_deref().unwrap_or_default())),
    })?;
    Ok(Updated {
        user,
        password_changed,
    })
}

/// Deletes a user and its tasks, in one transaction.
///
/// Invalidates the row, everything under it (`users:<id>:tasks`), lists and filter results, and
/// `tasks:*`: the user's tasks may be cached one by one as `tasks:<id>`, and they are gone now.
///
/// # Errors
/// 404 for an unknown user, database errors.
#[invalidates(
    "users:<id>",
    "users:<id>:*",
    "users:list:*",
    "users:filter:*",
    "tasks:*"
)]
pub async fn delete_user(db: &DatabaseConnection, id: i32) -> Result<(), Error> {
    let txn = db.begin().await?;
    // Explicit, as SQLite enforces the foreign key's ON DELETE CASCADE only when told to.
    task::Entity::delete_many()
        .filter(task::Column::UserId.eq(id))
        .exec(&txn)
        .await?;
    let deleted = user::Entity::delete_by_id(id).exec(&txn).await?;
    if deleted.rows_affected == 0 {
        // Dropping the transaction rolls it back.
        return Err(Error::not_found("user", id));
    }
    txn.commit().await?;
    Ok(())
}
