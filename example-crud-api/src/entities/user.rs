//! The `users` table.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A user, as stored and as returned by the API.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize, ToSchema)]
#[schema(as = User)]
#[sea_orm(table_name = "users")]
pub struct Model {
    /// Primary key.
    #[sea_orm(primary_key)]
    pub id: i32,
    /// Display name, 1 to 100 characters.
    pub name: String,
    /// Unique email address.
    #[sea_orm(unique)]
    pub email: String,
    /// Age in years, 0 to 150, if known.
    #[schema(required = true)]
    pub age: Option<i32>,
    /// Whether the account is active (an inactive one cannot log in).
    pub is_active: bool,
    /// `user` or `admin` (not settable through the API; the seed makes the admin).
    #[sea_orm(default_value = "user")]
    #[schema(example = "user")]
    pub role: String,
    /// The password's argon2id hash (PHC string); never serialized, so never answered or
    /// cached.
    #[serde(skip)]
    pub password_hash: Option<String>,
    /// Creation time (UTC, microsecond precision).
    #[schema(value_type = chrono::DateTime<chrono::Utc>)]
    pub created_at: DateTimeUtc,
}

/// Relations of [`Entity`].
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    /// A user has many tasks.
    #[sea_orm(has_many = "super::task::Entity")]
    Tasks,
}

impl Related<super::task::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Tasks.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
