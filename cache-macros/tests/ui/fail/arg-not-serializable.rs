use cache_runtime::cached;

struct Filter {
    name: String,
}

#[cached(key = "users:filter", ttl = 60)]
async fn filter_users(filter: &Filter) -> Vec<String> {
    vec![filter.name.clone()]
}

fn main() {}
