//! R8 and R26: the in-process fallback compared the tier kind, not the outage it read in, so a
//! slow load from one outage was stored and served in a later one, after other instances had
//! invalidated through Redis in between; and the getters cleared the fallback as a side effect.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use cache_runtime::{Cache, Mode};
use integration_tests::{Deployment, Kind, Topology};

use crate::support::{self, SlowLoad, until_mode, user};

async fn r08_a_load_from_an_earlier_outage_is_not_served_in_a_later_one(kind: Kind) {
    let mut redis = Topology::start(kind);
    let a = support::redis_with_fallback(&redis).await;
    let b = support::redis_only(&redis).await;
    let db = Arc::new(Mutex::new(user(1, "old")));

    // Outage 1: A reads in process; a slow load starts.
    redis.kill();
    until_mode(&a, Mode::Memory).await;
    let slow = SlowLoad::start(&a, &db).await;

    // Redis returns; instance B writes through it.
    redis.restart();
    until_mode(&a, Mode::Redis).await;
    until_mode(&b, Mode::Redis).await;
    *db.lock().unwrap() = user(1, "new");
    b.invalidate("users:*").await.unwrap();

    // Outage 2: the slow load finishes now.
    redis.kill();
    until_mode(&a, Mode::Memory).await;
    assert_eq!(slow.finish().await, "old");

    let load = async { Ok::<_, ()>(db.lock().unwrap().clone()) };
    let read = a.get_or_load("users:1", None, load).await.unwrap();
    assert_eq!(
        read.name, "new",
        "the outage-1 load must not be served in outage 2"
    );
}

/// An entry the fallback stored in one outage is not served in the next: other instances may
/// have invalidated it through Redis in between.
async fn r08_an_entry_from_an_earlier_outage_is_not_served_in_a_later_one(kind: Kind) {
    let mut redis = Topology::start(kind);
    let a = support::redis_with_fallback(&redis).await;
    let b = support::redis_only(&redis).await;
    let db = Mutex::new(user(1, "old"));
    let read = async |cache: &Cache| {
        let load = async { Ok::<_, ()>(db.lock().unwrap().clone()) };
        cache.get_or_load("users:1", None, load).await.unwrap().name
    };
    redis.kill();
    until_mode(&a, Mode::Memory).await;
    assert_eq!(read(&a).await, "old");
    redis.restart();
    until_mode(&a, Mode::Redis).await;
    until_mode(&b, Mode::Redis).await;
    *db.lock().unwrap() = user(1, "new");
    b.invalidate("users:*").await.unwrap();
    redis.kill();
    until_mode(&a, Mode::Memory).await;
    assert_eq!(read(&a).await, "new");
}

/// The getters change nothing: an entry the fallback serves stays served however often mode,
/// stats, health and Debug are read.
async fn r26_getters_have_no_side_effect(kind: Kind) {
    let mut redis = Topology::start(kind);
    let cache = support::redis_with_fallback(&redis).await;
    redis.kill();
    until_mode(&cache, Mode::Memory).await;
    let loader = support::Loader::default();
    cache
        .get_or_load("users:1", None, loader.load(1))
        .await
        .unwrap();
    for _ in 0..100 {
        let _ = (cache.mode(), cache.stats(), format!("{cache:?}"));
        let _ = cache.health().await;
    }
    cache
        .get_or_load("users:1", None, loader.load(1))
        .await
        .unwrap();
    assert_eq!(loader.runs(), 1, "still served from the fallback");
}

/// R9: while Redis is enabled but unreachable, in-process entries live at most
/// `CACHE_FALLBACK_TTL`, whatever their own TTL: other instances may write meanwhile.
async fn r09_fallback_entries_live_at_most_the_fallback_ttl(kind: Kind) {
    let mut redis = Topology::start(kind);
    let cache = redis
        .cache_builder()
        .op_timeout(support::OP_TIMEOUT)
        .connect_timeout(Duration::from_millis(200))
        .fallback_ttl(Duration::from_millis(500))
        .build()
        .await
        .unwrap();
    redis.kill();
    until_mode(&cache, Mode::Memory).await;
    let loader = support::Loader::default();
    let ttl = Some(Duration::from_secs(300));
    cache
        .get_or_load("users:1", ttl, loader.load(1))
        .await
        .unwrap();
    cache
        .get_or_load("users:1", ttl, loader.load(1))
        .await
        .unwrap();
    assert_eq!(loader.runs(), 1, "served in process meanwhile");
    let expired = support::eventually(Duration::from_secs(5), async || {
        cache.get::<i32>("users:1").await.is_none()
    })
    .await;
    assert!(expired, "the entry outlived the fallback TTL");
}

integration_tests::on_every_topology!(
    with_l1:
    r08_a_load_from_an_earlier_outage_is_not_served_in_a_later_one,
    r08_an_entry_from_an_earlier_outage_is_not_served_in_a_later_one,
    r26_getters_have_no_side_effect,
    r09_fallback_entries_live_at_most_the_fallback_ttl,
);
