use cache_runtime::cached;

#[cached(key = "users:<id>", ttl = "60")]
async fn get_user(id: i32) -> Option<String> {
    Some(id.to_string())
}

fn main() {}
