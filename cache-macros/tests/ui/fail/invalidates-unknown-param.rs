use cache_runtime::invalidates;

#[invalidates("users:<user_id>:tasks:*", "tasks:<id>")]
async fn delete_task(id: i32) -> Result<(), String> {
    let _ = id;
    Ok(())
}

fn main() {}
