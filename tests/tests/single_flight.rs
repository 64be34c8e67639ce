//! 1,000 concurrent calls on a cold key run the loader once.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use cache_runtime::{Cache, Fallback, Mode, PrefixStats};
use integration_tests::{Deployment, Kind, Topology};

async fn storm(cache: &Cache) -> usize {
    let runs = Arc::new(AtomicUsize::new(0));
    let calls: Vec<_> = (0..1000)
        .map(|_| {
            let (cache, runs) = (cache.clone(), runs.clone());
            tokio::spawn(async move {
                cache
                    .get_or_load("users:cold", None, async {
                        runs.fetch_add(1, Ordering::SeqCst);
                        // Long enough for all 1,000 calls to join on a loaded machine.
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        Ok::<_, ()>(support::user(1, "cold"))
                    })
                    .await
            })
        })
        .collect();
    for call in calls {
        assert_eq!(call.await.unwrap().unwrap(), support::user(1, "cold"));
    }
    runs.load(Ordering::SeqCst)
}

async fn one_load_for_a_miss_storm_on_redis(kind: Kind) {
    let redis = Topology::start(kind);
    let cache = support::redis_only(&redis).await;
    assert_eq!(storm(&cache).await, 1);
    assert!(cache.stats().totals.coalesced > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_load_for_a_miss_storm_in_memory() {
    assert_eq!(storm(&support::memory().await).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_load_for_a_miss_storm_without_any_store() {
    let cache = Cache::builder()
        .fallback(Fallback::None)
        .build()
        .await
        .unwrap();
    assert_eq!(storm(&cache).await, 1);
}

/// `CACHE_ENABLED=false`: the calls run as if unannotated, even with Redis configured.
async fn a_disabled_cache_runs_every_call(kind: Kind) {
    let redis = Topology::start(kind);
    let cache = redis.cache_builder().enabled(false).build().await.unwrap();
    assert_eq!(storm(&cache).await, 1000);
    assert_eq!(cache.mode(), Mode::Disabled);
    assert_eq!(cache.stats().totals, PrefixStats::default());
    assert_eq!(redis.command_calls("mget"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_leader_hands_over() {
    let cache = support::memory().await;
    let runs = Arc::new(AtomicUsize::new(0));
    let leader = {
        let (cache, runs) = (cache.clone(), runs.clone());
        tokio::spawn(async move {
            cache
                .get_or_load("users:1", None, async {
                    runs.fetch_add(1, Ordering::SeqCst);
                    std::future::pending::<Result<i32, ()>>().await
                })
                .await
        })
    };
    while runs.load(Ordering::SeqCst) == 0 {
        tokio::task::yield_now().await;
    }
    let follower = {
        let (cache, runs) = (cache.clone(), runs.clone());
        tokio::spawn(async move {
            cache
                .get_or_load("users:1", None, async {
                    runs.fetch_add(1, Ordering::SeqCst);
                    Ok::<_, ()>(5)
                })
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    leader.abort();
    assert_eq!(follower.await.unwrap(), Ok(5));
    assert_eq!(runs.load(Ordering::SeqCst), 2);
}

/// Concurrent misses on distinct keys do not wait for, or look again after, each other's
/// flights: each call reads once and counts one miss.
async fn misses_on_distinct_keys_read_once(kind: Kind) {
    let redis = Topology::start(kind);
    let cache = support::redis_only(&redis).await;
    // MGETs per read: one on one Redis; on a cluster, one per slot among the entry and its
    // markers.
    redis.reset_stats();
    let probe = support::redis_only(&redis).await;
    probe.get::<i32>("users:probe").await;
    let per_read = redis.command_calls("mget");
    redis.reset_stats();
    const TASKS: usize = 64;
    const PER_TASK: usize = 20;
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            let cache = cache.clone();
            tokio::spawn(async move {
                for i in 0..PER_TASK {
                    let id = i32::try_from(t * PER_TASK + i).unwrap();
                    let user = cache
                        .get_or_load(&format!("users:{id}"), None, async {
                            Ok::<_, ()>(support::user(id, "distinct"))
                        })
                        .await;
                    assert_eq!(user, Ok(support::user(id, "distinct")));
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let calls = (TASKS * PER_TASK) as u64;
    let totals = cache.stats().totals;
    assert_eq!((totals.misses, totals.loads), (calls, calls));
    // A re-read happens only when a flight on a key of the same stripe finished in between
    // (about 1.5% of these misses); with one global counter it was nearly every miss.
    let reads = redis.command_calls("mget") / per_read;
    assert!(
        reads < calls + calls / 5,
        "{reads} reads ({per_read} MGETs each) for {calls} misses"
    );
}

integration_tests::on_every_topology!(
    with_l1:
    one_load_for_a_miss_storm_on_redis,
    a_disabled_cache_runs_every_call,
    misses_on_distinct_keys_read_once,
);
