//! Expansions are clean under strict lints.
#![deny(
    warnings,
    future_incompatible,
    nonstandard_style,
    rust_2018_idioms,
    rust_2024_compatibility,
    unused,
    unused_qualifications,
    unused_results,
    unused_lifetimes,
    single_use_lifetimes,
    trivial_casts,
    trivial_numeric_casts,
    unreachable_pub,
    missing_docs,
    missing_debug_implementations,
    let_underscore_drop,
    unsafe_code
)]

use cache_runtime::{Cache, cached, invalidates};

const TTL: u64 = 30;

/// Cached with every option.
#[cached(key = "users:<id>", ttl = TTL, cache_none = true, none_ttl = 5, cache = cache, skip(verbose))]
pub async fn get_user(cache: &Cache, id: i32, page: u32, verbose: bool) -> Result<Option<String>, String> {
    Ok(Some(format!("{id} {page} {verbose}")))
}

/// Hashed arguments only.
#[cached(key = "users:list", ttl = 60)]
pub async fn list_users(skip: u64, limit: u64) -> Vec<u64> {
    (skip..skip + limit).collect()
}

/// Invalidates on success.
#[invalidates("users:<id>", "users:list:*")]
pub async fn update_user(id: i32) -> Result<(), String> {
    let _ = id;
    Ok(())
}

/// Invalidates always.
#[invalidates("*")]
pub async fn reset() {}

/// A body that never returns.
#[cached(key = "unfinished")]
pub async fn unfinished() -> Option<u8> {
    unimplemented!()
}

/// An invalidation whose body never returns.
#[invalidates("unfinished")]
pub async fn never_invalidates() -> Result<u8, String> {
    unimplemented!()
}

/// A transaction stand-in.
#[derive(Debug)]
pub struct DatabaseTransaction;

/// A `Result` alias.
pub type ApiResult<T> = Result<T, String>;

/// Deferred, on an alias, with `hash(..)`.
#[invalidates("users:<id>", deferred, cache = cache)]
pub async fn update_in(cache: &Cache, txn: &DatabaseTransaction, id: i32) -> ApiResult<()> {
    let _ = (txn, id);
    Ok(())
}

/// A field placeholder and `hash(..)`.
#[cached(key = "users:<user.0>", hash(user), result = true)]
pub async fn by_field(user: (i32, String)) -> ApiResult<Option<String>> {
    Ok(Some(user.1))
}

fn main() {}
