use cache_runtime::cached;

type Maybe<T> = Option<T>;

#[cached(key = "users:<id>", result = true)]
async fn get_user(id: i32) -> Maybe<String> {
    Some(id.to_string())
}

fn main() {}
