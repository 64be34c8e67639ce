use cache_runtime::cached;

#[cached(key = "users:<id>")]
async fn get_user(id: i32) -> Option<String> {
    Some(format!("{id} {:?}", __cache_key))
}

fn main() {}
