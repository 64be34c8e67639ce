use cache_runtime::invalidates;

#[invalidates("users:*", when = ok)]
async fn update_user(id: i32) -> Result<(), String> {
    let _ = id;
    Ok(())
}

fn main() {}
