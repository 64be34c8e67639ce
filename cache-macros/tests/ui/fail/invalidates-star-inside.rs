use cache_runtime::invalidates;

#[invalidates("us*rs:1")]
async fn update_user(id: i32) -> Result<(), String> {
    let _ = id;
    Ok(())
}

fn main() {}
