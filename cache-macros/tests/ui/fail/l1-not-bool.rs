use cache_runtime::cached;

#[cached(key = "permissions:<id>", l1 = "no")]
async fn permissions(id: i32) -> Vec<String> {
    vec![id.to_string()]
}

fn main() {}
