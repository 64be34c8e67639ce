use cache_runtime::cached;

#[cached(key = "users:<id>", cache_none = true)]
async fn get_user(id: i32) -> Result<String, String> {
    Ok(id.to_string())
}

fn main() {}
