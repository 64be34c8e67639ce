//! Parameters named like the expansion's locals do not clash with them.
#![deny(warnings)]

use cache_runtime::{cached, invalidates};

#[cached(key = "things:<__cache_key>")]
async fn get(__cache_key: u32, __cache_hash: u32, __cache_cache: u32, __cache_shape: u32) -> Option<u32> {
    Some(__cache_key + __cache_hash + __cache_cache + __cache_shape)
}

#[invalidates("things:<__cache_guard>")]
async fn put(__cache_guard: u32, __cache_out: u32, __cache_shape: u32) -> Result<u32, String> {
    Ok(__cache_guard + __cache_out + __cache_shape)
}

fn main() {
    let _ = (get(1, 2, 3, 4), put(1, 2, 3));
}
