//! `Cache`'s public methods on Redis and in process, one behaviour per test.

mod support;

use std::time::Duration;

use cache_runtime::{Cache, Fallback};
use integration_tests::{Deployment, Kind, Topology};
use support::{User, user};

/// A Redis cache with a key prefix.
async fn prefixed(redis: &Topology, prefix: &str) -> Cache {
    redis
        .cache_builder()
        .prefix(prefix)
        .op_timeout(Duration::from_secs(2))
        .fallback(Fallback::None)
        .build()
        .await
        .unwrap()
}

async fn each_store(check: impl AsyncFn(&Cache)) {
    check(&support::memory().await).await;
    for kind in [Kind::Single, Kind::Cluster] {
        let redis = Topology::start(kind);
        check(&support::redis_only(&redis).await).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_get_overwrite() {
    each_store(async |cache| {
        assert_eq!(cache.get::<User>("users:1").await, None);
        cache.set("users:1", &user(1, "ada"), None).await;
        assert_eq!(cache.get::<User>("users:1").await, Some(user(1, "ada")));
        cache.set("users:1", &user(1, "grace"), None).await;
        assert_eq!(cache.get::<User>("users:1").await, Some(user(1, "grace")));
        assert_eq!(cache.stats().totals.errors, 0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_removes_one_entry() {
    each_store(async |cache| {
        cache.set("users:1", &user(1, "ada"), None).await;
        cache.set("users:2", &user(2, "bob"), None).await;
        cache.delete("users:1").await;
        assert_eq!(cache.get::<User>("users:1").await, None);
        assert!(cache.get::<User>("users:2").await.is_some());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttl_is_honoured() {
    each_store(async |cache| {
        let short = Some(Duration::from_millis(300));
        cache.set("users:ttl", &user(2, "short"), short).await;
        assert!(cache.get::<User>("users:ttl").await.is_some());
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert_eq!(cache.get::<User>("users:ttl").await, None);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_many_and_set_many() {
    each_store(async |cache| {
        let (a, b) = (user(10, "a"), user(11, "b"));
        cache
            .set_many(&[("users:10", &a), ("users:11", &b)], None)
            .await;
        assert_eq!(
            cache
                .get_many::<User>(&["users:10", "users:missing", "users:11"])
                .await,
            vec![Some(a.clone()), None, Some(b.clone())]
        );
    })
    .await;
}

/// R24: a key that cannot be used reads as `None` without shifting the keys after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r24_get_many_with_an_unusable_key_keeps_the_others() {
    each_store(async |cache| {
        cache.set("users:1", &user(1, "a"), None).await;
        cache.set("users:2", &user(2, "b"), None).await;
        assert_eq!(
            cache
                .get_many::<User>(&["bad::key", "users:1", "", "users:2"])
                .await,
            vec![None, Some(user(1, "a")), None, Some(user(2, "b"))]
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalidation_exact_and_prefix() {
    each_store(async |cache| {
        cache.set("users:10", &user(10, "a"), None).await;
        cache.set("users:11", &user(11, "b"), None).await;
        cache.set("tasks:1", &"t1".to_owned(), None).await;
        cache.invalidate("users:10").await.unwrap();
        assert_eq!(cache.get::<User>("users:10").await, None);
        assert!(cache.get::<User>("users:11").await.is_some());
        cache.invalidate("users:*").await.unwrap();
        assert_eq!(cache.get::<User>("users:11").await, None);
        assert_eq!(cache.get::<String>("tasks:1").await.as_deref(), Some("t1"));
    })
    .await;
}

/// `clear` removes this cache's entries only: another prefix on the same Redis keeps its
/// entries, and keys that are not envelopes survive.
async fn clear_is_scoped_to_its_prefix(kind: Kind) {
    let redis = Topology::start(kind);
    let (cache, other) = (
        prefixed(&redis, "app-a:").await,
        prefixed(&redis, "app-b:").await,
    );
    let () = redis.query(&["SET", "app-a:foreign", "not ours"]);
    let () = redis.query(&["HSET", "app-a:users:hash", "f", "v"]);
    other.set("users:1", &user(1, "other"), None).await;
    cache.set("users:2", &user(2, "mine"), None).await;
    cache.set("tasks:1", &"t".to_owned(), None).await;
    cache.clear().await;
    assert_eq!(cache.get::<User>("users:2").await, None);
    assert_eq!(cache.get::<String>("tasks:1").await, None);
    assert_eq!(other.get::<User>("users:1").await, Some(user(1, "other")));
    let mut keys: Vec<String> = redis.query(&["KEYS", "app-a:*"]);
    keys.retain(|k| !k.starts_with("app-a:__inv:"));
    keys.sort();
    assert_eq!(
        keys,
        ["app-a:foreign", "app-a:users:hash"],
        "only envelopes deleted"
    );
    // entries written after a clear are served again
    cache.set("users:3", &user(3, "after"), None).await;
    assert_eq!(cache.get::<User>("users:3").await, Some(user(3, "after")));
    assert_eq!(cache.stats().totals.errors, 0, "{:?}", cache.stats());
}

async fn without_a_prefix_keys_read_as_templates(kind: Kind) {
    let redis = Topology::start(kind);
    let cache = support::redis_only(&redis).await;
    cache
        .set("users:42", &user(42, "k"), Some(Duration::from_secs(60)))
        .await;
    let mut keys: Vec<String> = redis.query(&["KEYS", "users:*"]);
    keys.sort();
    assert_eq!(keys, ["users:42"]);
    let raw: String = redis.query(&["GET", "users:42"]);
    assert!(
        raw.starts_with(r#"{"v":1,"#),
        "readable JSON envelope: {raw}"
    );
    assert!(raw.contains(r#""name":"k""#), "{raw}");
    let ttl: i64 = redis.query(&["PTTL", "users:42"]);
    assert!(ttl > 0 && ttl <= 60_000, "TTL applied: {ttl}");
}

/// R25: prefixes `a` and `ab` cannot collide (`a` + `busers:1` against `ab` + `users:1`).
async fn r25_prefixes_never_collide(kind: Kind) {
    let redis = Topology::start(kind);
    let (a, ab) = (prefixed(&redis, "a").await, prefixed(&redis, "ab").await);
    a.set("busers:1", &"from a".to_owned(), None).await;
    assert_eq!(ab.get::<String>("users:1").await, None);
    ab.invalidate("users:*").await.unwrap();
    assert_eq!(a.get::<String>("busers:1").await.as_deref(), Some("from a"));
    let mut keys: Vec<String> = redis.query(&["KEYS", "a:*"]);
    keys.retain(|k| !k.starts_with("a:__inv:"));
    assert_eq!(keys, ["a:busers:1"], "the prefix is followed by `:`");
}

/// A batch write is four round trips (the keys' exact markers bumped, markers read, absent
/// markers created, entries stored), whatever its size, each with its own operation timeout.
/// (On a cluster, each of them is a request per slot, sent concurrently.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_many_is_a_few_round_trips() {
    let redis = Topology::start(Kind::Single);
    let cache = support::redis_only(&redis).await;
    let keys: Vec<String> = (0..5_000).map(|i| format!("users:{i}")).collect();
    let value = user(1, "bulk");
    let entries: Vec<(&str, &User)> = keys.iter().map(|k| (k.as_str(), &value)).collect();
    cache.set("warm:up", &1, None).await; // loads the script
    redis.reset_stats();
    cache.set_many(&entries, None).await;
    assert_eq!(
        (
            redis.command_calls("mget"),
            redis.command_calls("evalsha") + redis.command_calls("eval")
        ),
        (1, 2),
        "one read, two scripts (the bump, then the absent markers)"
    );
    let stored: usize = redis.query(&["DBSIZE"]);
    assert!(stored >= 5_000, "{stored} keys");
    assert_eq!(cache.get::<User>("users:4999").await, Some(value));
}

integration_tests::on_every_topology!(
    with_l1:
    clear_is_scoped_to_its_prefix,
    without_a_prefix_keys_read_as_templates,
    r25_prefixes_never_collide,
);
