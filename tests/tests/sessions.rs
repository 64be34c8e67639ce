//! The session store's guarantees, each tried the way it could break: on one Redis, on a
//! Redis Cluster (three masters: a user's index and their sessions live in different slots)
//! and in process. Several stores with their own connections stand for several app instances.

mod support;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use cache_runtime::session::{NewSession, SessionConfig, SessionError, SessionId, SessionStore};
use integration_tests::{Deployment, Kind, Topology};
use serde_json::{Map, Value, json};

/// Where a case runs.
#[derive(Debug, Clone, Copy)]
enum Backend {
    Memory,
    Redis(Kind),
}

/// A deployment (none in process) and `n` stores on it, each with its own client.
struct Setup {
    redis: Option<Topology>,
    stores: Vec<SessionStore>,
}

impl Setup {
    async fn new(backend: Backend, n: usize, config: SessionConfig) -> Self {
        match backend {
            Backend::Memory => {
                // One process: every "instance" shares the one in-process store.
                let store = SessionStore::memory(config);
                Self {
                    redis: None,
                    stores: vec![store; n],
                }
            }
            Backend::Redis(kind) => {
                let redis = Topology::start(kind);
                let caches = redis
                    .caches(n, |b| {
                        b.op_timeout(Duration::from_secs(2))
                            .connect_timeout(Duration::from_secs(5))
                    })
                    .await;
                let stores = caches
                    .iter()
                    .map(|c| SessionStore::for_cache(c, config.clone()))
                    .collect();
                Self {
                    redis: Some(redis),
                    stores,
                }
            }
        }
    }

    fn store(&self) -> &SessionStore {
        &self.stores[0]
    }

    /// Every key in Redis (none in process).
    fn keys(&self) -> Vec<String> {
        self.redis
            .as_ref()
            .map(|r| r.query(&["KEYS", "*"]))
            .unwrap_or_default()
    }
}

fn config(idle_ms: u64, absolute_ms: u64) -> SessionConfig {
    let mut c = SessionConfig::default();
    c.idle_ttl = Duration::from_millis(idle_ms);
    c.absolute_ttl = Duration::from_millis(absolute_ms);
    c
}

fn long() -> SessionConfig {
    config(600_000, 3_600_000)
}

fn patch(pairs: &[(&str, Value)]) -> Map<String, Value> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}

fn new(user: &str) -> NewSession {
    NewSession::new(user, format!("name-{user}"), "user")
}

macro_rules! on_every_backend {
    ($($case:ident),* $(,)?) => {
        mod memory {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() { super::$case(super::Backend::Memory).await; })*
        }
        mod single {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() { super::$case(super::Backend::Redis(integration_tests::Kind::Single)).await; })*
        }
        mod cluster {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() { super::$case(super::Backend::Redis(integration_tests::Kind::Cluster)).await; })*
        }
    };
}

on_every_backend!(
    lifecycle,
    redis_holds_a_hash_of_the_id_never_the_id,
    a_client_chosen_id_is_never_adopted,
    idle_timeout_slides_and_ends,
    absolute_timeout_ends_a_session_in_use,
    concurrent_updates_of_different_fields_all_survive,
    nothing_recreates_a_deleted_session,
    regenerate_moves_the_data_and_kills_the_old_id,
    regenerate_races_logout_one_wins,
    delete_user_ends_every_session_across_instances,
    expired_sessions_leave_no_index_entries,
    clear_and_count,
);

async fn lifecycle(backend: Backend) {
    let s = Setup::new(backend, 1, long()).await;
    let store = s.store();
    let data = patch(&[("cart", json!([1, 2]))]);
    let (id, created) = store.create(new("7").data(data)).await.unwrap();
    assert_eq!(created.user_id, "7");
    assert_eq!(created.username, "name-7");
    assert_eq!(created.data["cart"], json!([1, 2]));
    assert!(created.expires_at > created.created_at);
    assert!(created.absolute_expires_at >= created.expires_at);

    let got = store.get(&id).await.unwrap().expect("alive");
    assert_eq!(got.data, created.data);
    assert_eq!(got.role, "user");

    let updated = store
        .update(
            &id,
            patch(&[("theme", json!("dark")), ("cart", Value::Null)]),
        )
        .await
        .unwrap()
        .expect("alive");
    assert_eq!(updated.data, patch(&[("theme", json!("dark"))]));
    assert_eq!(store.get(&id).await.unwrap().unwrap().data, updated.data);

    let listed = store.list_user("7").await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id_hint, id.hint());
    assert!(store.list_user("8").await.unwrap().is_empty());

    assert!(store.delete(&id).await.unwrap());
    assert!(!store.delete(&id).await.unwrap());
    assert_eq!(store.get(&id).await.unwrap(), None);
    assert!(store.list_user("7").await.unwrap().is_empty());
    let stats = store.stats();
    assert_eq!((stats.created, stats.hits, stats.misses), (1, 2, 1));
    assert_eq!((stats.updated, stats.deleted), (1, 1));
    assert!(s.keys().is_empty(), "left behind: {:?}", s.keys());
}

