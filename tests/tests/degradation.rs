//! Disabled, absent, killed and paused Redis: calls always return the loader's value, never wait
//! longer than the operation timeout, cost about nothing once the breaker is open, and caching
//! resumes when Redis returns.

mod support;

use std::time::{Duration, Instant};

use cache_runtime::{Cache, Mode};
use integration_tests::{Deployment, Kind, Topology, wait_until};
use support::{Loader, OP_TIMEOUT};

/// Scheduling slack on a loaded 2-core machine; far below a reconnect or a default response timeout.
const MARGIN: Duration = Duration::from_millis(150);

async fn wait_for_redis(cache: &Cache) {
    assert!(
        wait_until(Duration::from_secs(10), || cache.mode() == Mode::Redis).await,
        "caching did not resume: {:?}",
        cache.stats()
    );
}

async fn disabled_mode_opens_no_connection(kind: Kind) {
    let redis = Topology::start(kind);
    let before = redis.info_stat("total_connections_received");
    let cache = redis
        .cache_builder()
        .redis_enabled(false)
        .build()
        .await
        .unwrap();
    let loader = Loader::default();
    for _ in 0..3 {
        assert_eq!(
            cache.get_or_load("users:1", None, loader.load(7)).await,
            Ok(7)
        );
    }
    cache.invalidate("users:*").await.unwrap();
    cache.clear().await;
    let _ = cache.health().await;
    assert_eq!(cache.mode(), Mode::Memory);
    assert_eq!(loader.runs(), 1, "the in-process fallback still caches");
    // The connections this very INFO query opens, one per node.
    assert_eq!(
        redis.info_stat("total_connections_received"),
        before + redis.node_count()
    );

    // Control: an enabled cache on the same redis does connect, so the check above can fail.
    let enabled = support::redis_only(&redis).await;
    enabled.get::<i32>("users:1").await;
    assert!(redis.info_stat("total_connections_received") >= before + 3);
}

async fn redis_absent_at_start_up(kind: Kind) {
    let mut redis = Topology::start(kind);
    redis.kill();
    let started = Instant::now();
    let cache = support::redis_with_fallback(&redis).await;
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "start-up blocked {:?}",
        started.elapsed()
    );
    assert_eq!(cache.mode(), Mode::Memory);
    assert!(cache.stats().degraded);
    let loader = Loader::default();
    for i in 0..5 {
        assert_eq!(
            cache
                .get_or_load(&format!("users:{i}"), None, loader.load(i))
                .await,
            Ok(i)
        );
    }
    redis.restart();
    wait_for_redis(&cache).await;
    assert_eq!(
        cache.get_or_load("users:100", None, loader.load(100)).await,
        Ok(100)
    );
    let stored: bool = redis.query(&["EXISTS", "users:100"]);
    assert!(stored, "caching resumed in redis: {:?}", cache.stats());
    assert!(!cache.stats().degraded);
}

async fn redis_killed_mid_run(kind: Kind) {
    let mut redis = Topology::start(kind);
    let cache = support::redis_with_fallback(&redis).await;
    let loader = Loader::default();
    assert_eq!(
        cache.get_or_load("users:1", None, loader.load(1)).await,
        Ok(1)
    );
    assert_eq!(
        cache.get_or_load("users:1", None, loader.load(1)).await,
        Ok(1)
    );
    assert_eq!(loader.runs(), 1);

    redis.kill();
    // With the L1 on, it serves until it sees the connection go (a few ms): nothing was
    // invalidated meanwhile.
    assert!(
        wait_until(Duration::from_secs(5), || cache
            .l1_stats()
            .is_none_or(|s| !s.live))
        .await
    );
    for round in 0..20 {
        let started = Instant::now();
        assert_eq!(
            cache.get_or_load("users:1", None, loader.load(1)).await,
            Ok(1)
        );
        assert!(
            started.elapsed() < OP_TIMEOUT + MARGIN,
            "round {round} took {:?}",
            started.elapsed()
        );
    }
    assert_eq!(cache.mode(), Mode::Memory);

    redis.restart();
    wait_for_redis(&cache).await;
    let hits = cache.stats().totals.hits;
    assert_eq!(
        cache.get_or_load("users:2", None, loader.load(2)).await,
        Ok(2)
    );
    assert_eq!(
        cache.get_or_load("users:2", None, loader.load(2)).await,
        Ok(2)
    );
    assert_eq!(cache.stats().totals.hits, hits + 1, "hits resume");
    let stored: bool = redis.query(&["EXISTS", "users:2"]);
    assert!(stored);
}

async fn redis_paused_costs_one_timeout_then_nothing(kind: Kind) {
    let redis = Topology::start(kind);
    let cache = support::redis_with_fallback(&redis).await;
    let loader = Loader::default();
    assert_eq!(
        cache.get_or_load("users:0", None, loader.load(0)).await,
        Ok(0)
    );

    redis.pause();
    let mut slowest = Duration::ZERO;
    let mut open_costs = Vec::new();
    for i in 1..=200 {
        let started = Instant::now();
        assert_eq!(
            cache
                .get_or_load(&format!("users:{i}"), None, loader.load(i))
                .await,
            Ok(i)
        );
        let took = started.elapsed();
        slowest = slowest.max(took);
        if cache.mode() == Mode::Memory && i > 10 {
            open_costs.push(took);
        }
    }
    redis.resume();
    assert!(slowest < OP_TIMEOUT + MARGIN, "a call waited {slowest:?}");
    assert!(
        open_costs.len() > 150,
        "the breaker opened: {:?}",
        cache.stats()
    );
    open_costs.sort();
    let median = open_costs[open_costs.len() / 2];
    eprintln!("paused redis: slowest call {slowest:?}; median with the circuit open {median:?}");
    assert!(
        median < Duration::from_millis(1),
        "open-circuit call costs {median:?}"
    );

    wait_for_redis(&cache).await;
    assert_eq!(
        cache.get_or_load("users:500", None, loader.load(500)).await,
        Ok(500)
    );
    let stored: bool = redis.query(&["EXISTS", "users:500"]);
    assert!(stored, "caching resumed");
}

async fn paused_redis_under_concurrency_never_blocks_past_the_timeout(kind: Kind) {
    let redis = Topology::start(kind);
    let cache = support::redis_with_fallback(&redis).await;
    redis.pause();
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let cache = cache.clone();
            tokio::spawn(async move {
                let started = Instant::now();
                let v = cache
                    .get_or_load(&format!("users:{i}"), None, async { Ok::<_, ()>(i) })
                    .await;
                (v, started.elapsed())
            })
        })
        .collect();
    let mut slowest = Duration::ZERO;
    for (i, t) in tasks.into_iter().enumerate() {
        let (v, took) = t.await.unwrap();
        assert_eq!(v, Ok(i));
        slowest = slowest.max(took);
    }
    redis.resume();
    assert!(slowest < OP_TIMEOUT + MARGIN, "a call waited {slowest:?}");
}

integration_tests::on_every_topology!(
    with_l1:
    disabled_mode_opens_no_connection,
    redis_absent_at_start_up,
    redis_killed_mid_run,
    redis_paused_costs_one_timeout_then_nothing,
    paused_redis_under_concurrency_never_blocks_past_the_timeout,
);
