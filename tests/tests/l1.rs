//! The two-level cache on real Redis, on one server and on a cluster, tried the way it could
//! break:
//! - coherence: three caches with their own connections, one writing while the others read in
//!   tight loops: no reader reads a value older than the last invalidation message it has
//!   received, the writer never reads its own old value, and the lag from a write to each
//!   reader's first fresh read is measured over 10,000 writes;
//! - feed loss: `CLIENT KILL TYPE pubsub`, Redis killed and restarted, Redis paused (SIGSTOP):
//!   the L1 stops serving within its detection bound (stale reads only before it), and serves
//!   again once resubscribed;
//! - a write outside the cache (`FLUSHALL` and a changed source): seen within
//!   `CACHE_L1_MAX_TTL`;
//! - `l1 = false` data never comes from the L1; hits cost no round trip; a miss whose markers
//!   the table knows reads the entry alone; `Cache::set` reaches the other instances' L1.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cache_runtime::{Cache, cached};
use integration_tests::{Deployment, Kind, Topology, on_every_topology, wait_until};

const KEY: &str = "item:1";

async fn caches(redis: &Topology, n: usize) -> Vec<Cache> {
    caches_with(redis, n, Duration::from_secs(30)).await
}

async fn caches_with(redis: &Topology, n: usize, max_ttl: Duration) -> Vec<Cache> {
    let caches = redis
        .caches(n, |b| {
            b.l1(true)
                .l1_max_ttl(max_ttl)
                .op_timeout(Duration::from_millis(500))
                .connect_timeout(Duration::from_millis(500))
        })
        .await;
    for cache in &caches {
        assert!(
            wait_until(Duration::from_secs(10), || live(cache)).await,
            "the L1 goes live once subscribed"
        );
    }
    caches
}

fn live(cache: &Cache) -> bool {
    cache.l1_stats().is_some_and(|s| s.live)
}

fn l1_hits(cache: &Cache) -> u64 {
    cache.l1_stats().map_or(0, |s| s.hits)
}

/// The "database": a version number.
#[derive(Clone, Default)]
struct Source(Arc<AtomicU64>);

impl Source {
    fn set(&self, v: u64) {
        self.0.store(v, Ordering::SeqCst);
    }

    async fn read(&self, cache: &Cache, key: &str) -> u64 {
        let source = self.0.clone();
        cache
            .get_or_load(key, None, async move {
                Ok::<_, Infallible>(source.load(Ordering::SeqCst))
            })
            .await
            .unwrap_or_else(|e| match e {})
    }
}

async fn hits_cost_no_round_trip_and_writes_are_seen_elsewhere(kind: Kind) {
    let redis = Topology::start(kind);
    let caches = caches(&redis, 2).await;
    let (writer, reader) = (&caches[0], &caches[1]);
    let source = Source::default();
    source.set(1);
    assert_eq!(source.read(reader, KEY).await, 1);
    redis.reset_stats();
    for _ in 0..100 {
        assert_eq!(source.read(reader, KEY).await, 1);
    }
    assert_eq!(l1_hits(reader), 100);
    assert_eq!(redis.command_calls("get") + redis.command_calls("mget"), 0);

    source.set(2);
    writer.invalidate(KEY).await.expect("pattern");
    assert_eq!(
        source.read(writer, KEY).await,
        2,
        "the writer reads its write"
    );
    // Once the reader has the message, its next read is fresh; and its markers are known, so
    // that read fetches the entry alone: one GET, no MGET.
    assert!(wait_until(Duration::from_secs(5), || messages(reader) >= 1).await);
    redis.reset_stats();
    assert_eq!(source.read(reader, KEY).await, 2);
    assert_eq!(
        (redis.command_calls("get"), redis.command_calls("mget")),
        (1, 0)
    );
    assert_eq!(source.read(reader, KEY).await, 2);
    assert_eq!(l1_hits(reader), 101);

    // `l1 = false`: every call reads entry and markers from Redis.
    redis.reset_stats();
    for _ in 0..3 {
        assert_eq!(strict(reader, &source, 1).await, 2);
    }
    assert_eq!(l1_hits(reader), 101, "never from the L1");
    // One MGET per call (on a cluster, split by redis-rs into one per slot).
    assert!(redis.command_calls("mget") >= 3);
}

