use cache_runtime::cached;

#[cached(key = "users:<id>", tll = 60)]
async fn get_user(id: i32) -> Option<String> {
    Some(id.to_string())
}

fn main() {}
