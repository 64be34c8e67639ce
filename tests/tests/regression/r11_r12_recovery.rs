//! R11: a large replay went as one pipeline under the 50 ms operation timeout; on a slow link
//! it never fit, and the breaker never closed. R12: a recovery task lost with its runtime left
//! the `recovering` flag set, and Redis was never used again.

use std::time::Duration;

use cache_runtime::{Cache, Mode};
use integration_tests::{Proxy, RedisServer};

use crate::support::{self, until_mode};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r11_a_large_replay_fits_on_a_slow_link() {
    let server = RedisServer::start();
    let proxy = Proxy::start(server.port());
    let cache = Cache::builder()
        .redis_url(proxy.url())
        .op_timeout(Duration::from_millis(50))
        .connect_timeout(Duration::from_secs(3))
        .build()
        .await
        .unwrap();
    proxy.down();
    for i in 0..900 {
        cache.invalidate(&format!("users:{i}")).await.unwrap();
    }
    assert_eq!(cache.stats().pending_invalidations, 900);
    // Every request now takes longer than the operation timeout.
    proxy.set_delay(Duration::from_millis(80));
    proxy.up();
    let replayed = support::eventually(Duration::from_secs(30), async || {
        cache.get::<i32>("probe:1").await;
        cache.stats().pending_invalidations == 0
    })
    .await;
    assert!(replayed, "the replay never fit: {:?}", cache.stats());
    for i in [0, 450, 899] {
        let bumped: bool = server.query(&["EXISTS", &format!("__inv:{{users:{i}}}")]);
        assert!(bumped, "users:{i} was replayed");
    }
    proxy.set_delay(Duration::ZERO);
    until_mode(&cache, Mode::Redis).await;
}

/// A cache built in one runtime, whose recovery task (and connection) die with it; used from
/// another runtime afterwards, it must recover by itself.
#[test]
fn r12_a_recovery_lost_with_its_runtime_starts_again() {
    let mut server = RedisServer::start();
    let first = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let cache = first.block_on(async {
        let cache = support::redis_with_fallback(&server).await;
        server.kill();
        until_mode(&cache, Mode::Memory).await;
        cache
    });
    drop(first); // the recovery task is dropped mid-flight
    server.restart();
    let second = tokio::runtime::Runtime::new().unwrap();
    second.block_on(async {
        until_mode(&cache, Mode::Redis).await;
        let loader = support::Loader::default();
        cache
            .get_or_load("users:1", None, loader.load(1))
            .await
            .unwrap();
        let stored: bool = server.query(&["EXISTS", "users:1"]);
        assert!(stored, "caching in redis again");
    });
}
