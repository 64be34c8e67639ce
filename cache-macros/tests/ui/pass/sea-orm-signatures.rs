//! The signatures from the design brief, against stand-ins for sea-orm's types: connection
//! arguments are skipped without being asked, and a write in a transaction defers its
//! invalidation.
#![deny(warnings)]

use cache_runtime::{cached, invalidates};
use serde::{Deserialize, Serialize};

pub struct DatabaseConnection;
pub struct DatabaseTransaction;
pub trait ConnectionTrait {}
impl ConnectionTrait for DatabaseConnection {}
impl ConnectionTrait for DatabaseTransaction {}
pub enum DatabaseExecutor<'c> {
    Connection(&'c DatabaseConnection),
    Transaction(&'c DatabaseTransaction),
}
#[derive(Debug)]
pub struct DbErr;

pub mod user {
    #[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
    pub struct Model {
        pub id: i32,
    }
}

#[derive(Serialize)]
pub struct UserFilter {
    pub name: Option<String>,
}

#[derive(Deserialize)]
pub struct UserPatch {
    pub name: String,
}

#[cached(key = "users:<id>", ttl = 300)]
pub async fn get_user(db: &DatabaseConnection, id: i32) -> Result<Option<user::Model>, DbErr> {
    let _ = db;
    Ok(Some(user::Model { id }))
}

#[cached(key = "users:list", ttl = 60)]
pub async fn list_users(db: &DatabaseConnection, skip: u64, limit: u64) -> Result<Vec<user::Model>, DbErr> {
    let _ = (db, skip, limit);
    Ok(Vec::new())
}

#[cached(key = "users:filter", ttl = 60)]
pub async fn filter_users(db: &DatabaseConnection, filter: &UserFilter) -> Result<Vec<user::Model>, DbErr> {
    let _ = (db, filter);
    Ok(Vec::new())
}

#[cached(key = "users:<id>:executor", ttl = 60)]
pub async fn get_user_executor(db: &DatabaseExecutor<'_>, id: i32) -> Result<Option<user::Model>, DbErr> {
    let _ = db;
    Ok(Some(user::Model { id }))
}

#[cached(key = "users:<id>:impl", ttl = 60)]
pub async fn get_user_impl(db: &impl ConnectionTrait, id: i32) -> Result<Option<user::Model>, DbErr> {
    let _ = db;
    Ok(Some(user::Model { id }))
}

#[cached(key = "users:<id>:generic", ttl = 60)]
pub async fn get_user_generic<C: ConnectionTrait>(db: &C, id: i32) -> Result<Option<user::Model>, DbErr> {
    let _ = db;
    Ok(Some(user::Model { id }))
}

#[cached(key = "users:<id>:where", ttl = 60)]
pub async fn get_user_where<C>(db: &C, id: i32) -> Result<Option<user::Model>, DbErr>
where
    C: ConnectionTrait,
{
    let _ = db;
    Ok(Some(user::Model { id }))
}

#[invalidates("users:*")]
pub async fn update_user(db: &DatabaseConnection, id: i32, patch: UserPatch) -> Result<user::Model, DbErr> {
    let _ = (db, patch.name);
    Ok(user::Model { id })
}

#[invalidates("users:<user_id>:tasks:*", "tasks:<id>")]
pub async fn delete_task(db: &DatabaseConnection, user_id: i32, id: i32) -> Result<(), DbErr> {
    let _ = (db, user_id, id);
    Ok(())
}

#[invalidates("users:<id>", "users:list:*", deferred)]
pub async fn rename_user(txn: &DatabaseTransaction, id: i32, patch: UserPatch) -> Result<(), DbErr> {
    let _ = (txn, id, patch.name);
    Ok(())
}

fn main() {}
