//! The `users` table.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa::openapi::schema::{Object, ObjectBuilder, Type};

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
    /// `user` or `admin` (a [`Role`]); not settable through the API, the seed makes the
    /// admin.
    #[sea_orm(default_value = "user")]
    #[schema(schema_with = role_schema)]
    pub role: String,
    /// The password's argon2id hash (PHC string); never serialized, so never answered or
    /// cached.
    #[serde(skip)]
    pub password_hash: Option<String>,
    /// Creation time (UTC, microsecond precision).
    #[schema(value_type = chrono::DateTime<chrono::Utc>)]
    pub created_at: DateTimeUtc,
}

/// The values of [`Model::role`], a string column (a new role needs no migration).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// Every account created through the API.
    User,
    /// May administer the cache; only the seed creates one.
    Admin,
}

impl Role {
    /// Every role.
    pub const ALL: [Self; 2] = [Self::User, Self::Admin];

    /// The value stored in [`Model::role`]: `user` or `admin`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Admin => "admin",
        }
    }
}

/// The schema of [`Model::role`]: a string, one of [`Role::ALL`].
fn role_schema() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(Role::ALL.map(Role::as_str)))
        .description(Some(
            "`user` or `admin`; not settable through the API (the seed makes the admin).",
        ))
        .examples([Role::User.as_str()])
        .build()
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
