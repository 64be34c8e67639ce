use cache_runtime::cached;

struct User;

#[cached(key = "users:<id>")]
async fn get_user(id: i32) -> Result<User, String> {
    let _ = id;
    Ok(User)
}

fn main() {}