/// `Cache::set` on one instance reaches the others' L1 like an invalidation.
async fn a_set_reaches_other_instances_l1(kind: Kind) {
    let redis = Topology::start(kind);
    let caches = caches(&redis, 2).await;
    let (writer, reader) = (&caches[0], &caches[1]);
    let source = Source::default();
    warm(&source, reader).await;
    writer.set(KEY, &7u64, None).await;
    assert!(wait_until(Duration::from_secs(5), || messages(reader) >= 1).await);
    assert_eq!(source.read(reader, KEY).await, 7);
}

#[cached(key = "strict:<id>", l1 = false, cache = cache, skip(cache, source))]
async fn strict(cache: &Cache, source: &Source, id: u32) -> u64 {
    let _ = id;
    source.0.load(Ordering::SeqCst)
}

/// Per write n (the source holds n, then the writer invalidates): each reader's reads, each
/// with the number of invalidation messages its L1 had applied before it began.
async fn coherence_across_three_caches(kind: Kind) {
    const WRITES: u64 = 10_000;
    let redis = Topology::start(kind);
    let caches = caches(&redis, 3).await;
    let source = Source::default();
    for cache in &caches {
        assert_eq!(source.read(cache, KEY).await, 0);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let readers: Vec<_> = caches[1..]
        .iter()
        .map(|cache| {
            let (cache, source, stop) = (cache.clone(), source.clone(), stop.clone());
            tokio::spawn(async move {
                // (when, value) each time the value read changes; reads older than the
                // messages received.
                let (mut seen, mut violations, mut reads) = (vec![(Duration::ZERO, 0)], 0, 0u64);
                let base = cache.l1_stats().expect("l1").messages;
                while !stop.load(Ordering::Relaxed) {
                    let received = cache.l1_stats().expect("l1").messages - base;
                    let v = source.read(&cache, KEY).await;
                    reads += 1;
                    if v < received {
                        violations += 1;
                    }
                    if v > seen.last().map_or(0, |&(_, last)| last) {
                        seen.push((started.elapsed(), v));
                    }
                    // Tight, but fair to the writer on a two-core machine.
                    tokio::task::yield_now().await;
                }
                (seen, violations, reads)
            })
        })
        .collect();
    let writer = &caches[0];
    let mut written_at = Vec::with_capacity(WRITES as usize);
    let mut writer_stale = 0;
    for n in 1..=WRITES {
        source.set(n);
        writer.invalidate(KEY).await.expect("pattern");
        written_at.push(started.elapsed());
        if source.read(writer, KEY).await < n {
            writer_stale += 1;
        }
        if n % 8 == 0 {
            tokio::task::yield_now().await;
        }
    }
    // Every reader reaches the last write.
    for cache in &caches[1..] {
        assert!(
            wait_until(Duration::from_secs(10), || {
                cache.l1_stats().expect("l1").messages >= WRITES
            })
            .await,
            "every message arrives: {:?}",
            cache.l1_stats()
        );
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.store(true, Ordering::Relaxed);
    let mut lags = Vec::new();
    let mut total_reads = 0;
    for reader in readers {
        let (seen, violations, reads) = reader.await.expect("reader");
        total_reads += reads;
        assert_eq!(violations, 0, "reads older than a message already received");
        assert_eq!(seen.last().map(|&(_, v)| v), Some(WRITES));
        // The first read of n or later, after write n returned.
        let mut i = 0;
        for (n, &at) in (1..=WRITES).zip(&written_at) {
            while seen[i].1 < n {
                i += 1;
            }
            lags.push(seen[i].0.saturating_sub(at));
        }
    }
    assert_eq!(writer_stale, 0, "the writer read its own old value");
    lags.sort();
    let pct = |p: f64| lags[((lags.len() - 1) as f64 * p) as usize];
    eprintln!(
        "{kind:?}: {WRITES} writes, {total_reads} reads by 2 readers in {:?}; lag from a \
         write to each reader's first fresh read: p50 {:?}, p99 {:?}, max {:?}; {:?}",
        started.elapsed(),
        pct(0.5),
        pct(0.99),
        pct(1.0),
        caches[1].l1_stats()
    );
}

/// Warm: the reader serves `KEY` from its L1.
async fn warm(source: &Source, reader: &Cache) {
    source.read(reader, KEY).await;
    let hits = l1_hits(reader);
    source.read(reader, KEY).await;
    assert_eq!(l1_hits(reader), hits + 1, "served from the L1");
}

/// What a reader saw after a failure at `since`.
#[derive(Debug, Default)]
struct Seen {
    /// When the last stale value read began (from anywhere: while the writer's queued
    /// invalidation waits for its replay, Redis itself is stale for other instances).
    last_stale: Option<Duration>,
    /// When the last stale value served by the L1 began.
    last_stale_l1: Option<Duration>,
    /// When the L1 stopped serving, as far as the reads could tell.
    stopped: Option<Duration>,
    /// Invalidation messages the reader had applied before the failure.
    messages: u64,
    /// Stale reads that began after the reader had applied a message since the failure (the
    /// writer's, or its replay): never allowed.
    stale_after_a_message: u64,
    /// When the writer had no invalidation left to replay.
    replayed: Option<Duration>,
    /// Stale reads that began more than a second after that: never allowed (the replay's
    /// message, or the flush of a resubscription that came after it, ends them).
    stale_after_the_replay: u64,
}

fn messages(cache: &Cache) -> u64 {
    cache.l1_stats().map_or(0, |s| s.messages)
}

impl Seen {
    fn new(reader: &Cache) -> Self {
        Self {
            messages: messages(reader),
            ..Self::default()
        }
    }

    /// One read; whether it was a fresh L1 hit.
    async fn read(&mut self, source: &Source, reader: &Cache, fresh: u64, since: Instant) -> bool {
        let began = since.elapsed();
        let settled = self
            .replayed
            .is_some_and(|at| began > at + Duration::from_secs(1));
        let (hits, was_live) = (l1_hits(reader), live(reader));
        let informed = messages(reader) > self.messages;
        let v = source.read(reader, KEY).await;
        let from_l1 = l1_hits(reader) > hits;
        if !was_live && self.stopped.is_none() {
            self.stopped = Some(began);
        }
        if v < fresh {
            self.last_stale = Some(began);
            self.stale_after_a_message += u64::from(informed);
            self.stale_after_the_replay += u64::from(settled);
            if from_l1 {
                self.last_stale_l1 = Some(began);
            }
        }
        v >= fresh && from_l1
    }
}

/// Reads until the value is `fresh` and comes from the L1 again; what the reads saw, and when
/// the L1 served again.
async fn read_until_served_again(
    source: &Source,
    writer: &Cache,
    reader: &Cache,
    fresh: u64,
    since: Instant,
    seen: &mut Seen,
) -> Duration {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if seen.replayed.is_none() && writer.stats().pending_invalidations == 0 {
            seen.replayed = Some(since.elapsed());
        }
        if seen.read(source, reader, fresh, since).await {
            break;
        }
        assert!(Instant::now() < deadline, "{:?}", reader.l1_stats());
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    since.elapsed()
}

async fn client_kill_type_pubsub_stops_the_l1_until_resubscribed(kind: Kind) {
    let redis = Topology::start(kind);
    let caches = caches(&redis, 2).await;
    let (writer, reader) = (&caches[0], &caches[1]);
    let source = Source::default();
    warm(&source, reader).await;
    let flushes = reader.l1_stats().expect("l1").flushes;

    let killed = Instant::now();
    redis.on_every_node(&["CLIENT", "KILL", "TYPE", "pubsub"]);
    // Written while the reader's subscription is gone: its message is lost.
    source.set(1);
    writer.invalidate(KEY).await.expect("pattern");
    let mut seen = Seen::new(reader);
    let back = read_until_served_again(&source, writer, reader, 1, killed, &mut seen).await;
    eprintln!("{kind:?}: after the kill: {seen:?}; served again after {back:?}");
    // The kill closes the connection: the loss is seen at once, the lost message never
    // matters (the resubscription flushed the L1).
    assert_eq!(seen.last_stale, None, "{seen:?}");
    assert_eq!(seen.stale_after_a_message, 0, "{seen:?}");
    assert_eq!(seen.stale_after_the_replay, 0, "{seen:?}");
    assert!(reader.l1_stats().expect("l1").flushes > flushes);
}

async fn a_restart_stops_the_l1_until_resubscribed(kind: Kind) {
    let mut redis = Topology::start_persistent(kind);
    let caches = caches(&redis, 2).await;
    let (writer, reader) = (&caches[0], &caches[1]);
    let source = Source::default();
    warm(&source, reader).await;

    let killed = Instant::now();
    redis.kill();
    source.set(1);
    writer.invalidate(KEY).await.expect("pattern"); // queued
    // Down: the reader's L1 stops at once; the reads load from the source.
    assert!(wait_until(Duration::from_secs(5), || !live(reader)).await);
    let lost_after = killed.elapsed();
    let mut seen = Seen::new(reader);
    assert!(!seen.read(&source, reader, 1, killed).await);
    redis.restart();
    let back = read_until_served_again(&source, writer, reader, 1, killed, &mut seen).await;
    eprintln!(
        "{kind:?}: the L1 stopped {lost_after:?} after the kill; then {seen:?}; served again \
         {back:?} after the kill"
    );
    // Until the writer replays its queued invalidation, Redis itself holds the old entry for
    // other instances (ARCHITECTURE.md, "Failover"), and the L1 may keep what it read there;
    // the replay's message ends it like any other.
    assert_eq!(seen.stale_after_a_message, 0, "{seen:?}");
    assert_eq!(seen.stale_after_the_replay, 0, "{seen:?}");
}

async fn a_paused_redis_stops_the_l1_within_the_silence_bound(kind: Kind) {
    let redis = Topology::start(kind);
    let caches = caches(&redis, 2).await;
    let (writer, reader) = (&caches[0], &caches[1]);
    let source = Source::default();
    warm(&source, reader).await;

    let paused = Instant::now();
    redis.pause();
    source.set(1);
    // Times out against the frozen server: queued, to be replayed.
    writer.invalidate(KEY).await.expect("pattern");
    // The L1 serves the old value until it finds the feed silent, then nothing.
    let mut seen = Seen::new(reader);
    while seen.stopped.is_none() && paused.elapsed() < Duration::from_secs(10) {
        seen.read(&source, reader, 1, paused).await;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    // The next read goes to Redis (frozen: it times out) and then to the source.
    let after = source.read(reader, KEY).await;
    redis.resume();
    let back = read_until_served_again(&source, writer, reader, 1, paused, &mut seen).await;
    eprintln!("{kind:?}: after the pause: {seen:?}; served again {back:?} after the pause");
    let stopped = seen.stopped.expect("the L1 stops serving a silent feed");
    // The silence bound (3 s) plus a second of scheduling slack.
    assert!(stopped < Duration::from_secs(4), "{seen:?}");
    assert_eq!(after, 1, "no stale read once the L1 stopped: {seen:?}");
    assert!(seen.last_stale_l1 < seen.stopped, "{seen:?}");
    assert_eq!(seen.stale_after_a_message, 0, "{seen:?}");
    assert_eq!(seen.stale_after_the_replay, 0, "{seen:?}");
}

async fn writes_outside_the_cache_are_seen_within_the_max_ttl(kind: Kind) {
    let redis = Topology::start(kind);
    let caches = caches_with(&redis, 1, Duration::from_millis(400)).await;
    let cache = &caches[0];
    let source = Source::default();
    warm(&source, cache).await;
    // Someone changes the data and flushes Redis by hand: no message.
    source.set(1);
    let _: () = redis.query(&["FLUSHALL"]);
    let flushed = Instant::now();
    let mut last_stale = None;
    while flushed.elapsed() < Duration::from_secs(2) {
        let began = flushed.elapsed();
        if source.read(cache, KEY).await == 0 {
            last_stale = Some(began);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    eprintln!("{kind:?}: last stale read {last_stale:?} after FLUSHALL (max TTL 400 ms)");
    assert!(
        last_stale.is_none_or(|t| t < Duration::from_millis(400)),
        "{last_stale:?}"
    );
}

on_every_topology!(
    hits_cost_no_round_trip_and_writes_are_seen_elsewhere,
    a_set_reaches_other_instances_l1,
    coherence_across_three_caches,
    client_kill_type_pubsub_stops_the_l1_until_resubscribed,
    a_restart_stops_the_l1_until_resubscribed,
    a_paused_redis_stops_the_l1_within_the_silence_bound,
    writes_outside_the_cache_are_seen_within_the_max_ttl,
);