async fn redis_holds_a_hash_of_the_id_never_the_id(backend: Backend) {
    let s = Setup::new(backend, 1, long()).await;
    let Some(redis) = &s.redis else { return };
    let (id, _) = s.store().create(new("7")).await.unwrap();
    let keys = s.keys();
    assert_eq!(keys.len(), 2, "{keys:?}"); // the record and the user's index
    for key in &keys {
        assert!(!key.contains(id.expose()), "{key}");
        let dump: Vec<String> = match redis.query::<String>(&["TYPE", key]).as_str() {
            "hash" => redis.query(&["HGETALL", key]),
            "zset" => redis.query(&["ZRANGE", key, "0", "-1"]),
            other => panic!("{key} is a {other}"),
        };
        assert!(dump.iter().all(|v| !v.contains(id.expose())), "{dump:?}");
        let ttl: i64 = redis.query(&["PTTL", key]);
        assert!(ttl > 0, "{key} has no TTL");
    }
    // The record is found by the id's hash: the hint is its first characters.
    let record = keys.iter().find(|k| !k.contains(":user:")).unwrap();
    assert!(
        record.starts_with(&format!("session:{}", id.hint())),
        "{record}"
    );
}

async fn a_client_chosen_id_is_never_adopted(backend: Backend) {
    let s = Setup::new(backend, 1, long()).await;
    let chosen = SessionId::parse(&"ab".repeat(32)).unwrap();
    assert_eq!(s.store().get(&chosen).await.unwrap(), None);
    assert_eq!(
        s.store()
            .update(&chosen, patch(&[("a", json!(1))]))
            .await
            .unwrap(),
        None
    );
    assert_eq!(s.store().regenerate(&chosen).await.unwrap(), None);
    assert!(
        s.keys().is_empty(),
        "an unknown id created something: {:?}",
        s.keys()
    );
    let (id, _) = s.store().create(new("7")).await.unwrap();
    assert_ne!(id, chosen);
}

async fn idle_timeout_slides_and_ends(backend: Backend) {
    let s = Setup::new(backend, 1, config(1_500, 60_000)).await;
    let store = s.store();
    let (id, _) = store.create(new("7")).await.unwrap();
    // Used every 500 ms for 3 s (twice the idle timeout): it stays.
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(
            store.get(&id).await.unwrap().is_some(),
            "ended while in use"
        );
    }
    // Left alone past the idle timeout: gone, and an update cannot bring it back.
    tokio::time::sleep(Duration::from_millis(1_900)).await;
    assert_eq!(store.get(&id).await.unwrap(), None);
    assert_eq!(
        store.update(&id, patch(&[("a", json!(1))])).await.unwrap(),
        None
    );
    assert!(store.list_user("7").await.unwrap().is_empty());
}

async fn absolute_timeout_ends_a_session_in_use(backend: Backend) {
    let s = Setup::new(backend, 1, config(1_000, 2_000)).await;
    let store = s.store();
    let (id, created) = store.create(new("7")).await.unwrap();
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(1_700) {
        let got = store
            .get(&id)
            .await
            .unwrap()
            .expect("alive before the absolute timeout");
        assert_eq!(got.absolute_expires_at, created.absolute_expires_at);
        assert!(got.expires_at <= got.absolute_expires_at);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        store.get(&id).await.unwrap(),
        None,
        "outlived its absolute timeout"
    );
}

