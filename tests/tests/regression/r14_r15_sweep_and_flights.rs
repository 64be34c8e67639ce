//! R14: the administrative sweep ran under the 50 ms operation timeout and fed the breaker, so
//! clearing a big keyspace could trip the instance. R15: followers of a flight waited without
//! bound, so one hung load held every later caller of its key.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cache_runtime::{Cache, Mode};
use integration_tests::{Deployment, Kind, Topology};

use crate::support;

async fn r14_a_big_clear_neither_times_out_nor_trips_the_breaker(kind: Kind) {
    let redis = Topology::start(kind);
    let filler = support::redis_only(&redis).await;
    let value = "x".repeat(2048);
    for chunk in (0..5_000).collect::<Vec<_>>().chunks(500) {
        let keys: Vec<String> = chunk.iter().map(|i| format!("users:{i}")).collect();
        let entries: Vec<(&str, &String)> = keys.iter().map(|k| (k.as_str(), &value)).collect();
        filler.set_many(&entries, None).await;
    }
    // Connecting (on a cluster: every node and the slot map) has its own timeout; a loaded
    // machine may need more than the default second.
    let cache = redis
        .cache_builder()
        .op_timeout(Duration::from_millis(1))
        .connect_timeout(Duration::from_secs(10))
        .failure_threshold(1)
        .build()
        .await
        .unwrap();
    assert_eq!(cache.mode(), Mode::Redis, "{:?}", cache.stats());
    let deleted = cache.clear_matching("users:*").await.unwrap();
    assert_eq!(deleted, 5_000);
    let left: Vec<String> = redis.query(&["KEYS", "users:*"]);
    assert!(left.is_empty(), "{} left", left.len());
    assert_eq!(
        cache.redis().unwrap().circuit(),
        cache_runtime::Circuit::Closed
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r15_a_hung_load_holds_followers_only_until_the_flight_timeout() {
    let cache = Cache::builder()
        .flight_timeout(Duration::from_millis(200))
        .build()
        .await
        .unwrap();
    let runs = Arc::new(AtomicUsize::new(0));
    let hung = {
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
    let started = Instant::now();
    let follower = cache
        .get_or_load("users:1", None, async { Ok::<_, ()>(7) })
        .await;
    assert_eq!(follower, Ok(7));
    let waited = started.elapsed();
    assert!(waited < Duration::from_secs(3), "waited {waited:?}");
    // A later caller does not join the hung flight at all.
    let started = Instant::now();
    assert_eq!(
        cache
            .get_or_load("users:1", None, async { Ok::<_, ()>(8) })
            .await,
        Ok(8)
    );
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(cache.mode(), Mode::Memory);
    hung.abort();
}

integration_tests::on_every_topology!(
    with_l1:
    r14_a_big_clear_neither_times_out_nor_trips_the_breaker,);
