use cache_runtime::cached;

// The function is emitted unchanged next to the error, so callers keep compiling and the
// only error is the attribute's.
#[cached(key = "users:<user_id>")]
async fn get_user(id: i32) -> Option<String> {
    Some(id.to_string())
}

async fn caller() -> Option<String> {
    let name: Option<String> = get_user(1).await;
    name
}

fn main() {
    let _ = caller();
}
