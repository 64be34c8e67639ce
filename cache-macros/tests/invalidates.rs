//! `#[invalidates]`: exact keys, prefixes with placeholders, several patterns, only on success
//! (by type: aliases too), and after a cancellation.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use cache_runtime::{Cache, cached, invalidates};

async fn cache() -> Cache {
    Cache::builder().build().await.unwrap()
}

fn loads(cache: &Cache) -> u64 {
    cache.stats().totals.loads
}

#[cached(key = "users:<id>", cache = cache)]
async fn get_user(cache: &Cache, id: i32) -> Option<i32> {
    Some(id)
}

#[cached(key = "users:<user_id>:tasks:<id>", cache = cache)]
async fn get_task(cache: &Cache, user_id: i32, id: i32) -> Option<(i32, i32)> {
    Some((user_id, id))
}

#[cached(key = "users:list", cache = cache)]
async fn list_users(cache: &Cache, limit: u32) -> Vec<u32> {
    (0..limit).collect()
}

async fn is_cached(cache: &Cache, key: &str) -> bool {
    cache.get::<serde_json::Value>(key).await.is_some()
}

#[invalidates("users:<id>", cache = cache)]
async fn rename_user(cache: &Cache, id: i32, name: String) -> Result<String, String> {
    let _ = id;
    Ok(name)
}

#[tokio::test]
async fn exact_key() {
    let cache = cache().await;
    get_user(&cache, 1).await;
    get_user(&cache, 2).await;
    get_task(&cache, 1, 9).await;
    rename_user(&cache, 1, "ann".to_owned()).await.unwrap();
    assert!(!is_cached(&cache, "users:1").await);
    assert!(is_cached(&cache, "users:2").await);
    assert!(is_cached(&cache, "users:1:tasks:9").await);
    get_user(&cache, 1).await;
    assert_eq!(loads(&cache), 4);
}

#[invalidates("users:<user_id>:tasks:*", cache = cache)]
async fn clear_tasks(cache: &Cache, user_id: i32) -> Result<(), String> {
    let _ = user_id;
    Ok(())
}

#[tokio::test]
async fn prefix_with_placeholder() {
    let cache = cache().await;
    get_task(&cache, 1, 1).await;
    get_task(&cache, 1, 2).await;
    get_task(&cache, 2, 1).await;
    get_user(&cache, 1).await;
    clear_tasks(&cache, 1).await.unwrap();
    assert!(!is_cached(&cache, "users:1:tasks:1").await);
    assert!(!is_cached(&cache, "users:1:tasks:2").await);
    assert!(is_cached(&cache, "users:2:tasks:1").await);
    assert!(is_cached(&cache, "users:1").await);
}

#[invalidates("users:<user_id>", "users:<user_id>:tasks:<id>", "users:list:*", cache = cache)]
async fn delete_task(cache: &Cache, user_id: i32, id: i32) -> Result<(), String> {
    let _ = (user_id, id);
    Ok(())
}

#[tokio::test]
async fn several_patterns() {
    let cache = cache().await;
    get_user(&cache, 1).await;
    get_task(&cache, 1, 1).await;
    get_task(&cache, 1, 2).await;
    list_users(&cache, 3).await;
    list_users(&cache, 4).await;
    delete_task(&cache, 1, 1).await.unwrap();
    assert!(!is_cached(&cache, "users:1").await);
    assert!(!is_cached(&cache, "users:1:tasks:1").await);
    assert!(is_cached(&cache, "users:1:tasks:2").await);
    let before = loads(&cache);
    list_users(&cache, 3).await;
    list_users(&cache, 4).await;
    assert_eq!(loads(&cache), before + 2);
}

#[invalidates("users:*", cache = cache)]
async fn failing_update(cache: &Cache, fail: bool) -> Result<(), String> {
    if fail {
        return Err("rejected".to_owned());
    }
    Ok(())
}

#[tokio::test]
async fn an_err_invalidates_nothing() {
    let cache = cache().await;
    get_user(&cache, 1).await;
    assert_eq!(
        failing_update(&cache, true).await,
        Err("rejected".to_owned())
    );
    assert!(is_cached(&cache, "users:1").await);
    failing_update(&cache, false).await.unwrap();
    assert!(!is_cached(&cache, "users:1").await);
}

#[invalidates("*", cache = cache)]
async fn reset(cache: &Cache) {}

#[tokio::test]
async fn functions_without_result_always_invalidate() {
    let cache = cache().await;
    get_user(&cache, 1).await;
    get_task(&cache, 1, 1).await;
    reset(&cache).await;
    assert!(!is_cached(&cache, "users:1").await);
    assert!(!is_cached(&cache, "users:1:tasks:1").await);
}

