//! Parameters named like the expansion's locals do not clash with them.
#![deny(warnings)]

use cache_runtime::{cached, invalidates};

#[cached(key = "things:<__cache_key>")]
async fn get(__cache_key: u32, __cache_hash: u32, __cache_cache: u32) -> Option<u32> {
    Some(__cache_key + __cache_hash + __cache_cache)
}

#[invalidates("things:<__cache_patterns>")]
async fn put(__cache_patterns: u32, __cache_out: u32) -> Result<u32, String> {
    Ok(__cache_patterns + __cache_out)
}

fn main() {
    let _ = (get(1, 2, 3), put(1, 2));
}
