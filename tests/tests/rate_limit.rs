//! Rate limits on real Redis, tried the way they could break:
//! - exactness: many tasks on several instances (each its own client) race for one partition,
//!   on one Redis and on a cluster, for every algorithm: never one unit more than the limit;
//! - window boundaries: what a burst straddling a second gets through, per algorithm;
//! - keys: after soaks interrupted by restarts (data kept), every key still has a TTL of at
//!   most its window, and no key shows a client's IP;
//! - outages: a killed or frozen Redis under 3x the limit, for every failure mode: local
//!   limits per instance, open, closed (an error), each check bounded, counters that say so,
//!   and Redis decides again once it is back;
//! - the axum layer: headers on every response, 429 and `Retry-After` that a client can rely
//!   on, 503 when closed, and a forged `X-Forwarded-For` that buys nothing;
//! - foreign data: a key of another type or garbage content is a fresh partition, not an error.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Request, StatusCode};
use axum::routing::get;
use cache_runtime::Cache;
use cache_runtime::axum::rate_limit::{RateLimitLayer, TrustedProxies};
use cache_runtime::rate_limit::{
    Algorithm, Decision, OnFailure, Policy, RateLimitError, RateLimiter, Source,
};
use integration_tests::{Deployment, Kind, Topology, wait_until};
use tower::ServiceExt as _;

const ALGORITHMS: [Algorithm; 3] = [
    Algorithm::FixedWindow,
    Algorithm::SlidingWindow,
    Algorithm::TokenBucket,
];

/// The operation timeout where timeouts are not the subject: 50 concurrent checks on a loaded
/// 2-core machine must not trip the breaker (which would hand decisions to local limiters).
const PATIENT: Duration = Duration::from_secs(2);
/// The operation timeout of the outage tests.
const OP_TIMEOUT: Duration = Duration::from_millis(200);
/// A generous bound on any one check while Redis is down (a sanity bound, not a benchmark).
const CHECK_BOUND: Duration = Duration::from_secs(3);
/// How long a cache may take to use Redis again after it is back.
const RECOVERY: Duration = Duration::from_secs(20);

const SECOND_US: u64 = 1_000_000;

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

fn policy(name: &str, algorithm: Algorithm, limit: &str) -> Policy {
    Policy::new(name, algorithm, limit.parse().expect("a limit")).expect("a policy")
}

/// `n` app instances on `redis`, each with its own client.
async fn caches(redis: &Topology, n: usize, op_timeout: Duration) -> Vec<Cache> {
    redis
        .caches(n, |b| {
            b.op_timeout(op_timeout)
                .connect_timeout(op_timeout.max(Duration::from_millis(500)))
        })
        .await
}

/// One limiter of `policy` per instance (all sharing the policy's name, hence its keys).
fn limiters(caches: &[Cache], policy: &Policy) -> Vec<RateLimiter> {
    caches
        .iter()
        .map(|c| RateLimiter::for_cache(c, policy.clone()))
        .collect()
}

/// Redis' clock in µs (on a cluster, the first node's: every node runs on this machine).
fn redis_time_us(redis: &Topology) -> u64 {
    let (secs, micros): (u64, u64) = match redis {
        Topology::Single(server) => server.query(&["TIME"]),
        Topology::Cluster(cluster) => cluster.nodes()[0].query(&["TIME"]),
    };
    secs * SECOND_US + micros
}

/// Sleeps until Redis' clock is `offset_us` into a (later) second.
async fn sleep_until_into_second(redis: &Topology, offset_us: u64) {
    let now = redis_time_us(redis);
    let mut target = now - now % SECOND_US + offset_us;
    if target <= now {
        target += SECOND_US;
    }
    tokio::time::sleep(Duration::from_micros(target - now)).await;
}

/// Sleeps into the next aligned window of `window_us` when less than `margin_us` is left of
/// the current one.
async fn stay_inside_window(redis: &Topology, window_us: u64, margin_us: u64) {
    let now = redis_time_us(redis);
    let left = window_us - now % window_us;
    if left < margin_us {
        tokio::time::sleep(Duration::from_micros(left + 20_000)).await;
    }
}

/// Waits until every limiter decides on Redis again (its client's breaker closed).
async fn wait_for_redis(limiters: &[RateLimiter]) {
    for limiter in limiters {
        assert!(
            wait_until(RECOVERY, || limiter.mode() == "redis").await,
            "the limiter did not return to Redis: {:?}",
            limiter.stats()
        );
    }
}