#[derive(serde::Serialize)]
struct Patch {
    id: i32,
    name: String,
}

/// The body consumes `patch`; the pattern was rendered before it ran.
#[invalidates("users:<patch.id>", cache = cache)]
async fn apply(cache: &Cache, patch: Patch) -> Result<String, String> {
    let Patch { name, .. } = patch;
    Ok(name)
}

#[tokio::test]
async fn patterns_are_rendered_before_the_body_moves_arguments() {
    let cache = cache().await;
    get_user(&cache, 5).await;
    let patch = Patch {
        id: 5,
        name: "eve".to_owned(),
    };
    assert_eq!(apply(&cache, patch).await.as_deref(), Ok("eve"));
    assert!(!is_cached(&cache, "users:5").await);
}

#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
enum ApiError {
    Rejected,
}

type ApiResult<T> = Result<T, ApiError>;

#[invalidates("users:*", cache = cache)]
async fn failing_alias(cache: &Cache, fail: bool) -> ApiResult<()> {
    if fail {
        return Err(ApiError::Rejected);
    }
    Ok(())
}

/// R16: "only on `Ok`" is decided by the type, so an alias of `Result` counts.
#[tokio::test]
async fn r16_an_err_of_a_result_alias_invalidates_nothing() {
    let cache = cache().await;
    get_user(&cache, 1).await;
    assert_eq!(failing_alias(&cache, true).await, Err(ApiError::Rejected));
    assert!(is_cached(&cache, "users:1").await);
    failing_alias(&cache, false).await.unwrap();
    assert!(!is_cached(&cache, "users:1").await);
}

#[invalidates("users:*", cache = cache, result = false)]
async fn failing_always_invalidates(cache: &Cache) -> Result<(), String> {
    Err("rejected".to_owned())
}

#[tokio::test]
async fn result_false_invalidates_on_err_too() {
    let cache = cache().await;
    get_user(&cache, 1).await;
    failing_always_invalidates(&cache).await.unwrap_err();
    assert!(!is_cached(&cache, "users:1").await);
}

/// A write that commits, then hangs (a slow network after `COMMIT`, say).
#[invalidates("users:<id>", cache = cache)]
async fn commit_then_hang(cache: &Cache, committed: &AtomicBool, id: i32) -> Result<(), String> {
    let _ = id;
    committed.store(true, Ordering::SeqCst);
    std::future::pending::<()>().await;
    Ok(())
}

/// Polls until `key` is no longer cached; false if it still is after a second.
async fn becomes_uncached(cache: &Cache, key: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(1);
    while is_cached(cache, key).await {
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    true
}

/// R5: a call dropped after its write committed (a client disconnect, a timeout) still
/// invalidates.
#[tokio::test]
async fn r5_a_call_cancelled_after_its_write_still_invalidates() {
    let cache = cache().await;
    get_user(&cache, 1).await;
    get_user(&cache, 2).await;
    let committed = AtomicBool::new(false);
    let call = commit_then_hang(&cache, &committed, 1);
    let timed_out = tokio::time::timeout(Duration::from_millis(10), call).await;
    assert!(timed_out.is_err());
    assert!(committed.load(Ordering::SeqCst));
    assert!(
        becomes_uncached(&cache, "users:1").await,
        "the cancelled call's invalidation was lost"
    );
    assert!(is_cached(&cache, "users:2").await);
}

#[tokio::test]
async fn a_call_dropped_before_it_runs_invalidates_nothing() {
    let cache = cache().await;
    get_user(&cache, 1).await;
    let committed = AtomicBool::new(false);
    drop(commit_then_hang(&cache, &committed, 1));
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(is_cached(&cache, "users:1").await);
}

/// `Cell` is `Send` but not `Sync`: a borrow of the result held across an await would make
/// the future `!Send`.
#[invalidates("users:<id>", cache = cache)]
async fn returns_a_cell(cache: &Cache, id: i32) -> Result<std::cell::Cell<i32>, String> {
    Ok(std::cell::Cell::new(id))
}

#[tokio::test]
async fn invalidating_futures_are_send() {
    fn assert_send<T: Send>(_: &T) {}
    let cache = cache().await;
    let future = rename_user(&cache, 1, "ann".to_owned());
    assert_send(&future);
    future.await.unwrap();
    let future = returns_a_cell(&cache, 1);
    assert_send(&future);
    assert_eq!(future.await.unwrap().get(), 1);
}
