//! User items named like what the expansion uses do not change its meaning.
#![deny(warnings)]
#![allow(dead_code)]

use cache_runtime::{cached, invalidates};

mod core {}
struct Result;
struct Option;
struct Some;
struct Box;
struct Sized;
struct Cache;
trait KeyArg {}
#[allow(unused_macros)] // proves the expansion does not use it
macro_rules! assert {
    ($($t:tt)*) => {
        compile_error!("the user's `assert!` was used")
    };
}

const TTL: u64 = 30;

#[cached(key = "users:<id>", ttl = TTL, none_ttl = 5, cache_none = true)]
async fn get_user(id: i32) -> std::result::Result<std::option::Option<String>, String> {
    std::result::Result::Ok(std::option::Option::Some(id.to_string()))
}

#[invalidates("users:<id>", "users:*")]
async fn update_user(id: i32) -> std::result::Result<(), String> {
    let _ = id;
    std::result::Result::Ok(())
}

fn main() {}
