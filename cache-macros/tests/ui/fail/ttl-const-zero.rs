use cache_runtime::cached;

const TTL: u64 = 0;

#[cached(key = "users:<id>", ttl = TTL)]
async fn get_user(id: i32) -> Option<String> {
    Some(id.to_string())
}

fn main() {}
