use cache_runtime::cached;

#[cached(key = "users")]
struct Users;

// The item is still emitted: no cascade of "cannot find" errors.
fn main() {
    let _ = Users;
}
