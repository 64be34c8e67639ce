use cache_runtime::cached;

#[cached(key = "users:<id>", ttl = 60)]
async fn get_user(id: i32) -> Option<impl std::fmt::Display> {
    Some(id)
}

fn main() {}
