use cache_runtime::cached;

#[cached(key = "reports:<account>", hash(month))]
async fn report(account: String, month: u32) -> String {
    format!("{account} {month}")
}

fn main() {}
