//! R17 (overflowing durations), R19 (secrets in errors), R20 (the in-process store's weight),
//! R21 (poisoned markers; CPU starvation mistaken for a hung Redis), R22 (one timeout per
//! operation instead of per call).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cache_runtime::{Cache, Circuit, Fallback, Mode};
use integration_tests::{Proxy, RedisServer};

use crate::support::{self, Loader, user};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r17_the_longest_ttls_do_not_panic() {
    let server = RedisServer::start();
    for redis in [false, true] {
        let mut builder = Cache::builder()
            .max_ttl(Duration::MAX)
            .default_ttl(Duration::MAX)
            .fallback_ttl(Duration::MAX);
        if redis {
            builder = builder.redis_url(server.url());
        }
        let cache = builder.build().await.unwrap();
        let loader = Loader::default();
        for _ in 0..2 {
            cache
                .get_or_load("users:1", Some(Duration::MAX), loader.load(1))
                .await
                .unwrap();
        }
        cache.invalidate("users:*").await.unwrap();
        cache.invalidate("users:1").await.unwrap();
        assert_eq!(loader.runs(), 1);
    }
}

#[tokio::test]
async fn r19_a_bad_url_error_does_not_show_the_password() {
    let error = Cache::builder()
        .redis_url("redis://app:hunter2@localhost:notaport/0")
        .build()
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("REDIS_URL") && !error.contains("hunter2"),
        "{error}"
    );
}

/// The store's capacity counts per-entry overhead: 10,000 tiny entries in 1 MiB do not all stay
/// (by their bytes alone they would, and they cost several times that).
#[tokio::test]
async fn r20_the_capacity_counts_per_entry_overhead() {
    let cache = Cache::builder()
        .memory_capacity(1 << 20)
        .build()
        .await
        .unwrap();
    for i in 0..10_000 {
        cache.set(&format!("k:{i}"), &i, None).await;
    }
    let mut kept = 0;
    for i in 0..10_000 {
        if cache.get::<i32>(&format!("k:{i}")).await.is_some() {
            kept += 1;
        }
    }
    assert!(kept < 4_000, "{kept} entries kept in 1 MiB");
    assert!(kept > 1_000, "{kept} entries kept in 1 MiB");
}

/// A marker holding something else than an integer (a string, a hash) is replaced by the next
/// invalidation: Redis keeps serving (before, INCR failed and the replay failed forever).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r21_a_poisoned_marker_is_replaced() {
    let server = RedisServer::start();
    let cache = support::redis_only(&server).await;
    let read = async |name: &str| {
        let row = user(1, name);
        cache
            .get_or_load("users:1", None, async { Ok::<_, ()>(row) })
            .await
            .unwrap()
            .name
    };
    // Poisoned before an invalidation, then before a fill.
    server.cli(&["SET", "__inv:users:*", "garbage"]);
    server.cli(&["HSET", "__inv:{users:1}", "f", "v"]);
    cache.invalidate("users:*").await.unwrap();
    cache.invalidate("users:1").await.unwrap();
    assert_eq!(read("old").await, "old");
    assert_eq!(read("other").await, "old", "a hit");
    server.cli(&["SET", "__inv:users:*", "garbage again"]);
    assert_eq!(
        read("new").await,
        "new",
        "a poisoned marker reads as changed"
    );
    assert_eq!(
        read("other").await,
        "new",
        "and the fill that replaced it is served"
    );
    assert_eq!(cache.mode(), Mode::Redis);
    assert_eq!(cache.stats().pending_invalidations, 0);
    assert_eq!(cache.stats().totals.errors, 0, "{:?}", cache.stats());
}

/// A timeout that fires long after its deadline (this process was starved of CPU) does not
/// count against Redis; a timeout that fires on time does.
#[test]
fn r21_cpu_starvation_is_not_a_hung_redis() {
    let server = RedisServer::start();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let cache = Cache::builder()
            .redis_url(server.url())
            .op_timeout(Duration::from_millis(50))
            .failure_threshold(1)
            .fallback(Fallback::None)
            .build()
            .await
            .unwrap();
        server.pause();
        // The one thread is blocked while the read waits for Redis: its timer fires late.
        tokio::spawn(async { std::thread::sleep(Duration::from_millis(400)) });
        cache.get::<i32>("users:1").await;
        assert_eq!(
            cache.redis().unwrap().circuit(),
            Circuit::Closed,
            "not counted"
        );
        cache.get::<i32>("users:1").await;
        assert_eq!(cache.redis().unwrap().circuit(), Circuit::Open, "counted");
        server.resume();
    });
}

/// On a slow but alive Redis, the operations of one call (read, markers for the fill, store)
/// share one operation timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r22_one_timeout_per_call_not_per_operation() {
    let server = RedisServer::start();
    let proxy = Proxy::start(server.port());
    let op_timeout = Duration::from_millis(300);
    let cache = Cache::builder()
        .redis_url(proxy.url())
        .op_timeout(op_timeout)
        .failure_threshold(1_000)
        .fallback(Fallback::None)
        .build()
        .await
        .unwrap();
    proxy.set_delay(Duration::from_millis(250));
    let loads = Arc::new(AtomicUsize::new(0));
    let mut slowest = Duration::ZERO;
    for i in 0..3 {
        let started = Instant::now();
        let loads = loads.clone();
        let got = cache
            .get_or_load(&format!("users:{i}"), None, async move {
                loads.fetch_add(1, Ordering::SeqCst);
                Ok::<_, ()>(i)
            })
            .await;
        assert_eq!(got, Ok(i));
        slowest = slowest.max(started.elapsed());
    }
    assert_eq!(loads.load(Ordering::SeqCst), 3);
    assert!(
        slowest < op_timeout + Duration::from_millis(150),
        "a call spent {slowest:?} on Redis (each of its operations took 250 ms)"
    );
}
