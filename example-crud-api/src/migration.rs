//! Versioned schema migrations, applied in order at start-up. Each runs once, in a transaction,
//! and is recorded in `schema_migrations`.
//!
//! Several instances may start together on one database, so the whole run holds a lock: on
//! PostgreSQL an advisory lock ([`MIGRATION_LOCK`]), on SQLite the database's write lock
//! (`BEGIN IMMEDIATE`). The first instance applies what is missing; the others wait, then read
//! the version it recorded and apply nothing.
//!
//! Version 1 creates the tables as they were when it was written (the `users` table from a
//! frozen copy of its entity, [`v1_user`]); a later schema change gets a new version with
//! explicit `ALTER` statements, never an edit of an old one.

use sea_orm::entity::prelude::*;
use sea_orm::{
    ActiveValue::Set, DbBackend, QueryOrder, Schema, SqliteTransactionMode, TransactionOptions,
    TransactionSession, TransactionTrait,
};

use crate::entities::task;

/// Every migration: version and description.
const MIGRATIONS: &[(i64, &str)] = &[
    (1, "create users and tasks"),
    (2, "users: role and password hash"),
    (3, "import_fences"),
];

/// The `users` table as version 1 created it.
mod v1_user {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "users")]
    pub(crate) struct Model {
        #[sea_orm(primary_key)]
        pub(crate) id: i32,
        pub(crate) name: String,
        #[sea_orm(unique)]
        pub(crate) email: String,
        pub(crate) age: Option<i32>,
        pub(crate) is_active: bool,
        pub(crate) created_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub(crate) enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// The bookkeeping table.
mod applied {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "schema_migrations")]
    pub(crate) struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub(crate) version: i64,
        pub(crate) description: String,
        pub(crate) applied_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub(crate) enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// The key of the PostgreSQL advisory lock migrations hold (any constant no other program
/// uses on the same database: `"exmplapi"` in ASCII).
const MIGRATION_LOCK: i64 = 0x6578_6d70_6c61_7069;

/// Applies the migrations `db` has not seen yet.
///
/// Inside one transaction that first takes a lock, so that everything below (creating
/// `schema_migrations`, reading the applied version, applying) runs for one instance at a
/// time:
/// - PostgreSQL: the transaction-level advisory lock [`MIGRATION_LOCK`]. It lives as long as
///   the transaction (commit, rollback or a lost connection release it), so an instance that
///   dies mid-migration cannot leave it held.
/// - SQLite: `BEGIN IMMEDIATE` takes the write lock at once; another instance's `BEGIN
///   IMMEDIATE` waits for it (up to the busy timeout, 5 s).
///
/// Both databases' DDL is transactional, so a failed run leaves nothing behind; each migration
/// is a savepoint inside the run.
pub(crate) async fn run(db: &DatabaseConnection) -> Result<(), DbErr> {
    let backend = db.get_database_backend();
    let txn = match backend {
        DbBackend::Sqlite => {
            db.begin_with_options(TransactionOptions {
                sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
                ..TransactionOptions::default()
            })
            .await?
        }
        _ => db.begin().await?,
    };
    if backend == DbBackend::Postgres {
        txn.execute_unprepared(&format!("SELECT pg_advisory_xact_lock({MIGRATION_LOCK})"))
            .await?;
    }
    migrate(&txn).await?;
    txn.commit().await
}

/// Creates `schema_migrations` if needed, reads the applied version and applies the rest, each
/// migration in its own transaction (a savepoint when `db` is a transaction).
async fn migrate<C>(db: &C) -> Result<(), DbErr>
where
    C: ConnectionTrait + TransactionTrait,
{
    let schema = Schema::new(db.get_database_backend());
    db.execute(
        schema
            .create_table_from_entity(applied::Entity)
            .if_not_exists(),
    )
    .await?;
    let current = applied::Entity::find()
        .order_by_desc(applied::Column::Version)
        .one(db)
        .await?
        .map_or(0, |m| m.version);
    for &(version, description) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
        let txn = db.begin().await?;
        apply(&txn, &schema, version).await?;
        applied::ActiveModel {
            version: Set(version),
            description: Set(description.to_owned()),
            applied_at: Set(crate::service::now()),
        }
        .insert(&txn)
        .await?;
        txn.commit().await?;
        tracing::info!(version, description, "applied migration");
    }
    Ok(())
}

async fn apply(db: &impl ConnectionTrait, schema: &Schema, version: i64) -> Result<(), DbErr> {
    match version {
        1 => {
            db.execute(&schema.create_table_from_entity(v1_user::Entity))
                .await?;
            db.execute(&schema.create_table_from_entity(task::Entity))
                .await?;
            for index in schema.create_index_from_entity(task::Entity) {
                db.execute(&index).await?;
            }
            Ok(())
        }
        2 => {
            // Rows from before get the role `user` and no password (they cannot log in until
            // one is set). A column that exists already (a development build that created
            // `users` from the live entity) is left alone.
            let existing = columns(db, "users").await?;
            for (column, definition) in [
                ("role", "VARCHAR(16) NOT NULL DEFAULT 'user'"),
                ("password_hash", "TEXT"),
            ] {
                if !existing.iter().any(|c| c == column) {
                    db.execute_unprepared(&format!(
                        "ALTER TABLE users ADD COLUMN {column} {definition}"
                    ))
                    .await?;
                }
            }
            Ok(())
        }
        3 => {
            db.execute_unprepared(crate::service::imports::CREATE_FENCES)
                .await?;
            Ok(())
        }
        other => Err(DbErr::Migration(format!("no migration {other}"))),
    }
}

/// The column names of `table` (a constant: it is part of the SQL text).
async fn columns(db: &impl ConnectionTrait, table: &'static str) -> Result<Vec<String>, DbErr> {
    let backend = db.get_database_backend();
    let sql = match backend {
        DbBackend::Sqlite => format!("SELECT name FROM pragma_table_info('{table}')"),
        _ => format!(
            "SELECT column_name AS name FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name = '{table}'"
        ),
    };
    let rows = db
        .query_all_raw(sea_orm::Statement::from_string(backend, sql))
        .await?;
    rows.iter()
        .map(|row| row.try_get::<String>("", "name"))
        .collect()
}
