//! What only a Redis Cluster can do to the cache: a master fails over to its replica, one
//! master of three dies, a write reaches a master but not its replica; and many instances on
//! one cluster. (Everything that holds on one Redis runs on a cluster too, in the other suites.)

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cache_runtime::{Cache, Fallback, Mode};
use integration_tests::{Deployment, RedisCluster, wait_until};

/// The prefix marker `users:*` bumps (no cache prefix).
const USERS_MARKER: &str = "__inv:users:*";

fn on(cluster: &RedisCluster) -> cache_runtime::CacheBuilder {
    cluster
        .cache_builder()
        .op_timeout(Duration::from_millis(500))
        .connect_timeout(Duration::from_millis(500))
}

/// Builds the cache and waits until it serves from Redis: connecting to every node of a
/// cluster can outlast the connect timeout on a loaded machine (recovery then finishes it).
async fn ready(builder: cache_runtime::CacheBuilder) -> Cache {
    let cache = builder.build().await.unwrap();
    let up = wait_until(Duration::from_secs(15), || cache.mode() == Mode::Redis).await;
    assert!(up, "{:?}", cache.stats());
    cache
}

/// Reads `users:1` through `cache`, loading the current version from the "database".
async fn read(cache: &Cache, db: &AtomicU64) -> u64 {
    let load = async { Ok::<_, ()>(db.load(Ordering::SeqCst)) };
    cache.get_or_load("users:1", None, load).await.unwrap()
}

/// A write loop while the master holding the `users:*` marker is killed and its replica takes
/// over: callers see no error, no read after a completed write returns an older version, and
/// caching in Redis resumes once the old master is back as a replica (with
/// `REDIS_WAIT_REPLICAS=1` an invalidation is confirmed only when a replica has it, so the
/// shard needs a replica again).
///
/// The reader runs without an in-process fallback: a degraded instance's own entries may lag
/// another instance's writes by up to `CACHE_FALLBACK_TTL` (documented), which is not what
/// this test is about.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_loses_no_invalidation_and_serves_nothing_stale() {
    let cluster = RedisCluster::builder()
        .replicas(1)
        .node_timeout_ms(1_000)
        .start();
    let writer = ready(on(&cluster).wait_replicas(1)).await;
    let reader = ready(on(&cluster).wait_replicas(1).fallback(Fallback::None)).await;
    let db = Arc::new(AtomicU64::new(0));
    let victim = cluster.master_of(USERS_MARKER);

    // The cluster's side of the story, on a thread of its own: kill, failover, rejoin.
    let (tx, rx) = std::sync::mpsc::channel::<(&'static str, Instant)>();
    let chaos = std::thread::spawn(move || {
        let mut cluster = cluster;
        std::thread::sleep(Duration::from_millis(500));
        cluster.node_mut(victim).kill();
        tx.send(("killed", Instant::now())).unwrap();
        cluster.wait_for_master_of(USERS_MARKER);
        tx.send(("promoted", Instant::now())).unwrap();
        cluster.node_mut(victim).restart();
        cluster.wait_until_ready();
        tx.send(("rejoined", Instant::now())).unwrap();
        cluster
    });

    let mut events = std::collections::BTreeMap::new();
    let (mut writes, mut stale, mut stale_unconfirmed) = (0u64, 0u64, 0u64);
    let mut resumed = None;
    let deadline = Instant::now() + Duration::from_secs(40);
    while Instant::now() < deadline {
        events.extend(rx.try_iter());
        writes += 1;
        db.store(writes, Ordering::SeqCst);
        writer.invalidate("users:*").await.unwrap();
        // Confirmed: applied in Redis, not queued for a replay.
        let confirmed = writer.mode() == Mode::Redis && writer.stats().pending_invalidations == 0;
        assert_eq!(
            read(&writer, &db).await,
            writes,
            "the writer read its own write"
        );
        let seen = read(&reader, &db).await;
        if seen < writes {
            if confirmed {
                stale += 1;
            } else {
                stale_unconfirmed += 1;
            }
        }
        let both_in_redis = writer.mode() == Mode::Redis && reader.mode() == Mode::Redis;
        if events.contains_key("rejoined") && both_in_redis && confirmed {
            resumed.get_or_insert_with(Instant::now);
            if writes % 50 == 0 {
                break;
            }
        }
    }
    let cluster = chaos.join().unwrap();
    let killed = events["killed"];
    let since_kill = |at: Instant| at.duration_since(killed);
    let resumed = resumed.expect("caching in Redis resumed");
    let (w, r) = (writer.stats(), reader.stats());
    eprintln!(
        "failover: {writes} writes; promoted after {:?}, old master back after {:?}, caching \
         resumed after {:?}; store errors (callers saw none) {} + {}; stale reads {stale} (after unconfirmed writes: \
         {stale_unconfirmed}); writer degraded {:.1} s",
        since_kill(events["promoted"]),
        since_kill(events["rejoined"]),
        since_kill(resumed),
        w.totals.errors,
        r.totals.errors,
        w.degraded_seconds,
    );
    assert_eq!(stale, 0, "reads older than a confirmed write");
    // Caching really resumed: hits from Redis again, on both.
    for _ in 0..3 {
        assert_eq!(read(&reader, &db).await, writes);
    }
    let hits = reader.stats().totals.hits;
    assert_eq!(read(&reader, &db).await, writes);
    assert_eq!(reader.stats().totals.hits, hits + 1);
    assert!(cluster.masters().len() == 3);
}

