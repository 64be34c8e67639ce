//! Versioned schema migrations, applied in order at start-up. Each runs once, in a transaction,
//! and is recorded in `schema_migrations`.
//!
//! Version 1 creates the tables from the entities as they were when it was written; a later
//! schema change gets a new version with explicit `ALTER` statements, never an edit of an old one.

use sea_orm::entity::prelude::*;
use sea_orm::{ActiveValue::Set, QueryOrder, Schema, TransactionTrait};

use crate::entities::{task, user};

/// Every migration: version and description.
const MIGRATIONS: &[(i64, &str)] = &[(1, "create users and tasks")];

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

/// Applies the migrations `db` has not seen yet.
pub(crate) async fn run(db: &DatabaseConnection) -> Result<(), DbErr> {
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
            db.execute(&schema.create_table_from_entity(user::Entity))
                .await?;
            db.execute(&schema.create_table_from_entity(task::Entity))
                .await?;
            for index in schema.create_index_from_entity(task::Entity) {
                db.execute(&index).await?;
            }
            Ok(())
        }
        other => Err(DbErr::Migration(format!("no migration {other}"))),
    }
}
