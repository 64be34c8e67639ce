//! `crate = path` for a renamed dependency (or a re-export).
#![deny(warnings)]

mod my_cache {
    pub use cache_runtime::*;
}

use my_cache::{cached, invalidates};

#[cached(key = "users:<id>", ttl = 60, crate = my_cache)]
async fn get_user(id: i32) -> Option<String> {
    Some(id.to_string())
}

#[cached(key = "users:list", crate = crate::my_cache)]
async fn list_users(limit: u32) -> Vec<u32> {
    (0..limit).collect()
}

#[invalidates("users:*", crate = my_cache)]
async fn update_user(id: i32) -> Result<(), String> {
    let _ = id;
    Ok(())
}

fn main() {
    let _ = (get_user(1), list_users(2), update_user(3));
}