/// A bump that reached its master but not the replica, then a failover to that replica: with
/// `REDIS_WAIT_REPLICAS=1` the invalidation was not confirmed, so it was kept and replayed,
/// and the entry from before it is never served. Returns what an instance reads afterwards.
async fn invalidation_then_failover_before_replication(wait_replicas: u32) -> u64 {
    // A password, so that the replica can be kept from resyncing (a wrong `masterauth`).
    let mut cluster = RedisCluster::builder()
        .replicas(1)
        .node_timeout_ms(1_000)
        .requirepass("s3cret")
        .start();
    let cache = ready(on(&cluster).wait_replicas(wait_replicas)).await;
    let db = AtomicU64::new(1);
    assert_eq!(read(&cache, &db).await, 1);
    assert_eq!(read(&cache, &db).await, 1, "cached");
    let master = cluster.master_of(USERS_MARKER);
    let replica = cluster.replica_of(master).expect("a replica");
    cluster.wait_for_replication(master);

    // The replica loses its link to the master and cannot log in again; the bump reaches
    // the master only, and the master dies with it.
    let replica_node = &cluster.nodes()[replica];
    let () = replica_node.query(&["CONFIG", "SET", "masterauth", "wrong"]);
    let _: u64 = replica_node.query(&["CLIENT", "KILL", "TYPE", "master"]);
    db.store(2, Ordering::SeqCst);
    cache.invalidate("users:*").await.unwrap();
    cluster.node_mut(master).kill();
    let () = cluster.nodes()[replica].query(&["CONFIG", "SET", "masterauth", "s3cret"]);
    let promoted = cluster.wait_for_master_of(USERS_MARKER);
    assert_eq!(promoted, replica);
    cluster.node_mut(master).restart();
    cluster.wait_until_ready();
    // Once the writer serves from Redis again (its queue replayed), what does an instance
    // that saw no outage read? (The writer itself saw one, so it distrusts what it cached
    // before it.)
    assert!(
        wait_until(Duration::from_secs(20), || cache.mode() == Mode::Redis
            && cache.stats().pending_invalidations == 0)
        .await,
        "{:?}",
        cache.stats()
    );
    let other = ready(on(&cluster)).await;
    read(&other, &db).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_wait_replicas_an_unreplicated_invalidation_survives_a_failover() {
    assert_eq!(invalidation_then_failover_before_replication(1).await, 2);
}

/// The control: the same scenario without `WAIT` serves the entry from before the
/// invalidation (the failover rolled the marker back), which is why `REDIS_WAIT_REPLICAS`
/// exists.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_wait_replicas_a_failover_can_roll_an_invalidation_back() {
    assert_eq!(invalidation_then_failover_before_replication(0).await, 1);
}

/// One master of three dies (no replica to take over): the cache degrades as one dead
/// server would, callers get their values without errors, health names the dead node, and
/// caching resumes when it returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_dead_master_degrades_the_cache_without_errors() {
    let mut cluster = RedisCluster::builder().persistent().start();
    let cache = ready(on(&cluster)).await;
    let health = cache.health().await.redis.unwrap();
    assert!(health.reachable);
    assert_eq!(health.nodes.len(), 3, "{health:?}");
    assert!(
        health
            .nodes
            .iter()
            .all(|n| n.reachable && n.role == "master")
    );

    let dead = cluster.master_of("users:1");
    let port = cluster.nodes()[dead].port();
    cluster.node_mut(dead).kill();
    for i in 0..50u64 {
        let got = cache
            .get_or_load(&format!("users:{i}"), None, async { Ok::<_, ()>(i) })
            .await;
        assert_eq!(got, Ok(i));
    }
    assert_eq!(cache.mode(), Mode::Memory, "{:?}", cache.stats());
    let health = cache.health().await.redis.unwrap();
    assert!(!health.reachable);
    let down: Vec<_> = health.nodes.iter().filter(|n| !n.reachable).collect();
    assert_eq!(down.len(), 1, "{health:?}");
    assert!(down[0].address.ends_with(&format!(":{port}")), "{health:?}");

    cluster.restart();
    assert!(wait_until(Duration::from_secs(15), || cache.mode() == Mode::Redis).await);
    cache.set("users:99", &99, None).await;
    assert_eq!(cache.get::<u64>("users:99").await, Some(99));
    assert!(cluster.query::<bool>(&["EXISTS", "users:99"]));
}

