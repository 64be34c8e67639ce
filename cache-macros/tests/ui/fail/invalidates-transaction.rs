use cache_runtime::invalidates;

pub struct DatabaseTransaction;

#[invalidates("users:<id>")]
async fn rename_user(txn: &sea_orm::DatabaseTransaction, id: i32) -> Result<(), String> {
    let _ = (txn, id);
    Ok(())
}

mod sea_orm {
    pub use super::DatabaseTransaction;
}

fn main() {}
