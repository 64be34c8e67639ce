//! `#[invalidates(.., deferred)]` inside `cache_runtime::defer_invalidations`: invalidations of
//! writes made in a caller's transaction run when the transaction's scope ends.

use std::time::{Duration, Instant};

use cache_runtime::{Cache, cached, defer_invalidations, invalidates};

/// Stands in for `sea_orm::DatabaseTransaction`: the macros match the name.
struct DatabaseTransaction;

async fn cache() -> Cache {
    Cache::builder().build().await.unwrap()
}

async fn is_cached(cache: &Cache, key: &str) -> bool {
    cache.get::<serde_json::Value>(key).await.is_some()
}

/// Lets spawned tasks run, then tells whether `key` is still cached.
async fn still_cached_later(cache: &Cache, key: &str) -> bool {
    tokio::time::sleep(Duration::from_millis(20)).await;
    is_cached(cache, key).await
}

#[cached(key = "users:<id>", cache = cache)]
async fn get_user(cache: &Cache, id: i32) -> Option<i32> {
    Some(id)
}

#[invalidates("users:<id>", cache = cache, deferred)]
async fn rename_user(
    cache: &Cache,
    txn: &DatabaseTransaction,
    id: i32,
    fail: bool,
) -> Result<(), String> {
    let _ = (txn, id);
    if fail {
        return Err("rejected".to_owned());
    }
    Ok(())
}

/// R7: the invalidation waits for the end of the scope (where the caller commits).
#[tokio::test]
async fn r7_deferred_invalidations_run_when_the_scope_ends() {
    let cache = cache().await;
    get_user(&cache, 1).await;
    get_user(&cache, 2).await;
    let txn = DatabaseTransaction;
    defer_invalidations(async {
        rename_user(&cache, &txn, 1, false).await.unwrap();
        assert!(
            still_cached_later(&cache, "users:1").await,
            "invalidated before the transaction's scope ended"
        );
    })
    .await;
    assert!(!is_cached(&cache, "users:1").await);
    assert!(is_cached(&cache, "users:2").await);
}

/// A nested transaction (a savepoint) commits with the outermost one.
#[tokio::test]
async fn nested_scopes_invalidate_when_the_outermost_ends() {
    let cache = cache().await;
    get_user(&cache, 1).await;
    let txn = DatabaseTransaction;
    defer_invalidations(async {
        defer_invalidations(rename_user(&cache, &txn, 1, false))
            .await
            .unwrap();
        assert!(still_cached_later(&cache, "users:1").await);
    })
    .await;
    assert!(!is_cached(&cache, "users:1").await);
}

#[tokio::test]
async fn a_deferred_err_invalidates_nothing() {
    let cache = cache().await;
    get_user(&cache, 1).await;
    let txn = DatabaseTransaction;
    defer_invalidations(async {
        rename_user(&cache, &txn, 1, true).await.unwrap_err();
    })
    .await;
    assert!(still_cached_later(&cache, "users:1").await);
}

#[tokio::test]
async fn outside_a_scope_a_deferred_invalidation_runs_at_once() {
    let cache = cache().await;
    get_user(&cache, 1).await;
    rename_user(&cache, &DatabaseTransaction, 1, false)
        .await
        .unwrap();
    assert!(!is_cached(&cache, "users:1").await);
}

#[tokio::test]
async fn scopes_return_their_future_output() {
    let cache = cache().await;
    let out = defer_invalidations(async {
        rename_user(&cache, &DatabaseTransaction, 1, false).await?;
        Ok::<_, String>(7)
    })
    .await;
    assert_eq!(out, Ok(7));
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

/// A scope dropped before its end (the request was cancelled) still invalidates what it
/// deferred.
#[tokio::test]
async fn a_dropped_scope_still_invalidates() {
    let cache = cache().await;
    get_user(&cache, 1).await;
    let txn = DatabaseTransaction;
    let scope = defer_invalidations(async {
        rename_user(&cache, &txn, 1, false).await.unwrap();
        std::future::pending::<()>().await;
    });
    assert!(
        tokio::time::timeout(Duration::from_millis(10), scope)
            .await
            .is_err()
    );
    assert!(becomes_uncached(&cache, "users:1").await);
}

#[invalidates("users:<id>", cache = cache, deferred)]
async fn write_then_hang(cache: &Cache, txn: &DatabaseTransaction, id: i32) -> Result<(), String> {
    let _ = (txn, id);
    std::future::pending::<()>().await;
    Ok(())
}

/// A deferred call cancelled inside the scope (while the caller goes on to commit) hands its
/// invalidation to the scope rather than running it early.
#[tokio::test]
async fn a_cancelled_deferred_call_still_waits_for_the_scope() {
    let cache = cache().await;
    get_user(&cache, 1).await;
    let txn = DatabaseTransaction;
    defer_invalidations(async {
        let call = write_then_hang(&cache, &txn, 1);
        assert!(
            tokio::time::timeout(Duration::from_millis(10), call)
                .await
                .is_err()
        );
        assert!(still_cached_later(&cache, "users:1").await);
    })
    .await;
    assert!(!is_cached(&cache, "users:1").await);
}

#[tokio::test]
async fn deferring_futures_are_send() {
    fn assert_send<T: Send>(_: &T) {}
    let cache = cache().await;
    let txn = DatabaseTransaction;
    let future = defer_invalidations(rename_user(&cache, &txn, 1, false));
    assert_send(&future);
    future.await.unwrap();
}
