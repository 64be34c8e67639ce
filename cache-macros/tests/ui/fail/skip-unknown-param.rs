use cache_runtime::cached;

#[cached(key = "users:<id>", skip(conn))]
async fn get_user(id: i32) -> Option<String> {
    Some(id.to_string())
}

fn main() {}
