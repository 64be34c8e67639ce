use cache_runtime::cached;

// Independent errors are reported together.
#[cached(key = "users:<user_id>", skip(conn))]
fn get_user(id: i32) -> Option<String> {
    Some(id.to_string())
}

fn main() {}
