use cache_runtime::cached;

struct UserId(i32);

#[cached(key = "users:<id>")]
async fn get_user(id: UserId) -> Option<i32> {
    Some(id.0)
}

fn main() {}