/// After a restart the client may not have noticed its connection died: checks `probe`
/// (a limiter on the same client) until Redis decides one; the failed ones open the
/// breaker, whose recovery then reconnects.
async fn probe_until_redis_decides(probe: &RateLimiter) {
    let deadline = Instant::now() + RECOVERY;
    while probe.check("probe").await.expect("a decision").source != Source::Redis {
        assert!(
            Instant::now() < deadline,
            "Redis never decided: {:?}",
            probe.stats()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `(keys, expires)` of db0 from `INFO keyspace` (zeros when the database is empty).
fn keyspace(redis: &Topology) -> (u64, u64) {
    let Topology::Single(server) = redis else {
        panic!("keyspace is read on one server");
    };
    let Some(db0) = server.info_field("keyspace", "db0") else {
        return (0, 0);
    };
    let field = |name: &str| -> u64 {
        db0.split(',')
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in db0:{db0}"))
    };
    (field("keys"), field("expires"))
}

fn rate_limit_keys(redis: &Topology) -> Vec<String> {
    keys_like(redis, "*ratelimit*")
}

fn keys_like(redis: &Topology, pattern: &str) -> Vec<String> {
    redis.query(&["KEYS", pattern])
}

/// What a batch of checks decided.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Tally {
    allowed: u64,
    refused: u64,
    /// Allowed by the script on Redis.
    allowed_by_redis: u64,
    /// Decided (either way) by Redis.
    by_redis: u64,
}

impl Tally {
    fn count(&mut self, d: &Decision) {
        let redis = d.source == Source::Redis;
        if d.allowed {
            self.allowed += 1;
            self.allowed_by_redis += u64::from(redis);
        } else {
            self.refused += 1;
        }
        self.by_redis += u64::from(redis);
    }

    fn merge(&mut self, other: Self) {
        self.allowed += other.allowed;
        self.refused += other.refused;
        self.allowed_by_redis += other.allowed_by_redis;
        self.by_redis += other.by_redis;
    }

    fn total(&self) -> u64 {
        self.allowed + self.refused
    }
}

/// `tasks` concurrent tasks, spread over `limiters`, each making `per_task` checks of
/// `partition`.
async fn concurrent_round(
    limiters: &[RateLimiter],
    partition: &str,
    tasks: usize,
    per_task: usize,
) -> Tally {
    let handles: Vec<_> = (0..tasks)
        .map(|i| {
            let limiter = limiters[i % limiters.len()].clone();
            let partition = partition.to_owned();
            tokio::spawn(async move {
                let mut tally = Tally::default();
                for _ in 0..per_task {
                    let d = limiter.check(&partition).await.expect("a decision");
                    tally.count(&d);
                }
                tally
            })
        })
        .collect();
    let mut total = Tally::default();
    for handle in handles {
        total.merge(handle.await.expect("a checking task"));
    }
    total
}

// ---------------------------------------------------------------------------------------
// 1. Exactness under concurrency, on one Redis and on a cluster
// ---------------------------------------------------------------------------------------

const ROUNDS: usize = 20;
const TASKS: usize = 50;
const CHECKS_PER_TASK: usize = 20;
const EXACT_WINDOW_US: u64 = 10 * SECOND_US;
/// The token bucket's refill interval for `100/10s`.
const EXACT_INTERVAL_US: u64 = EXACT_WINDOW_US / 100;

async fn exactness(kind: Kind, algorithm: Algorithm) {
    let redis = Topology::start(kind);
    let caches = caches(&redis, 3, PATIENT).await;
    let limiters = limiters(&caches, &policy("exact", algorithm, "100/10s"));
    let mut allowed_per_round = Vec::with_capacity(ROUNDS);
    let mut spans_ms = Vec::with_capacity(ROUNDS);
    let mut total = Tally::default();
    for round in 0..ROUNDS {
        if algorithm == Algorithm::FixedWindow {
            stay_inside_window(&redis, EXACT_WINDOW_US, 2 * SECOND_US).await;
        }
        let partition = format!("round-{round}");
        let before = redis_time_us(&redis);
        let tally = concurrent_round(&limiters, &partition, TASKS, CHECKS_PER_TASK).await;
        let after = redis_time_us(&redis);
        let span = after - before;
        let what = format!("{kind:?} {algorithm:?} round {round} ({span} µs): {tally:?}");
        assert_eq!(tally.total(), (TASKS * CHECKS_PER_TASK) as u64, "{what}");
        assert_eq!(
            tally.by_redis,
            tally.total(),
            "every decision by Redis: {what}"
        );
        assert_eq!(tally.allowed_by_redis, tally.allowed, "{what}");
        match algorithm {
            Algorithm::FixedWindow => {
                assert_eq!(
                    before / EXACT_WINDOW_US,
                    after / EXACT_WINDOW_US,
                    "the round straddled a window: {what}"
                );
                assert_eq!(tally.allowed, 100, "{what}");
            }
            Algorithm::SlidingWindow => assert_eq!(tally.allowed, 100, "{what}"),
            _ => {
                // GCRA: a full bucket of 100, plus one unit per interval the round lasted
                // (exactly 100 when the round took less than one interval).
                let most = 100 + span / EXACT_INTERVAL_US;
                assert!(
                    (100..=most).contains(&tally.allowed),
                    "expected 100..={most}: {what}"
                );
            }
        }
        allowed_per_round.push(tally.allowed);
        spans_ms.push(span / 1_000);
        total.merge(tally);
    }
    let (allowed, limited, local) = limiters.iter().fold((0, 0, 0), |(a, l, o), limiter| {
        let s = limiter.stats();
        (a + s.allowed, l + s.limited, o + s.local)
    });
    assert_eq!((allowed, limited, local), (total.allowed, total.refused, 0));
    eprintln!(
        "exactness {kind:?} {algorithm:?}: allowed per round {allowed_per_round:?} \
         (limit 100, {} checks per round); round spans in ms {spans_ms:?}",
        TASKS * CHECKS_PER_TASK
    );
}

async fn exact_fixed_window(kind: Kind) {
    exactness(kind, Algorithm::FixedWindow).await;
}

async fn exact_sliding_window(kind: Kind) {
    exactness(kind, Algorithm::SlidingWindow).await;
}

async fn exact_token_bucket(kind: Kind) {
    exactness(kind, Algorithm::TokenBucket).await;
}

integration_tests::on_every_topology!(exact_fixed_window, exact_sliding_window, exact_token_bucket);

// ---------------------------------------------------------------------------------------
// 2. Bursts straddling a window boundary
// ---------------------------------------------------------------------------------------

/// Redis times around two bursts of a boundary run.
#[derive(Debug, Clone, Copy)]
struct Bursts {
    before1: u64,
    after1: u64,
    before2: u64,
    after2: u64,
}

impl Bursts {
    /// The first burst inside one second, the second inside the next.
    fn straddle_one_boundary(&self) -> bool {
        let second = |t: u64| t / SECOND_US;
        second(self.before1) == second(self.after1)
            && second(self.before2) == second(self.after2)
            && second(self.before2) == second(self.before1) + 1
    }
}

/// Checks per burst: more than the limit, so that a burst can show over-admission.
const BURST: usize = 15;

/// A `10/1s` limiter of `algorithm`: 15 checks ~850 ms into a second, 15 more ~50 ms into
/// the next. Retried on a fresh partition when the machine was too slow to stay on plan.
async fn boundary_bursts(algorithm: Algorithm) -> (u64, u64, Bursts) {
    let redis = Topology::start(Kind::Single);
    let caches = caches(&redis, 1, PATIENT).await;
    let limiters = limiters(&caches, &policy("edge", algorithm, "10/1s"));
    for attempt in 0..5 {
        let partition = format!("edge-{attempt}");
        sleep_until_into_second(&redis, 850_000).await;
        let before1 = redis_time_us(&redis);
        let first = concurrent_round(&limiters, &partition, BURST, 1).await;
        let after1 = redis_time_us(&redis);
        sleep_until_into_second(&redis, 50_000).await;
        let before2 = redis_time_us(&redis);
        let second = concurrent_round(&limiters, &partition, BURST, 1).await;
        let after2 = redis_time_us(&redis);
        let bursts = Bursts {
            before1,
            after1,
            before2,
            after2,
        };
        assert_eq!(
            first.by_redis + second.by_redis,
            2 * BURST as u64,
            "{bursts:?}"
        );
        if bursts.straddle_one_boundary() {
            return (first.allowed, second.allowed, bursts);
        }
        eprintln!("{algorithm:?}: attempt {attempt} off plan: {bursts:?}");
    }
    panic!("{algorithm:?}: no attempt stayed on plan");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixed_window_admits_up_to_twice_the_limit_across_a_boundary() {
    // Documented: windows are aligned, so a burst at the end of one and another at the start
    // of the next both fit: up to 2x the limit within a fraction of a window.
    let (first, second, bursts) = boundary_bursts(Algorithm::FixedWindow).await;
    eprintln!("boundary fixed window: {first} + {second} allowed; {bursts:?}");
    assert_eq!((first, second), (10, 10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sliding_window_admits_the_limit_across_a_boundary() {
    let (first, second, bursts) = boundary_bursts(Algorithm::SlidingWindow).await;
    eprintln!("boundary sliding window: {first} + {second} allowed; {bursts:?}");
    assert!(bursts.after2 - bursts.before1 < SECOND_US, "{bursts:?}");
    assert_eq!((first, second), (10, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_bucket_refills_one_unit_per_interval_across_a_boundary() {
    let (first, second, b) = boundary_bursts(Algorithm::TokenBucket).await;
    const INTERVAL: u64 = SECOND_US / 10;
    // The bucket's TAT after the first burst is its first unit's time + 10 intervals; the
    // second burst gets one unit per whole interval since then, and no more than the burst.
    let least = ((b.before2 - b.after1) / INTERVAL).min(10);
    let most = (b.after2 - b.before1) / INTERVAL;
    eprintln!(
        "boundary token bucket: {first} + {second} allowed (second burst {least}..={most}, \
         gap {} ms); {b:?}",
        (b.before2 - b.after1) / 1_000
    );
    assert_eq!(first, 10);
    assert!(
        (least..=most).contains(&second),
        "{second} not in {least}..={most}"
    );
    assert!(first + second <= 10 + (b.after2 - b.before1) / INTERVAL + 1);
}

// ---------------------------------------------------------------------------------------
// 3. Every key has a TTL, also after restarts
// ---------------------------------------------------------------------------------------

const SOAK_PARTITIONS: usize = 300;

/// Limits of the soak, per algorithm; the key of every partition lives for at most its window.
fn soak_limit(algorithm: Algorithm) -> (&'static str, Duration) {
    match algorithm {
        Algorithm::FixedWindow => ("3/60s", Duration::from_secs(60)),
        Algorithm::SlidingWindow => ("3/45s", Duration::from_secs(45)),
        _ => ("3/30s", Duration::from_secs(30)),
    }
}

/// A few checks of every partition (some beyond the limit, some of several units), from 4
/// tasks; every decision must come from Redis.
async fn soak(limiters: &[RateLimiter], round: usize) {
    let handles: Vec<_> = limiters
        .iter()
        .flat_map(|limiter| (0..4).map(move |task| (limiter.clone(), task)))
        .map(|(limiter, task)| {
            tokio::spawn(async move {
                for p in (task..SOAK_PARTITIONS).step_by(4) {
                    let partition = format!("soak-{p}");
                    let cost = 1 + u32::from(p % 3 == 0);
                    for _ in 0..(1 + (p + round) % 4) {
                        let d = limiter.check_n(&partition, cost).await.expect("a decision");
                        assert_eq!(d.source, Source::Redis, "{:?}", limiter.stats());
                    }
                }
            })
        })
        .collect();
    for handle in handles {
        handle.await.expect("a soak task");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_key_has_a_ttl_after_soaks_and_restarts() {
    let mut redis = Topology::start_persistent(Kind::Single);
    let caches = caches(&redis, 1, PATIENT).await;
    let limiters: Vec<RateLimiter> = ALGORITHMS
        .iter()
        .map(|&a| RateLimiter::for_cache(&caches[0], policy("soak", a, soak_limit(a).0)))
        .collect();
    let probe = RateLimiter::for_cache(
        &caches[0],
        policy("probe", Algorithm::FixedWindow, "1000/60s"),
    );
    for round in 0..3 {
        if round > 0 {
            let kept = keyspace(&redis).0;
            redis.restart();
            assert_eq!(keyspace(&redis).0, kept, "the restart kept the data");
            probe_until_redis_decides(&probe).await;
        }
        soak(&limiters, round).await;
    }
    let (keys, expires) = keyspace(&redis);
    let soaked = keys_like(&redis, "ratelimit:soak:*").len() as u64;
    eprintln!("soak: db0 keys={keys} expires={expires}, {soaked} of them the soak's");
    assert_eq!(soaked, (ALGORITHMS.len() * SOAK_PARTITIONS) as u64);
    assert_eq!(keys, soaked + 1, "the soak's keys and the probe's");
    assert_eq!(keys, expires, "a key without TTL");
    for limiter in &limiters {
        let window = soak_limit(limiter.policy().algorithm()).1;
        for p in [0, 1, 2, SOAK_PARTITIONS - 1] {
            let key = limiter.key_of(&format!("soak-{p}"));
            let pttl: i64 = redis.query(&["PTTL", &key]);
            let ttl: i64 = redis.query(&["TTL", &key]);
            let what = format!("{key}: PTTL {pttl} TTL {ttl}, window {window:?}");
            assert!(pttl > 0 && pttl as u128 <= window.as_millis(), "{what}");
            assert!(ttl > 0 && ttl as u64 <= window.as_secs(), "{what}");
        }
    }
}

// ---------------------------------------------------------------------------------------
// 4. Redis down at three times the limit
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
enum Outage {
    /// `SIGKILL`: connections are refused.
    Kill,
    /// `SIGSTOP`: connections hang.
    Pause,
}

const DOWN_LIMIT: u64 = 10;
const DOWN_CHECKS: u64 = 3 * DOWN_LIMIT;

/// 30 checks of one partition on each of two instances, per algorithm, while Redis is down.
async fn redis_down(on_failure: OnFailure, outage: Outage) {
    let mut redis = Topology::start(Kind::Single);
    let caches = caches(&redis, 2, OP_TIMEOUT).await;
    // limiters[instance][algorithm]
    let limiters: Vec<Vec<RateLimiter>> = caches
        .iter()
        .map(|cache| {
            ALGORITHMS
                .iter()
                .map(|&a| {
                    let p = policy("down", a, "10/60s").on_failure(on_failure);
                    RateLimiter::for_cache(cache, p)
                })
                .collect()
        })
        .collect();
    for limiter in limiters.iter().flatten() {
        let d = limiter.check("before").await.expect("a decision");
        assert_eq!((d.allowed, d.source), (true, Source::Redis));
    }

    match outage {
        Outage::Kill => redis.kill(),
        Outage::Pause => redis.pause(),
    }
    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    for (instance, per_algorithm) in limiters.iter().enumerate() {
        for limiter in per_algorithm {
            let algorithm = limiter.policy().algorithm();
            let what = format!("{on_failure:?} {outage:?} instance {instance} {algorithm:?}");
            let mut tally = Tally::default();
            for _ in 0..DOWN_CHECKS {
                let t = Instant::now();
                let result = limiter.check("down").await;
                slowest = slowest.max(t.elapsed());
                assert!(
                    t.elapsed() < CHECK_BOUND,
                    "{what}: a check took {:?}",
                    t.elapsed()
                );
                match (on_failure, result) {
                    (OnFailure::Closed, Err(RateLimitError::Unavailable { retry_after })) => {
                        assert!(
                            retry_after >= Duration::from_secs(1),
                            "{what}: {retry_after:?}"
                        );
                    }
                    (OnFailure::Local, Ok(d)) => {
                        assert_eq!(d.source, Source::Local, "{what}");
                        tally.count(&d);
                    }
                    (OnFailure::Open, Ok(d)) => {
                        assert_eq!((d.allowed, d.source), (true, Source::Open), "{what}");
                        tally.count(&d);
                    }
                    (_, other) => panic!("{what}: {other:?}"),
                }
            }
            let stats = limiter.stats();
            eprintln!("redis down {what}: {tally:?}; {stats:?}");
            assert_eq!(
                stats.mode,
                format!("{on_failure:?}").to_lowercase(),
                "{what}"
            );
            match on_failure {
                OnFailure::Local => {
                    let most = match algorithm {
                        // The in-process bucket refills one unit per 6 s.
                        Algorithm::TokenBucket => DOWN_LIMIT + started.elapsed().as_secs() / 6,
                        _ => DOWN_LIMIT,
                    };
                    assert!(
                        (DOWN_LIMIT..=most).contains(&tally.allowed),
                        "{what}: {tally:?}"
                    );
                    assert_eq!(stats.local, DOWN_CHECKS, "{what}");
                    assert_eq!(stats.allowed, 1 + tally.allowed, "{what}");
                    assert_eq!(stats.limited, tally.refused, "{what}");
                    assert_eq!((stats.open, stats.closed), (0, 0), "{what}");
                }
                OnFailure::Open => {
                    assert_eq!(tally.allowed, DOWN_CHECKS, "{what}");
                    assert_eq!(stats.open, DOWN_CHECKS, "{what}");
                    assert_eq!(stats.allowed, 1 + DOWN_CHECKS, "{what}");
                    assert_eq!(
                        (stats.local, stats.closed, stats.limited),
                        (0, 0, 0),
                        "{what}"
                    );
                }
                _ => {
                    assert_eq!(stats.closed, DOWN_CHECKS, "{what}");
                    assert_eq!(stats.allowed, 1, "{what}");
                    assert_eq!(
                        (stats.local, stats.open, stats.limited),
                        (0, 0, 0),
                        "{what}"
                    );
                }
            }
        }
        // The instance's client failed at least once before its breaker opened; afterwards
        // the checks skip Redis and count no error.
        let errors: u64 = per_algorithm.iter().map(|l| l.stats().redis_errors).sum();
        assert!(
            (1..=3 * DOWN_CHECKS).contains(&errors),
            "instance {instance}: {errors} redis errors"
        );
    }
    eprintln!("redis down {on_failure:?} {outage:?}: slowest check {slowest:?}");

    match outage {
        Outage::Kill => redis.restart(),
        Outage::Pause => redis.resume(),
    }
    let all: Vec<RateLimiter> = limiters.into_iter().flatten().collect();
    wait_for_redis(&all).await;
    for limiter in &all {
        let d = limiter.check("after").await.expect("a decision");
        assert_eq!(
            (d.allowed, d.source),
            (true, Source::Redis),
            "{:?}",
            limiter.stats()
        );
        let exists: bool = redis.query(&["EXISTS", &limiter.key_of("after")]);
        assert!(exists, "the check after the outage was counted on Redis");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_local_limits_each_instance() {
    redis_down(OnFailure::Local, Outage::Kill).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_paused_local_limits_each_instance() {
    redis_down(OnFailure::Local, Outage::Pause).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_open_lets_everything_through() {
    redis_down(OnFailure::Open, Outage::Kill).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_paused_open_lets_everything_through() {
    redis_down(OnFailure::Open, Outage::Pause).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_closed_refuses_everything() {
    redis_down(OnFailure::Closed, Outage::Kill).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_paused_closed_refuses_everything() {
    redis_down(OnFailure::Closed, Outage::Pause).await;
}

// ---------------------------------------------------------------------------------------
// 5. and 6. The axum layer
// ---------------------------------------------------------------------------------------

/// A response, collected.
struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("no {name} header in {:?}", self.headers))
            .to_str()
            .expect("an ASCII header")
    }

    /// `r` of the `RateLimit` field.
    fn remaining(&self) -> u32 {
        let field = self.header("ratelimit");
        field
            .split(';')
            .find_map(|p| p.strip_prefix("r="))
            .and_then(|r| r.parse().ok())
            .unwrap_or_else(|| panic!("no r= in {field:?}"))
    }

    /// `Retry-After`, which must be whole seconds, at least 1.
    fn retry_after(&self) -> u64 {
        let value = self.header("retry-after");
        let secs: u64 = value
            .parse()
            .unwrap_or_else(|_| panic!("retry-after {value:?} is not an integer"));
        assert!(secs >= 1, "retry-after {secs}");
        secs
    }

    /// A refusal's JSON body: `{"error": "<string>"}`.
    fn assert_error_body(&self) {
        let json: serde_json::Value = serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body {:?} is not JSON: {e}", self.body));
        assert!(json["error"].is_string(), "body {json}");
    }
}

/// `/login` behind `layer`.
fn app(layer: RateLimitLayer) -> Router {
    Router::new().route("/login", get(|| async { "welcome" }).layer(layer))
}

/// One request from `peer`, with `X-Forwarded-For: xff` when given.
async fn send(app: &Router, peer: [u8; 4], xff: Option<&str>) -> Reply {
    let mut request = Request::get("/login");
    if let Some(xff) = xff {
        request = request.header("x-forwarded-for", xff);
    }
    let mut request = request.body(Body::empty()).expect("a request");
    request
        .extensions_mut()
        .insert(ConnectInfo(SocketAddr::from((peer, 40_000))));
    let response = app.clone().oneshot(request).await.expect("a response");
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, 64 * 1024).await.expect("a body");
    Reply {
        status: parts.status,
        headers: parts.headers,
        body: String::from_utf8(bytes.to_vec()).expect("a UTF-8 body"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_layer_limits_per_ip_and_its_retry_after_is_honest() {
    let redis = Topology::start(Kind::Single);
    let caches = caches(&redis, 1, PATIENT).await;
    let limiter = RateLimiter::for_cache(
        &caches[0],
        policy("login", Algorithm::SlidingWindow, "3/2s"),
    );
    let app = app(RateLimitLayer::per_ip(limiter));
    let client = [203, 0, 113, 7];
    for left in [2, 1, 0] {
        let reply = send(&app, client, None).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.body, "welcome");
        assert_eq!(reply.header("ratelimit-policy"), "\"login\";q=3;w=2");
        assert_eq!(reply.remaining(), left, "{:?}", reply.headers);
    }
    let refused = send(&app, client, None).await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.header("ratelimit-policy"), "\"login\";q=3;w=2");
    assert_eq!(refused.remaining(), 0);
    refused.assert_error_body();
    let retry = refused.retry_after();
    assert!(retry <= 2, "retry-after {retry} beyond the window");
    assert!(
        refused
            .header("content-type")
            .starts_with("application/json"),
        "{:?}",
        refused.headers
    );
    // Another client is not affected.
    assert_eq!(
        send(&app, [203, 0, 113, 8], None).await.status,
        StatusCode::OK
    );

    // Half of Retry-After is too early...
    let half = Duration::from_millis(retry * 500);
    tokio::time::sleep(half).await;
    let early = send(&app, client, None).await;
    assert_eq!(
        early.status,
        StatusCode::TOO_MANY_REQUESTS,
        "after half of retry-after"
    );
    early.retry_after();
    early.assert_error_body();
    // ...all of it is enough.
    tokio::time::sleep(Duration::from_secs(retry) - half).await;
    let later = send(&app, client, None).await;
    assert_eq!(
        later.status,
        StatusCode::OK,
        "after retry-after: {:?}",
        later.headers
    );
    eprintln!("layer: retry-after {retry} s honoured");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_layer_answers_503_while_redis_is_down() {
    let mut redis = Topology::start(Kind::Single);
    let caches = caches(&redis, 1, OP_TIMEOUT).await;
    let p = policy("closed", Algorithm::FixedWindow, "3/60s").on_failure(OnFailure::Closed);
    let app = app(RateLimitLayer::per_ip(RateLimiter::for_cache(
        &caches[0], p,
    )));
    assert_eq!(
        send(&app, [203, 0, 113, 7], None).await.status,
        StatusCode::OK
    );
    redis.kill();
    for _ in 0..5 {
        let started = Instant::now();
        let reply = send(&app, [203, 0, 113, 7], None).await;
        assert!(started.elapsed() < CHECK_BOUND);
        assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
        reply.retry_after();
        reply.assert_error_body();
        assert_eq!(reply.header("ratelimit-policy"), "\"closed\";q=3;w=60");
    }
}

/// A pseudo-random IPv4 address per `n` (no `rand` in this crate).
fn some_ip(n: u64) -> String {
    let x = n
        .wrapping_add(1)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .rotate_left(17);
    let b = x.to_be_bytes();
    format!("{}.{}.{}.{}", 1 + b[0] % 200, b[1], b[2], 1 + b[3] % 250)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_x_forwarded_for_buys_nothing() {
    let redis = Topology::start(Kind::Single);
    let caches = caches(&redis, 1, PATIENT).await;
    let limiter =
        RateLimiter::for_cache(&caches[0], policy("xff", Algorithm::SlidingWindow, "3/60s"));
    let proxies = TrustedProxies::from_var("TRUSTED_PROXIES", "10.0.0.0/8").expect("proxies");
    let app = app(RateLimitLayer::per_ip(limiter).trusted_proxies(proxies));
    let mut replies = Vec::new();
    let mut ips: Vec<String> = vec!["198.51.100.9".into(), "10.0.0.1".into()];

    // An untrusted peer: its header is ignored, every request counts against the peer.
    let untrusted = [198, 51, 100, 9];
    for i in 0..8 {
        let forged = some_ip(i);
        let reply = send(&app, untrusted, Some(&forged)).await;
        let expected = if i < 3 {
            StatusCode::OK
        } else {
            StatusCode::TOO_MANY_REQUESTS
        };
        assert_eq!(reply.status, expected, "request {i} forging {forged}");
        ips.push(forged);
        replies.push(reply);
    }
    assert_eq!(rate_limit_keys(&redis).len(), 1, "one partition: the peer");

    // A trusted proxy: the right-most entry is the client.
    let proxy = [10, 0, 0, 1];
    let clients: Vec<String> = (0..10).map(|i| format!("203.0.113.{}", 100 + i)).collect();
    for client in &clients {
        for _ in 0..3 {
            let reply = send(&app, proxy, Some(client)).await;
            assert_eq!(
                reply.status,
                StatusCode::OK,
                "client {client} via the proxy"
            );
            replies.push(reply);
        }
    }
    ips.extend(clients.iter().cloned());
    assert_eq!(
        rate_limit_keys(&redis).len(),
        1 + clients.len(),
        "one partition per client"
    );

    // The left entries are the client's own words: changing them does not help.
    let victim = "203.0.113.7";
    for i in 0..6 {
        let left = some_ip(100 + i);
        let reply = send(&app, proxy, Some(&format!("{left}, {victim}"))).await;
        let expected = if i < 3 {
            StatusCode::OK
        } else {
            StatusCode::TOO_MANY_REQUESTS
        };
        assert_eq!(reply.status, expected, "request {i} with {left} in front");
        ips.push(left);
        replies.push(reply);
    }
    let direct = send(&app, proxy, Some(victim)).await;
    assert_eq!(
        direct.status,
        StatusCode::TOO_MANY_REQUESTS,
        "same client without the prefix"
    );
    replies.push(direct);
    ips.push(victim.to_owned());
    let keys = rate_limit_keys(&redis);
    assert_eq!(keys.len(), 2 + clients.len());

    // Neither the headers nor Redis show an address.
    for reply in &replies {
        for (name, value) in &reply.headers {
            let value = value.to_str().unwrap_or_default();
            for ip in &ips {
                assert!(!value.contains(ip.as_str()), "{name}: {value} shows {ip}");
            }
        }
        for ip in &ips {
            assert!(!reply.body.contains(ip.as_str()), "the body shows {ip}");
        }
    }
    for key in &keys {
        let hash = key
            .strip_prefix("ratelimit:xff:s:")
            .unwrap_or_else(|| panic!("unexpected key {key}"));
        assert!(
            hash.len() == 32 && hash.bytes().all(|b| b.is_ascii_hexdigit()),
            "{key}"
        );
        for ip in &ips {
            assert!(!key.contains(ip.as_str()), "{key} shows {ip}");
        }
    }
}

// ---------------------------------------------------------------------------------------
// 7. Corrupt and foreign data
// ---------------------------------------------------------------------------------------

/// Ways to overwrite a key: another type, or the right type with garbage.
const CORRUPTIONS: [&[&str]; 9] = [
    &["SET", "{key}", "garbage"],
    &["SET", "{key}", "-1e999"],
    // Numbers no bucket holds: infinity would refuse forever, NaN would fail the script.
    &["SET", "{key}", "1e999"],
    &["SET", "{key}", "nan"],
    // More entries than the limit, all in the future: they would never leave the window.
    &[
        "ZADD", "{key}", "inf", "a", "inf", "b", "inf", "c", "inf", "d", "inf", "e",
    ],
    &["LPUSH", "{key}", "a", "b"],
    &["SADD", "{key}", "a"],
    &["HSET", "{key}", "w", "garbage", "n", "garbage"],
    &["ZADD", "{key}", "1", "x"],
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_or_foreign_key_is_a_fresh_partition() {
    let redis = Topology::start(Kind::Single);
    let caches = caches(&redis, 1, PATIENT).await;
    for algorithm in ALGORITHMS {
        let limiter = RateLimiter::for_cache(&caches[0], policy("foreign", algorithm, "4/60s"));
        let kind_of_key = match algorithm {
            Algorithm::FixedWindow => "hash",
            Algorithm::SlidingWindow => "zset",
            _ => "string",
        };
        for (i, corruption) in CORRUPTIONS.iter().enumerate() {
            let partition = format!("p{i}");
            let key = limiter.key_of(&partition);
            let what = format!("{algorithm:?} after {corruption:?}");
            // Used up, then overwritten (without a TTL).
            for _ in 0..4 {
                assert!(limiter.check(&partition).await.expect("a decision").allowed);
            }
            let () = redis.query(&["DEL", &key]);
            let args: Vec<&str> = corruption
                .iter()
                .map(|&a| if a == "{key}" { key.as_str() } else { a })
                .collect();
            let _: redis::Value = redis.query(&args);
            // A fresh partition: the full limit, then a refusal; never an error.
            for left in (0..4).rev() {
                let d = limiter
                    .check(&partition)
                    .await
                    .unwrap_or_else(|e| panic!("{what}: {e}"));
                assert!(d.allowed && d.source == Source::Redis, "{what}: {d:?}");
                assert_eq!(d.remaining, left, "{what}");
            }
            let d = limiter
                .check(&partition)
                .await
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            assert!(!d.allowed && d.source == Source::Redis, "{what}: {d:?}");
            let kind: String = redis.query(&["TYPE", &key]);
            assert_eq!(kind, kind_of_key, "{what}");
            let pttl: i64 = redis.query(&["PTTL", &key]);
            assert!(pttl > 0 && pttl <= 60_000, "{what}: PTTL {pttl}");
        }
        assert_eq!(limiter.stats().redis_errors, 0, "{algorithm:?}");
    }
    let (keys, expires) = keyspace(&redis);
    let written = (ALGORITHMS.len() * CORRUPTIONS.len()) as u64;
    assert_eq!((keys, expires), (written, written));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_clears_and_invalidations_leave_rate_limits_alone() {
    let redis = Topology::start(Kind::Single);
    let caches = redis
        .caches(1, |b| b.prefix("app").op_timeout(PATIENT))
        .await;
    let cache = &caches[0];
    let limiters: Vec<RateLimiter> = ALGORITHMS
        .iter()
        .map(|&a| RateLimiter::for_cache(cache, policy("kept", a, "3/60s")))
        .collect();
    for limiter in &limiters {
        for _ in 0..3 {
            assert!(limiter.check("client").await.expect("a decision").allowed);
        }
        assert!(limiter.key_of("client").starts_with("app:ratelimit:kept:"));
    }
    cache.set("users:1", &1, None).await;
    cache.invalidate("*").await.expect("a pattern");
    // The sweep ran (it deleted the one entry) and passed the limiters' keys by.
    assert_eq!(cache.clear_matching("*").await.expect("a pattern"), 1);
    cache.clear().await;
    assert_eq!(keys_like(&redis, "app:ratelimit:*").len(), 3);
    // Their state too: each partition is still used up.
    for limiter in &limiters {
        let d = limiter.check("client").await.expect("a decision");
        assert!(!d.allowed && d.source == Source::Redis, "{d:?}");
    }
}
