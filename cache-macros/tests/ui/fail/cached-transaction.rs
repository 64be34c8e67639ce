use cache_runtime::cached;

pub struct DatabaseTransaction;

#[cached(key = "users:<id>")]
async fn get_user(txn: &DatabaseTransaction, id: i32) -> Option<String> {
    let _ = txn;
    Some(id.to_string())
}

fn main() {}
