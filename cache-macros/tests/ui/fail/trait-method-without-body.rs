use cache_runtime::cached;

trait Users {
    #[cached(key = "users:<id>")]
    async fn get(&self, id: i32) -> Option<String>;
}

fn main() {}
