//! `ttl`, `none_ttl`, `cache`, `crate`, and running without any cache.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use cache_runtime::{Cache, cached};

async fn cache() -> Cache {
    Cache::builder().build().await.unwrap()
}

fn loads(cache: &Cache) -> u64 {
    cache.stats().totals.loads
}

#[cached(key = "short:<id>", ttl = 1, cache = cache)]
async fn short_lived(cache: &Cache, id: u8) -> u8 {
    id
}

const LONG: u64 = 60 * 60;

#[cached(key = "long:<id>", ttl = LONG, cache = cache)]
async fn long_lived(cache: &Cache, id: u8) -> u8 {
    id
}

#[tokio::test]
async fn entries_expire_after_their_ttl() {
    let cache = cache().await;
    short_lived(&cache, 1).await;
    long_lived(&cache, 1).await;
    short_lived(&cache, 1).await;
    long_lived(&cache, 1).await;
    assert_eq!(loads(&cache), 2);

    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(cache.get::<u8>("short:1").await, None);
    assert_eq!(cache.get::<u8>("long:1").await, Some(1));
    short_lived(&cache, 1).await;
    long_lived(&cache, 1).await;
    assert_eq!(loads(&cache), 3);
}

#[cached(key = "lookups:<id>", ttl = 60, cache_none = true, none_ttl = 1, cache = cache)]
async fn lookup(cache: &Cache, id: u8) -> Option<u8> {
    (id > 0).then_some(id)
}

#[tokio::test]
async fn none_ttl_applies_to_negative_entries() {
    let cache = cache().await;
    lookup(&cache, 0).await;
    lookup(&cache, 1).await;
    assert_eq!(cache.get::<Option<u8>>("lookups:0").await, Some(None));

    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(cache.get::<Option<u8>>("lookups:0").await, None);
    assert_eq!(cache.get::<Option<u8>>("lookups:1").await, Some(Some(1)));
}

struct State {
    cache: Arc<Cache>,
}

#[cached(key = "owned:<id>", cache = state.cache)]
async fn from_state(state: &State, id: u8) -> u8 {
    id
}

#[tokio::test]
async fn cache_takes_anything_that_borrows_as_a_cache() {
    let state = State {
        cache: Arc::new(cache().await),
    };
    from_state(&state, 3).await;
    assert_eq!(state.cache.get::<u8>("owned:3").await, Some(3));
}

#[cached(key = "plain:<id>", skip(calls))]
async fn uses_the_ambient_cache(calls: &AtomicU32, id: u8) -> u8 {
    calls.fetch_add(1, Ordering::SeqCst);
    id
}

#[tokio::test]
async fn without_a_cache_the_function_runs_every_time() {
    let calls = AtomicU32::new(0);
    assert_eq!(uses_the_ambient_cache(&calls, 1).await, 1);
    assert_eq!(uses_the_ambient_cache(&calls, 1).await, 1);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_scoped_cache_serves_functions_without_cache() {
    let cache = cache().await;
    let calls = AtomicU32::new(0);
    cache_runtime::scope(cache.clone(), async {
        uses_the_ambient_cache(&calls, 2).await;
        uses_the_ambient_cache(&calls, 2).await;
    })
    .await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(cache.get::<u8>("plain:2").await, Some(2));
}

mod renamed {
    pub(crate) use cache_runtime::*;
}

#[renamed::cached(key = "renamed:<id>", cache = cache, crate = renamed)]
async fn through_renamed_crate(cache: &Cache, id: u8) -> u8 {
    id
}

#[tokio::test]
async fn crate_path_replaces_cache_runtime() {
    let cache = cache().await;
    through_renamed_crate(&cache, 4).await;
    assert_eq!(cache.get::<u8>("renamed:4").await, Some(4));
}

#[tokio::test]
async fn annotated_futures_are_send() {
    fn assert_send<T: Send>(_: &T) {}
    let cache = cache().await;
    let state = State {
        cache: Arc::new(cache.clone()),
    };
    let future = from_state(&state, 1);
    assert_send(&future);
    future.await;
    let future = long_lived(&cache, 1);
    assert_send(&future);
    future.await;
}
