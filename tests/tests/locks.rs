//! Distributed locks on real Redis, tried the way they could break:
//! - mutual exclusion under contention: 32 workers over 3 clients, each with its own
//!   connection, 1,000 acquisitions each, a non-atomic read-yield-write in the critical
//!   section: exactly 32,000 and no two critical sections overlapping (also on a cluster);
//! - a holder that stalls past its TTL: the next one gets the lock within TTL + 100 ms, the
//!   stale release and extend do not touch it, and its fencing token is the lower one;
//! - the watchdog extends, and says when the lock is lost; a dropped guard frees the lock;
//! - fencing tokens keep increasing after the fence key is lost (FLUSHALL);
//! - Redis down: no lock is granted, the error comes fast, and locking works again after.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cache_runtime::Cache;
use cache_runtime::lock::{LockError, Locks};
use integration_tests::{Deployment, Kind, Topology};

/// The operation timeout where timeouts are not the subject (a loaded 2-core machine).
const PATIENT: Duration = Duration::from_secs(2);

async fn caches(redis: &Topology, n: usize, op_timeout: Duration) -> Vec<Cache> {
    redis
        .caches(n, |b| {
            b.op_timeout(op_timeout)
                .connect_timeout(op_timeout.max(Duration::from_millis(500)))
        })
        .await
}

