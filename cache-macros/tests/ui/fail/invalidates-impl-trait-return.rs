use cache_runtime::invalidates;

#[invalidates("users:<id>")]
async fn rename_user(id: i32) -> Result<impl std::fmt::Display, String> {
    Ok(id)
}

fn main() {}