async fn concurrent_updates_of_different_fields_all_survive(backend: Backend) {
    let s = Setup::new(backend, 3, long()).await;
    let (id, _) = s.store().create(new("7")).await.unwrap();
    let tasks: Vec<_> = (0..100)
        .map(|i| {
            let store = s.stores[i % 3].clone();
            let id = id.clone();
            tokio::spawn(async move {
                store
                    .update(&id, patch(&[(&format!("f{i}"), json!(i))]))
                    .await
                    .unwrap()
                    .expect("alive")
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let data = s.stores[1].get(&id).await.unwrap().unwrap().data;
    assert_eq!(data.len(), 100, "lost updates: {data:?}");
    for i in 0..100 {
        assert_eq!(data[&format!("f{i}")], json!(i));
    }
}

async fn nothing_recreates_a_deleted_session(backend: Backend) {
    let s = Setup::new(backend, 2, long()).await;
    for _ in 0..20 {
        let (id, _) = s.stores[0].create(new("7")).await.unwrap();
        // A long request on one instance keeps saving while another logs out.
        let saver = {
            let store = s.stores[1].clone();
            let id = id.clone();
            tokio::spawn(async move {
                let mut saved_after_logout = 0;
                for i in 0..50 {
                    if store
                        .update(&id, patch(&[("step", json!(i))]))
                        .await
                        .unwrap()
                        .is_none()
                    {
                        saved_after_logout += 1;
                    }
                }
                saved_after_logout
            })
        };
        tokio::time::sleep(Duration::from_millis(2)).await;
        s.stores[0].delete(&id).await.unwrap();
        saver.await.unwrap();
        assert_eq!(s.stores[0].get(&id).await.unwrap(), None, "resurrected");
        assert_eq!(s.stores[1].get(&id).await.unwrap(), None, "resurrected");
    }
    assert!(s.keys().is_empty(), "left behind: {:?}", s.keys());
}

async fn regenerate_moves_the_data_and_kills_the_old_id(backend: Backend) {
    let s = Setup::new(backend, 1, long()).await;
    let store = s.store();
    let (old, created) = store
        .create(new("7").data(patch(&[("cart", json!(3))])))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let (new_id, moved) = store.regenerate(&old).await.unwrap().expect("alive");
    assert_ne!(new_id, old);
    assert_eq!(store.get(&old).await.unwrap(), None);
    assert_eq!(moved.data, created.data);
    assert_eq!(moved.created_at, created.created_at);
    assert_eq!(
        moved.absolute_expires_at, created.absolute_expires_at,
        "rotation extended it"
    );
    assert!(moved.last_accessed > created.last_accessed);
    assert_eq!(
        store.get(&new_id).await.unwrap().unwrap().data,
        created.data
    );
    let listed = store.list_user("7").await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id_hint, new_id.hint());
    assert_eq!(store.regenerate(&old).await.unwrap(), None);
}

async fn regenerate_races_logout_one_wins(backend: Backend) {
    let s = Setup::new(backend, 2, long()).await;
    for _ in 0..30 {
        let (id, _) = s.stores[0].create(new("7")).await.unwrap();
        let (a, b) = (s.stores[0].clone(), s.stores[1].clone());
        let (id_a, id_b) = (id.clone(), id.clone());
        let (regenerated, deleted) = tokio::join!(
            tokio::spawn(async move { a.regenerate(&id_a).await.unwrap() }),
            tokio::spawn(async move { b.delete(&id_b).await.unwrap() }),
        );
        let (regenerated, deleted) = (regenerated.unwrap(), deleted.unwrap());
        assert!(regenerated.is_some() != deleted, "both or neither won");
        let live = s.stores[0].list_user("7").await.unwrap().len();
        assert_eq!(live, usize::from(regenerated.is_some()));
        s.stores[0].delete_user("7").await.unwrap();
    }
}

async fn delete_user_ends_every_session_across_instances(backend: Backend) {
    let s = Setup::new(backend, 3, long()).await;
    let mut ids = Vec::new();
    for i in 0..50 {
        ids.push(s.stores[i % 3].create(new("7")).await.unwrap().0);
    }
    let (other, _) = s.store().create(new("8")).await.unwrap();
    assert_eq!(s.stores[1].list_user("7").await.unwrap().len(), 50);
    assert_eq!(s.stores[2].delete_user("7").await.unwrap(), 50);
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(s.stores[i % 3].get(id).await.unwrap(), None);
    }
    assert!(
        s.store().get(&other).await.unwrap().is_some(),
        "another user's session ended"
    );
    assert!(s.store().list_user("7").await.unwrap().is_empty());
}

async fn expired_sessions_leave_no_index_entries(backend: Backend) {
    let s = Setup::new(backend, 1, config(500, 60_000)).await;
    for _ in 0..5 {
        s.store().create(new("7")).await.unwrap();
    }
    assert_eq!(s.store().list_user("7").await.unwrap().len(), 5);
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert!(s.store().list_user("7").await.unwrap().is_empty());
    // The list pruned the index; and an index never outlives its last absolute expiry.
    assert!(s.keys().is_empty(), "dangling: {:?}", s.keys());
    s.store().create(new("7")).await.unwrap();
    if let Some(redis) = &s.redis {
        let index = s.keys().into_iter().find(|k| k.contains(":user:")).unwrap();
        let ttl: i64 = redis.query(&["PTTL", &index]);
        assert!(ttl > 0 && ttl <= 60_000, "{ttl}");
    }
    assert_eq!(s.store().count().await.unwrap().active, 1);
}

async fn clear_and_count(backend: Backend) {
    let s = Setup::new(backend, 1, long()).await;
    for user in ["1", "2", "2", "3"] {
        s.store().create(new(user)).await.unwrap();
    }
    let count = s.store().count().await.unwrap();
    assert_eq!((count.active, count.users), (4, 3));
    assert_eq!(s.store().clear().await.unwrap(), 4);
    assert_eq!(s.store().count().await.unwrap().active, 0);
    assert!(s.keys().is_empty(), "left behind: {:?}", s.keys());
}

/// 10^6 ids: no duplicate, and every byte value about equally frequent in their hex digits'
/// bytes (a stuck or biased generator fails one or the other).
#[test]
fn a_million_ids_are_distinct_and_uniform() {
    const N: usize = 1_000_000;
    let mut seen = HashSet::with_capacity(N);
    let mut counts = [0u64; 256];
    for _ in 0..N {
        let id = SessionId::generate().unwrap();
        let text = id.expose();
        for pair in text.as_bytes().chunks(2) {
            let byte = u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap();
            counts[usize::from(byte)] += 1;
        }
        assert!(seen.insert(text.to_owned()), "duplicate id");
    }
    // 32 * 10^6 bytes over 256 values: 125,000 each, sd ~353; 1.5% is > 5 sd.
    let expected = (N as u64 * 32) / 256;
    for (value, &count) in counts.iter().enumerate() {
        let off = count.abs_diff(expected);
        assert!(
            off < expected * 3 / 200,
            "byte {value}: {count} vs {expected}"
        );
    }
    // Chi-squared over 255 degrees of freedom: far above 400 means bias.
    let chi: f64 = counts
        .iter()
        .map(|&c| (c as f64 - expected as f64).powi(2) / expected as f64)
        .sum();
    assert!(chi < 400.0, "chi-squared {chi}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_of_another_type_or_shape_is_a_miss_not_a_panic() {
    let s = Setup::new(Backend::Redis(Kind::Single), 1, long()).await;
    let redis = s.redis.as_ref().unwrap();
    let (id, _) = s.store().create(new("7")).await.unwrap();
    let key = s
        .keys()
        .into_iter()
        .find(|k| !k.contains(":user:"))
        .unwrap();
    redis.query::<()>(&["DEL", &key]);
    redis.query::<()>(&["SET", &key, "not a session"]);
    assert_eq!(s.store().get(&id).await.unwrap(), None);
    assert_eq!(
        s.store()
            .update(&id, patch(&[("a", json!(1))]))
            .await
            .unwrap(),
        None
    );
    redis.query::<()>(&["DEL", &key]);
    redis.query::<()>(&["HSET", &key, "uid", "7", "a", "garbage"]);
    assert_eq!(s.store().get(&id).await.unwrap(), None);
    assert!(
        !s.store()
            .list_user("7")
            .await
            .unwrap()
            .iter()
            .any(|l| l.id_hint == id.hint())
    );
}

/// Redis enabled but down: every operation answers `Unavailable` (never a new or empty
/// session), within one operation timeout, then at once while the breaker is open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_is_unavailable_fast_never_a_session() {
    let mut redis = Topology::start(Kind::Single);
    let cache = redis
        .cache_builder()
        .op_timeout(support::OP_TIMEOUT)
        .build()
        .await
        .unwrap();
    let store = SessionStore::for_cache(&cache, long());
    let (id, _) = store.create(new("7")).await.unwrap();
    redis.kill();
    for _ in 0..5 {
        let started = Instant::now();
        assert!(matches!(
            store.get(&id).await,
            Err(SessionError::Unavailable)
        ));
        assert!(
            started.elapsed() < support::OP_TIMEOUT * 3,
            "{:?}",
            started.elapsed()
        );
    }
    assert!(matches!(
        store.create(new("8")).await,
        Err(SessionError::Unavailable)
    ));
    assert!(matches!(
        store.delete_user("7").await,
        Err(SessionError::Unavailable)
    ));
    assert!(!cache.redis().unwrap().available(), "the breaker opened");
    let started = Instant::now();
    for _ in 0..1_000 {
        assert!(store.get(&id).await.is_err());
    }
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert!(store.stats().unavailable >= 1_000);

    // Back: the session, kept by Redis... not persistent here, so the store answers "gone"
    // again rather than an error once the breaker has closed.
    redis.restart();
    assert!(
        integration_tests::wait_until(Duration::from_secs(10), || cache
            .redis()
            .unwrap()
            .available())
        .await
    );
    assert_eq!(store.get(&id).await.unwrap(), None);
    assert!(store.create(new("8")).await.is_ok());
}