/// `workers` tasks spread over 3 clients, `each` acquisitions per task, a read-yield-write of
/// a shared counter inside: returns the counter and the number of overlapping sections.
async fn contend(redis: &Topology, workers: usize, each: u64) -> (u64, usize, Duration) {
    let locks: Vec<Locks> = caches(redis, 3, PATIENT)
        .await
        .iter()
        .map(Locks::for_cache)
        .collect();
    let counter = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..workers)
        .map(|w| {
            let (locks, counter) = (locks[w % 3].clone(), counter.clone());
            tokio::spawn(async move {
                let mut sections = Vec::with_capacity(each as usize);
                for _ in 0..each {
                    let guard = locks
                        .acquire("counter", Duration::from_secs(5), Duration::from_secs(60))
                        .await
                        .expect("the lock within a minute");
                    let entered = Instant::now();
                    let value = counter.load(Ordering::SeqCst);
                    tokio::task::yield_now().await;
                    counter.store(value + 1, Ordering::SeqCst);
                    let left = Instant::now();
                    guard.release().await.expect("still held");
                    sections.push((entered, left));
                }
                sections
            })
        })
        .collect();
    let mut sections = Vec::new();
    for task in tasks {
        sections.extend(task.await.expect("worker"));
    }
    let took = started.elapsed();
    sections.sort();
    let overlaps = sections.windows(2).filter(|w| w[1].0 < w[0].1).count();
    (counter.load(Ordering::SeqCst), overlaps, took)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_two_workers_on_three_clients_never_overlap() {
    let redis = Topology::start(Kind::Single);
    let (count, overlaps, took) = contend(&redis, 32, 1000).await;
    eprintln!("32 x 1000 acquisitions on one Redis in {took:?}");
    assert_eq!(count, 32_000);
    assert_eq!(overlaps, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_on_a_cluster_never_overlap() {
    let redis = Topology::start(Kind::Cluster);
    let (count, overlaps, took) = contend(&redis, 8, 100).await;
    eprintln!("8 x 100 acquisitions on the cluster in {took:?}");
    assert_eq!(count, 800);
    assert_eq!(overlaps, 0);
}

/// The holder stalls past its TTL. The next one acquires within TTL + 100 ms of the first
/// acquisition; the stale guard's release and extend leave the new holder's key alone; its
/// fencing token is lower, so a resource keeping the highest token refuses its write.
async fn stalled_holder(kind: Kind) {
    let redis = Topology::start(kind);
    let caches = caches(&redis, 2, PATIENT).await;
    let (a, b) = (Locks::for_cache(&caches[0]), Locks::for_cache(&caches[1]));
    let ttl = Duration::from_millis(300);
    let acquired = Instant::now();
    let stale = a.try_acquire("job", ttl).await.expect("the lock");
    let fresh = b
        .acquire("job", Duration::from_secs(10), Duration::from_secs(5))
        .await
        .expect("the lock after the TTL");
    let waited = acquired.elapsed();
    eprintln!("{kind:?}: the next holder got the lock {waited:?} after the first (TTL {ttl:?})");
    assert!(waited >= ttl - Duration::from_millis(5), "{waited:?}");
    assert!(waited <= ttl + Duration::from_millis(100), "{waited:?}");
    let stale_token = stale.fencing_token();
    assert!(fresh.fencing_token() > stale_token);
    assert!(!stale.is_held());

    assert_eq!(
        stale.extend(Duration::from_secs(10)).await,
        Err(LockError::Lost)
    );
    assert_eq!(stale.release().await, Err(LockError::Lost));
    assert_eq!(
        b.try_acquire("job", ttl).await.unwrap_err(),
        LockError::Busy
    );
    let ttl_left: i64 = redis.query(&["PTTL", "lock:{job}"]);
    assert!(
        ttl_left > 5_000,
        "the new holder's TTL was touched: {ttl_left}"
    );

    // The resource: refuses any token lower than the highest it has seen.
    let highest = AtomicU64::new(0);
    let write = |token: u64| highest.fetch_max(token, Ordering::SeqCst) <= token;
    assert!(write(fresh.fencing_token()));
    assert!(!write(stale_token), "the stale write went through");
    fresh.release().await.expect("released");
    assert!(a.try_acquire("job", ttl).await.is_ok());
}

#[tokio::test]
async fn a_stalled_holder_loses_the_lock_on_one_redis() {
    stalled_holder(Kind::Single).await;
}

#[tokio::test]
async fn a_stalled_holder_loses_the_lock_on_a_cluster() {
    stalled_holder(Kind::Cluster).await;
}

#[tokio::test]
async fn the_watchdog_extends_and_signals_loss() {
    let redis = Topology::start(Kind::Single);
    let caches = caches(&redis, 2, PATIENT).await;
    let locks = Locks::for_cache(&caches[0]);
    let ttl = Duration::from_millis(300);
    let mut guard = locks.try_acquire("watched", ttl).await.expect("lock");
    guard.watchdog();
    tokio::time::sleep(ttl * 3).await;
    assert!(guard.is_held());
    let pttl: i64 = redis.query(&["PTTL", "lock:{watched}"]);
    assert!(pttl > 0, "{pttl}");
    assert_eq!(
        Locks::for_cache(&caches[1])
            .try_acquire("watched", ttl)
            .await
            .unwrap_err(),
        LockError::Busy
    );

    // Someone else takes it over (an operator, or a holder after an expiry we did not see).
    let () = redis.query(&["SET", "lock:{watched}", "someone-else", "PX", "10000"]);
    let taken = Instant::now();
    tokio::time::timeout(Duration::from_secs(5), guard.lost())
        .await
        .expect("lost() resolves");
    eprintln!("the watchdog saw the loss after {:?}", taken.elapsed());
    assert!(taken.elapsed() <= ttl / 3 + Duration::from_millis(500));
    assert!(!guard.is_held());
    drop(guard);
    let value: String = redis.query(&["GET", "lock:{watched}"]);
    assert_eq!(
        value, "someone-else",
        "the lost guard's drop deleted another's key"
    );
}

#[tokio::test]
async fn a_dropped_guard_frees_the_lock() {
    let redis = Topology::start(Kind::Single);
    let caches = caches(&redis, 2, PATIENT).await;
    let (a, b) = (Locks::for_cache(&caches[0]), Locks::for_cache(&caches[1]));
    let guard = a
        .try_acquire("dropped", Duration::from_secs(30))
        .await
        .expect("lock");
    drop(guard);
    let started = Instant::now();
    let next = b
        .acquire("dropped", Duration::from_secs(30), Duration::from_secs(1))
        .await
        .expect("free within a second");
    eprintln!(
        "a dropped guard's lock was free after {:?}",
        started.elapsed()
    );
    next.release().await.expect("released");
}

#[tokio::test]
async fn fencing_tokens_keep_increasing_after_flushall() {
    let redis = Topology::start(Kind::Single);
    let caches = caches(&redis, 2, PATIENT).await;
    let locks: Vec<Locks> = caches.iter().map(Locks::for_cache).collect();
    let mut last = 0;
    for round in 0..20 {
        if round == 10 {
            let () = redis.query(&["FLUSHALL"]);
        }
        let guard = locks[round % 2]
            .try_acquire("fenced", Duration::from_secs(5))
            .await
            .expect("lock");
        assert!(
            guard.fencing_token() > last,
            "round {round}: {} after {last}",
            guard.fencing_token()
        );
        last = guard.fencing_token();
        guard.release().await.expect("released");
    }
}

#[tokio::test]
async fn with_redis_down_no_lock_is_granted() {
    let mut redis = Topology::start(Kind::Single);
    let caches = caches(&redis, 1, Duration::from_millis(200)).await;
    let locks = Locks::for_cache(&caches[0]);
    locks
        .try_acquire("x", Duration::from_secs(1))
        .await
        .expect("lock")
        .release()
        .await
        .expect("released");
    redis.kill();
    let mut slowest = Duration::ZERO;
    for _ in 0..20 {
        let started = Instant::now();
        let outcome = locks
            .acquire("x", Duration::from_secs(1), Duration::from_millis(100))
            .await;
        slowest = slowest.max(started.elapsed());
        assert!(
            matches!(outcome, Err(LockError::Unavailable)),
            "{outcome:?}"
        );
    }
    eprintln!("slowest refusal with Redis down: {slowest:?}");
    assert!(slowest < Duration::from_secs(3), "{slowest:?}");
    assert!(locks.stats().unavailable >= 20);
    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match locks.try_acquire("x", Duration::from_secs(1)).await {
            Ok(guard) => {
                guard.release().await.expect("released");
                break;
            }
            Err(LockError::Unavailable) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("after the restart: {e}"),
        }
    }
}
