use cache_runtime::cached;

#[cached(key = "points")]
async fn distance((x, y): (i64, i64)) -> i64 {
    x.abs() + y.abs()
}

fn main() {}