/// Three instances on one cluster (three caches with their own connections): writes on one,
/// reads on the other two right after each write returns. Every read sees the write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_on_one_cluster_never_read_stale() {
    const WRITES: u64 = 10_000;
    let cluster = RedisCluster::start();
    let caches = cluster
        .caches(3, |b| {
            b.op_timeout(Duration::from_secs(2))
                .fallback(Fallback::None)
                .connect_timeout(Duration::from_secs(5))
        })
        .await;
    let db = AtomicU64::new(0);
    let mut stale = 0;
    for write in 1..=WRITES {
        db.store(write, Ordering::SeqCst);
        // Exact keys, prefixes and the key's own entry, in turn.
        let pattern = match write % 3 {
            0 => "users:1",
            1 => "users:*",
            _ => "*",
        };
        caches[0].invalidate(pattern).await.unwrap();
        for reader in &caches[1..] {
            if read(reader, &db).await != write {
                stale += 1;
            }
        }
    }
    let hits: u64 = caches.iter().map(|c| c.stats().totals.hits).sum();
    let errors: u64 = caches.iter().map(|c| c.stats().totals.errors).sum();
    eprintln!(
        "{WRITES} writes, {} reads: {stale} stale, {hits} hits",
        2 * WRITES
    );
    assert_eq!((stale, errors), (0, 0));
    // The second reader's read after the first's fill is a hit: the loop did exercise the cache.
    assert!(hits >= WRITES, "{hits} hits");
}

/// A cluster that speaks TLS only and wants a password: the cache serves hits over it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_cluster_with_a_password_serves_hits() {
    let cluster = RedisCluster::builder().tls().requirepass("s3cret").start();
    let cache = ready(on(&cluster).fallback(Fallback::None)).await;
    assert_eq!(cache.mode(), Mode::Redis);
    let db = AtomicU64::new(7);
    assert_eq!(read(&cache, &db).await, 7);
    assert_eq!(read(&cache, &db).await, 7);
    assert_eq!(cache.stats().totals.hits, 1);
    assert!(cluster.query::<bool>(&["EXISTS", "users:1"]));
    let health = cache.health().await.redis.unwrap();
    assert!(health.nodes.iter().all(|n| n.reachable), "{health:?}");
}

/// Braces in the prefix would be a hash tag putting every key in one slot: refused on a
/// cluster, whether the cache makes its client or is given a shared one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prefix_with_braces_is_refused_on_a_cluster() {
    let cluster = RedisCluster::start();
    let refused = |e: Option<cache_runtime::ConfigError>| {
        let e = e.expect("refused");
        assert!(e.to_string().contains("CACHE_PREFIX"), "{e}");
    };
    refused(cluster.cache_builder().prefix("{app}").build().await.err());
    let mut config = cache_runtime::Config::default();
    config.redis_enabled = true;
    config.redis_cluster_nodes = cluster.urls();
    let shared = cache_runtime::RedisClient::connect(&config).await.unwrap();
    let builder = Cache::builder().redis_client(shared.clone());
    refused(builder.prefix("a}b").build().await.err());
    let fine = Cache::builder().redis_client(shared).prefix("app").build();
    assert!(fine.await.is_ok());
}

/// The exact marker shares its entry's slot (its name's hash tag is the entry's key): a hit of
/// `users:1` reads three slots, not four, and invalidating `users:1` is one script call, which
/// also deletes the entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exact_marker_lives_in_its_entrys_slot() {
    let cluster = RedisCluster::start();
    let cache = ready(on(&cluster).fallback(Fallback::None)).await;
    let db = AtomicU64::new(1);
    assert_eq!(read(&cache, &db).await, 1);
    cache.invalidate("users:1").await.unwrap(); // loads the script where it is needed
    assert_eq!(read(&cache, &db).await, 1);
    cluster.reset_stats();
    assert_eq!(read(&cache, &db).await, 1);
    assert_eq!(cache.stats().totals.hits, 1);
    assert_eq!(cluster.command_calls("mget"), 3, "one MGET per slot read");
    cluster.reset_stats();
    cache.invalidate("users:1").await.unwrap();
    // (Redis counts the DEL the script runs as a command too, so only the script is counted.)
    assert_eq!(cluster.command_calls("evalsha"), 1, "one script");
    assert!(
        !cluster.query::<bool>(&["EXISTS", "users:1"]),
        "the entry is gone"
    );
}
