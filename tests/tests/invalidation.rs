//! Invalidation: the read/write race, invalidations lost to an outage, and O(1) prefix
//! invalidation without KEYS or SCAN.

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cache_runtime::{Cache, Mode};
use integration_tests::{Kind, Topology, wait_until};
use support::{SlowLoad, User, user};

/// A reader loads the old row, the writer updates and invalidates, then the reader stores what
/// it loaded. No later read may return the old row.
async fn read_write_race(cache: &Cache) {
    let db = Arc::new(Mutex::new(user(1, "old")));
    let reader = SlowLoad::start(cache, &db).await;
    *db.lock().unwrap() = user(1, "new");
    cache.invalidate("users:*").await.unwrap();
    assert_eq!(
        reader.finish().await,
        "old",
        "the racing reader itself saw the old row"
    );

    assert_eq!(
        cache.get::<User>("users:1").await,
        None,
        "the late store must not be served"
    );
    let fresh = cache
        .get_or_load("users:1", None, async {
            Ok::<_, ()>(db.lock().unwrap().clone())
        })
        .await;
    assert_eq!(fresh.unwrap().name, "new");
    assert_eq!(cache.get::<User>("users:1").await.unwrap().name, "new");
}

async fn read_write_race_redis(kind: Kind) {
    let redis = Topology::start(kind);
    read_write_race(&support::redis_only(&redis).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_write_race_memory() {
    read_write_race(&support::memory().await).await;
}

async fn race_across_processes_sharing_redis(kind: Kind) {
    // Two caches on one Redis stand for two app instances: one's invalidation reaches the other.
    let redis = Topology::start(kind);
    let a = support::redis_only(&redis).await;
    let b = support::redis_only(&redis).await;
    a.set("users:7", &user(7, "old"), None).await;
    assert_eq!(b.get::<User>("users:7").await.unwrap().name, "old");
    b.invalidate("users:7").await.unwrap();
    assert_eq!(a.get::<User>("users:7").await, None);
}

/// An invalidation issued while Redis is down; Redis returns (persistent, so with the old entry
/// still stored). No read after recovery returns the old value.
async fn invalidation_during_outage_is_not_lost(kind: Kind) {
    let mut redis = Topology::start_persistent(kind);
    let cache = support::redis_with_fallback(&redis).await;
    let db = Arc::new(Mutex::new(user(1, "old")));
    let read = || async {
        let load = async { Ok::<_, ()>(db.lock().unwrap().clone()) };
        cache.get_or_load("users:1", None, load).await.unwrap().name
    };
    assert_eq!(read().await, "old");

    redis.kill();
    *db.lock().unwrap() = user(1, "new");
    cache.invalidate("users:*").await.unwrap();
    assert!(cache.stats().pending_invalidations >= 1);
    assert_eq!(read().await, "new");

    redis.restart();
    let old_entry: Option<String> = redis.query(&["GET", "users:1"]);
    assert!(
        old_entry.unwrap().contains("old"),
        "redis came back with the old entry stored"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline && cache.mode() != Mode::Redis {
        assert_eq!(read().await, "new");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(cache.mode(), Mode::Redis);
    assert_eq!(cache.stats().pending_invalidations, 0);
    for _ in 0..3 {
        assert_eq!(read().await, "new");
    }
}

/// More invalidations than the outage queue holds: recovery bumps the global epoch instead.
async fn outage_queue_overflow_bumps_the_epoch(kind: Kind) {
    let mut redis = Topology::start_persistent(kind);
    let cache = support::redis_with_fallback(&redis).await;
    cache.set("tasks:1", &"old".to_owned(), None).await;
    redis.kill();
    for i in 0..10_050 {
        cache.invalidate(&format!("users:{i}")).await.unwrap();
    }
    redis.restart();
    assert!(wait_until(Duration::from_secs(10), || cache.mode() == Mode::Redis).await);
    // tasks:1 was never named, but the overflow made every entry from before the outage stale.
    assert_eq!(cache.get::<String>("tasks:1").await, None);
}

async fn prefix_invalidation_is_constant_time_and_never_scans(kind: Kind) {
    const KEYS: usize = 100_000;
    let redis = Topology::start(kind);
    let cache = support::redis_only(&redis).await;
    // Load the invalidation script first (on a cluster, on the node of the marker below), so
    // that the counts below are one call's.
    cache.invalidate("users:*").await.unwrap();
    let value = user(1, "bulk");
    for chunk in (0..KEYS).collect::<Vec<_>>().chunks(1000) {
        let keys: Vec<String> = chunk.iter().map(|i| format!("users:{i}")).collect();
        let entries: Vec<(&str, &User)> = keys.iter().map(|k| (k.as_str(), &value)).collect();
        cache.set_many(&entries, None).await;
    }
    let dbsize: usize = redis.query(&["DBSIZE"]);
    assert!(dbsize >= KEYS);
    assert!(cache.get::<User>("users:99999").await.is_some());

    redis.reset_stats();
    let started = Instant::now();
    cache.invalidate("users:*").await.unwrap();
    let took = started.elapsed();
    let calls = |c: &str| redis.command_calls(c);
    let (evalsha, set, keys, scan, del) = (
        calls("evalsha"),
        calls("set"),
        calls("keys"),
        calls("scan"),
        calls("del"),
    );
    eprintln!(
        "invalidating users:* over {KEYS} keys took {took:?}: EVALSHA {evalsha} (SET {set} inside), KEYS {keys}, SCAN {scan}, DEL {del}"
    );
    assert_eq!((evalsha, set, keys, scan, del), (1, 1, 0, 0, 0));

    for i in [0, 1, 4_242, 50_000, 99_999] {
        assert_eq!(
            cache.get::<User>(&format!("users:{i}")).await,
            None,
            "users:{i} survived"
        );
    }
    assert_eq!(redis.command_calls("keys") + redis.command_calls("scan"), 0);
}

integration_tests::on_every_topology!(
    with_l1:
    read_write_race_redis,
    race_across_processes_sharing_redis,
    invalidation_during_outage_is_not_lost,
    outage_queue_overflow_bumps_the_epoch,
    prefix_invalidation_is_constant_time_and_never_scans,
);
