//! `--seed N`: deterministic demo data, inserted in batches inside one transaction.

use std::collections::HashMap;

use cache_runtime::invalidates;
use chrono::{DateTime, Duration, Utc};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, DatabaseConnection, DbErr, EntityTrait,
    PaginatorTrait, QueryFilter, QuerySelect, SqlErr, TransactionTrait,
};

use crate::entities::user::Role;
use crate::entities::{task, user};
use crate::error::Error;
use crate::service::accounts::{hash_password, valid_password};

/// Users per `INSERT` (their tasks go in one more): well below the bind-parameter limits of
/// SQLite (32766) and PostgreSQL (65535).
const CHUNK: u32 = 1000;
/// Tasks each seeded user gets.
const TASKS_PER_USER: u32 = 3;

const FIRST: [&str; 12] = [
    "Ada", "Alan", "Barbara", "Claude", "Donald", "Edsger", "Frances", "Grace", "John", "Leslie",
    "Margaret", "Radia",
];
const LAST: [&str; 10] = [
    "Lovelace", "Turing", "Liskov", "Shannon", "Knuth", "Dijkstra", "Allen", "Hopper", "Backus",
    "Lamport",
];

/// The demo users' password.
pub const DEMO_PASSWORD: &str = "password";
/// The admin account the seed creates.
pub const ADMIN_EMAIL: &str = "admin@example.com";

/// Inserts `users` users (`user<i>@example.com`, 1-based, password [`DEMO_PASSWORD`]) with
/// three tasks each, and the admin [`ADMIN_EMAIL`] (role `admin`, name `Admin`) with
/// `admin_password`, unless the database already has users; returns how many users were
/// inserted (the admin included). `users == 0` does nothing.
///
/// A database that has users but no [`ADMIN_EMAIL`] (one from before accounts existed) gets
/// the admin alone (returns 1). An [`ADMIN_EMAIL`] account that exists already is left as it
/// is, whatever its role: it may have been created through the API by anyone, so the seed
/// never promotes it (it logs a warning when that account is not an admin).
///
/// One argon2 hash serves every demo user (each hash costs tens of milliseconds, 10,000 of
/// them minutes): they share a password anyway. The admin gets a hash of its own.
///
/// # Errors
/// Database errors (nothing is inserted then); an `admin_password` the API would refuse
/// (422 naming `ADMIN_PASSWORD`), checked only when the admin is to be created.
pub async fn seed(db: &DatabaseConnection, users: u32, admin_password: &str) -> Result<u32, Error> {
    if users == 0 {
        return Ok(0);
    }
    if user::Entity::find().count(db).await? > 0 {
        let admin = user::Entity::find()
            .filter(user::Column::Email.eq(ADMIN_EMAIL))
            .one(db)
            .await?;
        if let Some(admin) = admin {
            if admin.role != Role::Admin.as_str() {
                tracing::warn!(
                    email = ADMIN_EMAIL,
                    role = admin.role,
                    "the admin account exists without the admin role; the seed leaves it as is"
                );
            }
            return Ok(0);
        }
        valid_password(admin_password)
            .map_err(|e| Error::Invalid(format!("ADMIN_PASSWORD: {e}")))?;
        let admin_hash = hash_password(admin_password.to_owned()).await?;
        return match insert_admin(db, &admin_hash).await {
            Ok(()) => Ok(1),
            // Another instance seeding at the same time created it.
            Err(e) if matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => Ok(0),
            Err(e) => Err(e.into()),
        };
    }
    valid_password(admin_password).map_err(|e| Error::Invalid(format!("ADMIN_PASSWORD: {e}")))?;
    let demo_hash = hash_password(DEMO_PASSWORD.to_owned()).await?;
    let admin_hash = hash_password(admin_password.to_owned()).await?;
    Ok(insert_demo_data(db, users, &demo_hash, &admin_hash).await?)
}

/// Fixed timestamps keep the data identical from run to run.
fn epoch() -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp(1_704_067_200, 0).unwrap_or_default()
}

/// The admin's row.
fn admin_row(admin_hash: &str) -> user::ActiveModel {
    user::ActiveModel {
        name: Set("Admin".to_owned()),
        email: Set(ADMIN_EMAIL.to_owned()),
        age: Set(None),
        is_active: Set(true),
        role: Set(Role::Admin.as_str().to_owned()),
        password_hash: Set(Some(admin_hash.to_owned())),
        created_at: Set(epoch()),
        ..Default::default()
    }
}

/// Inserts the admin alone. Lists and filter results may now include it (as for
/// [`create_user`](crate::service::users::create_user)).
#[invalidates("users:list:*", "users:filter:*")]
async fn insert_admin(db: &DatabaseConnection, admin_hash: &str) -> Result<(), DbErr> {
    admin_row(admin_hash).insert(db).await.map(drop)
}

/// The insertion itself. Everything cached about users and tasks is invalidated, as a cache
/// shared with a previous run may hold rows of a database since deleted; a start that seeds
/// nothing invalidates nothing.
#[invalidates("users:*", "tasks:*")]
async fn insert_demo_data(
    db: &DatabaseConnection,
    users: u32,
    demo_hash: &str,
    admin_hash: &str,
) -> Result<u32, DbErr> {
    let epoch = epoch();
    let txn = db.begin().await?;
    let mut start = 1;
    while start <= users {
        let end = users.min(start.saturating_add(CHUNK - 1));
        let rows = (start..=end).map(|i| user::ActiveModel {
            name: Set(format!(
                "{} {}",
                FIRST[i as usize % FIRST.len()],
                LAST[i as usize / FIRST.len() % LAST.len()]
            )),
            email: Set(email(i)),
            age: Set((i % 10 != 0).then(|| 18 + (i % 60) as i32)),
            is_active: Set(i % 7 != 0),
            role: Set(Role::User.as_str().to_owned()),
            password_hash: Set(Some(demo_hash.to_owned())),
            created_at: Set(epoch + Duration::seconds(i.into())),
            ..Default::default()
        });
        user::Entity::insert_many(rows)
            .exec_without_returning(&txn)
            .await?;
        // Ids are assigned by the database: look them up by the unique emails.
        let ids: HashMap<String, i32> = user::Entity::find()
            .select_only()
            .columns([user::Column::Email, user::Column::Id])
            .filter(user::Column::Email.is_in((start..=end).map(email)))
            .into_tuple::<(String, i32)>()
            .all(&txn)
            .await?
            .into_iter()
            .collect();
        let tasks = (start..=end).flat_map(|i| {
            let user_id = ids.get(&email(i)).copied().unwrap_or_default();
            (1..=TASKS_PER_USER).map(move |j| task::ActiveModel {
                user_id: Set(user_id),
                title: Set(format!("Task {j} of user {i}")),
                done: Set((i + j) % 3 == 0),
                created_at: Set(epoch + Duration::seconds(i.into())),
                ..Default::default()
            })
        });
        task::Entity::insert_many(tasks)
            .exec_without_returning(&txn)
            .await?;
        start = end.saturating_add(1);
        if end == u32::MAX {
            break;
        }
    }
    // Last, so that `user<i>` has id i.
    admin_row(admin_hash).insert(&txn).await?;
    txn.commit().await?;
    Ok(users.saturating_add(1))
}

fn email(i: u32) -> String {
    format!("user{i}@example.com")
}
