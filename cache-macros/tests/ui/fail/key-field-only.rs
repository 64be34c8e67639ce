use cache_runtime::cached;

#[derive(serde::Serialize)]
struct Query {
    account: String,
    month: u32,
}

#[cached(key = "reports:<q.account>")]
async fn report(q: &Query) -> String {
    format!("{} {}", q.account, q.month)
}

fn main() {}
