//! One conformance suite, run against the Redis store and the in-process store.

mod support;

use std::time::Duration;

use cache_runtime::Cache;
use integration_tests::RedisServer;
use support::{User, user};

async fn conformance(cache: &Cache, other: &Cache) {
    // get / set / overwrite
    assert_eq!(cache.get::<User>("users:1").await, None);
    cache.set("users:1", &user(1, "ada"), None).await;
    assert_eq!(cache.get::<User>("users:1").await, Some(user(1, "ada")));
    cache.set("users:1", &user(1, "grace"), None).await;
    assert_eq!(cache.get::<User>("users:1").await, Some(user(1, "grace")));

    // delete
    cache.delete("users:1").await;
    assert_eq!(cache.get::<User>("users:1").await, None);

    // TTL honoured
    cache
        .set(
            "users:ttl",
            &user(2, "short"),
            Some(Duration::from_millis(300)),
        )
        .await;
    assert!(cache.get::<User>("users:ttl").await.is_some());
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        cache.get::<User>("users:ttl").await,
        None,
        "entry outlived its TTL"
    );

    // multi get / set
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

    // invalidation: exact and prefix
    cache.set("tasks:1", &"t1".to_owned(), None).await;
    cache.invalidate("users:10").await.unwrap();
    assert_eq!(cache.get::<User>("users:10").await, None);
    assert_eq!(cache.get::<User>("users:11").await, Some(b.clone()));
    cache.invalidate("users:*").await.unwrap();
    assert_eq!(cache.get::<User>("users:11").await, None);
    assert_eq!(cache.get::<String>("tasks:1").await.as_deref(), Some("t1"));

    // clear is scoped to this cache: the other cache (another prefix) keeps its entries
    other.set("users:1", &user(1, "other"), None).await;
    cache.set("users:2", &user(2, "mine"), None).await;
    cache.clear().await;
    assert_eq!(cache.get::<User>("users:2").await, None);
    assert_eq!(cache.get::<String>("tasks:1").await, None);
    assert_eq!(other.get::<User>("users:1").await, Some(user(1, "other")));

    // entries written after a clear are served again
    cache.set("users:3", &user(3, "after"), None).await;
    assert_eq!(cache.get::<User>("users:3").await, Some(user(3, "after")));
    assert_eq!(cache.stats().totals.errors, 0, "{:?}", cache.stats());
}

#[tokio::test]
async fn memory_store_conforms() {
    let cache = support::memory().await;
    let other = support::memory().await;
    conformance(&cache, &other).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_store_conforms() {
    let server = RedisServer::start();
    let prefixed = |prefix| {
        Cache::builder()
            .redis_url(server.url())
            .prefix(prefix)
            .op_timeout(Duration::from_secs(2))
            .fallback(cache_runtime::Fallback::None)
            .build()
    };
    let (cache, other) = (
        prefixed("app-a:").await.unwrap(),
        prefixed("app-b:").await.unwrap(),
    );
    server.cli(&["SET", "app-a:foreign", "not ours"]);
    conformance(&cache, &other).await;
    // clear deleted our entries from Redis, and nothing foreign
    let keys: Vec<String> = server.query(&["KEYS", "app-a:users:*"]);
    assert_eq!(keys, vec!["app-a:users:3".to_owned()]);
    let foreign: Option<String> = server.query(&["GET", "app-a:foreign"]);
    assert_eq!(foreign.as_deref(), Some("not ours"));
    let ttl: i64 = server.query(&["PTTL", "app-a:users:3"]);
    assert!(ttl > 0 && ttl <= 300_000, "default TTL applied: {ttl}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_store_without_prefix_keeps_template_keys() {
    let server = RedisServer::start();
    let cache = support::redis_only(&server).await;
    cache
        .set("users:42", &user(42, "k"), Some(Duration::from_secs(60)))
        .await;
    let keys: Vec<String> = server.query(&["KEYS", "users:*"]);
    assert_eq!(keys, vec!["users:42".to_owned()]);
    let raw: String = server.query(&["GET", "users:42"]);
    assert!(
        raw.starts_with(r#"{"v":1,"#),
        "readable JSON envelope: {raw}"
    );
    assert!(raw.contains(r#""name":"k""#), "{raw}");
}
