//! The `tasks` table: a user's tasks, deleted with the user.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A task, as stored and as returned by the API.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize, ToSchema)]
#[schema(as = Task)]
#[sea_orm(table_name = "tasks")]
pub struct Model {
    /// Primary key.
    #[sea_orm(primary_key)]
    pub id: i32,
    /// The owning user; a task never changes owner.
    #[sea_orm(indexed)]
    pub user_id: i32,
    /// What to do, 1 to 200 characters.
    pub title: String,
    /// Whether it is done.
    pub done: bool,
    /// Creation time (UTC, microsecond precision).
    #[schema(value_type = chrono::DateTime<chrono::Utc>)]
    pub created_at: DateTimeUtc,
}

/// Relations of [`Entity`].
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    /// A task belongs to a user; deleting the user deletes its tasks.
    #[sea_orm(
        belongs_to = "super::user::Entity",
        from = "Column::UserId",
        to = "super::user::Column::Id",
        on_delete = "Cascade"
    )]
    User,
}

impl Related<super::user::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::User.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
