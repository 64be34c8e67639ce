//! Not public API: the store conformance suite, for this workspace's tests (feature
//! `testing`). Every store the cache can run on must pass every case; the integration tests
//! run each case, by name, against each store (one test per case and store).

use std::sync::Arc;
use std::time::Duration;

use crate::cache::codec;
use crate::cache::key::Pattern;
use crate::cache::markers;
use crate::cache::store::memory::MemoryStore;
use crate::cache::store::{Budget, CacheStore, Fetched, Fill, Origin};

/// A store under test.
#[derive(Debug)]
pub struct Store(Kind);

#[derive(Debug)]
enum Kind {
    Memory(MemoryStore),
    #[cfg(feature = "redis")]
    Redis(crate::cache::store::redis::RedisCacheStore),
    #[cfg(feature = "redis")]
    Degrading(crate::cache::store::degrading::Degrading),
}

const MAX_TTL: Duration = Duration::from_secs(3600);

impl Store {
    /// The in-process store.
    pub fn memory() -> Self {
        Self(Kind::Memory(MemoryStore::new(1 << 24, MAX_TTL)))
    }

    /// The Redis store that `config` reaches (one server or a cluster), with `prefix` (empty
    /// or ending in `:`), on its own client.
    ///
    /// # Panics
    /// On a malformed configuration.
    #[cfg(feature = "redis")]
    pub async fn redis(config: &crate::Config, prefix: &str) -> Self {
        let client = Self::client(config).await;
        Self(Kind::Redis(
            crate::cache::store::redis::RedisCacheStore::new(client, prefix.to_owned(), MAX_TTL),
        ))
    }

    /// Redis as `config` says, with the in-process fallback: what a cache runs on. Point it at
    /// a server that is down to test the fallback as it serves.
    ///
    /// # Panics
    /// On a malformed configuration.
    #[cfg(feature = "redis")]
    pub async fn degrading(config: &crate::Config, prefix: &str) -> Self {
        let client = Self::client(config).await;
        let redis =
            crate::cache::store::redis::RedisCacheStore::new(client, prefix.to_owned(), MAX_TTL);
        Self(Kind::Degrading(
            crate::cache::store::degrading::Degrading::new(
                Some(redis),
                #[cfg(feature = "l1")]
                None,
                Some(MemoryStore::new(1 << 24, MAX_TTL)),
                MAX_TTL,
                None,
            ),
        ))
    }

    #[cfg(feature = "redis")]
    async fn client(config: &crate::Config) -> crate::RedisClient {
        let config = crate::Config {
            redis_enabled: true,
            op_timeout: Duration::from_secs(2),
            connect_timeout: Duration::from_millis(500),
            ..config.clone()
        };
        #[allow(
            clippy::expect_used,
            reason = "test support: a malformed URL is a test bug"
        )]
        crate::RedisClient::connect(&config)
            .await
            .expect("a valid Redis configuration")
    }

    async fn fetch(&self, keys: &[&str]) -> Vec<Fetched> {
        let budget = &mut Budget::new(Duration::from_secs(2));
        let fetched = match &self.0 {
            Kind::Memory(s) => s.fetch(keys, budget).await,
            #[cfg(feature = "redis")]
            Kind::Redis(s) => s.fetch(keys, budget).await,
            #[cfg(feature = "redis")]
            Kind::Degrading(s) => s.fetch(keys, budget).await,
        };
        assert_ok(fetched)
    }

    async fn fetch_one(&self, key: &str) -> Fetched {
        let budget = &mut Budget::new(Duration::from_secs(2));
        let fetched = match &self.0 {
            Kind::Memory(s) => s.fetch_one(key, budget).await,
            #[cfg(feature = "redis")]
            Kind::Redis(s) => s.fetch_one(key, budget).await,
            #[cfg(feature = "redis")]
            Kind::Degrading(s) => s.fetch_one(key, budget).await,
        };
        assert_ok(fetched)
    }

    async fn prepare_fill(&self, key: &str, fetched: &mut Fetched) {
        let budget = &mut Budget::new(Duration::from_secs(2));
        let (keys, fetched) = (&[key], std::slice::from_mut(fetched));
        let prepared = match &self.0 {
            Kind::Memory(s) => s.prepare_fill(keys, fetched, budget).await,
            #[cfg(feature = "redis")]
            Kind::Redis(s) => s.prepare_fill(keys, fetched, budget).await,
            #[cfg(feature = "redis")]
            Kind::Degrading(s) => s.prepare_fill(keys, fetched, budget).await,
        };
        assert_ok(prepared);
    }

    async fn put(&self, fills: &[Fill<'_>], ttl: Duration) {
        let budget = &mut Budget::new(Duration::from_secs(2));
        let put = match &self.0 {
            Kind::Memory(s) => s.put(fills, ttl, budget).await,
            #[cfg(feature = "redis")]
            Kind::Redis(s) => s.put(fills, ttl, budget).await,
            #[cfg(feature = "redis")]
            Kind::Degrading(s) => s.put(fills, ttl, budget).await,
        };
        assert_ok(put);
    }

    async fn bump(&self, patterns: &[&str]) {
        let patterns: Vec<Pattern> = patterns
            .iter()
            .map(|p| assert_ok(Pattern::parse(p)))
            .collect();
        let bumped = match &self.0 {
            Kind::Memory(s) => s.bump(&patterns).await,
            #[cfg(feature = "redis")]
            Kind::Redis(s) => s.bump(&patterns).await,
            #[cfg(feature = "redis")]
            Kind::Degrading(s) => s.bump(&patterns).await,
        };
        assert_ok(bumped);
    }

    async fn sweep(&self, under: &str) -> u64 {
        let swept = match &self.0 {
            Kind::Memory(s) => s.sweep(under).await,
            #[cfg(feature = "redis")]
            Kind::Redis(s) => s.sweep(under).await,
            #[cfg(feature = "redis")]
            Kind::Degrading(s) => s.sweep(under).await,
        };
        assert_ok(swept)
    }

    /// Reads `key`, prepares its fill and stores `value` under the generations read: what a
    /// miss does.
    async fn fill(&self, key: &str, value: &str, ttl: Duration) {
        let mut fetched = self.fetch_one(key).await;
        self.prepare_fill(key, &mut fetched).await;
        self.put(&[fill(key, value, &fetched)], ttl).await;
    }

    /// The value under `key` if its markers still hold the generations it recorded: what a
    /// read serves.
    async fn read(&self, key: &str) -> Option<String> {
        let fetched = self.fetch_one(key).await;
        let envelope = codec::decode::<String>(fetched.value.as_deref()?, None)?;
        (envelope.g == fetched.gens).then_some(envelope.d)
    }
}

/// `value` as an envelope recording `fetched`'s generations.
fn fill<'a>(key: &'a str, value: &str, fetched: &'a Fetched) -> Fill<'a> {
    Fill {
        key,
        bytes: Arc::from(assert_ok(codec::encode(&value, &fetched.gens, 0, None))),
        typed: None,
        gens: &fetched.gens,
        load_time: Duration::ZERO,
        origin: fetched.origin,
    }
}

#[track_caller]
fn assert_ok<T, E: std::fmt::Debug>(result: Result<T, E>) -> T {
    match result {
        Ok(v) => v,
        #[allow(
            clippy::panic,
            reason = "test support: the failure is the test's result"
        )]
        Err(e) => panic!("store operation failed: {e:?}"),
    }
}

/// The conformance cases; each takes a fresh store (keys are fixed, so stores must not be
/// shared between cases).
pub mod conformance {
    use super::*;

    const TTL: Duration = Duration::from_secs(60);

    /// An absent key reads as nothing, with one generation per marker.
    pub async fn absent_key_reads_nothing(store: &Store) {
        let fetched = store.fetch_one("users:1").await;
        assert!(fetched.value.is_none());
        assert_eq!(fetched.gens.len(), markers::of_key("users:1").count());
    }

    /// A fill is served while its markers are unchanged, and overwritten by the next.
    pub async fn fill_then_read(store: &Store) {
        store.fill("users:1", "ada", TTL).await;
        assert_eq!(store.read("users:1").await.as_deref(), Some("ada"));
        store.fill("users:1", "grace", TTL).await;
        assert_eq!(store.read("users:1").await.as_deref(), Some("grace"));
        assert_ne!(store.fetch_one("users:1").await.origin, Origin::Nowhere);
    }

    /// Several keys in one fetch come back in the order asked.
    pub async fn fetch_many_keeps_order(store: &Store) {
        store.fill("users:1", "one", TTL).await;
        store.fill("users:2", "two", TTL).await;
        let fetched = store.fetch(&["users:2", "users:missing", "users:1"]).await;
        let values: Vec<Option<String>> = fetched
            .iter()
            .map(|f| codec::decode::<String>(f.value.as_deref()?, None).map(|e| e.d))
            .collect();
        assert_eq!(
            values,
            [Some("two".to_owned()), None, Some("one".to_owned())]
        );
    }

    /// A prefix bump makes every entry under the prefix stale and nothing else.
    pub async fn prefix_bump_reaches_exactly_its_prefix(store: &Store) {
        for key in ["users:1", "users:1:tasks", "tasks:1", "users2:1"] {
            store.fill(key, key, TTL).await;
        }
        store.bump(&["users:*"]).await;
        assert_eq!(store.read("users:1").await, None);
        assert_eq!(store.read("users:1:tasks").await, None);
        assert_eq!(store.read("tasks:1").await.as_deref(), Some("tasks:1"));
        assert_eq!(store.read("users2:1").await.as_deref(), Some("users2:1"));
    }

    /// An exact bump makes that key stale (and drops its entry), not its neighbours.
    pub async fn exact_bump_reaches_one_key(store: &Store) {
        for key in ["users:1", "users:1:tasks", "users:10"] {
            store.fill(key, key, TTL).await;
        }
        store.bump(&["users:1"]).await;
        assert_eq!(store.read("users:1").await, None);
        assert!(store.fetch_one("users:1").await.value.is_none(), "deleted");
        assert_eq!(
            store.read("users:1:tasks").await.as_deref(),
            Some("users:1:tasks")
        );
        assert_eq!(store.read("users:10").await.as_deref(), Some("users:10"));
    }

    /// `*` makes every entry stale.
    pub async fn epoch_bump_reaches_everything(store: &Store) {
        store.fill("users:1", "a", TTL).await;
        store.fill("tasks:1", "b", TTL).await;
        store.bump(&["*"]).await;
        assert_eq!(store.read("users:1").await, None);
        assert_eq!(store.read("tasks:1").await, None);
    }

    /// A load that read its markers before a bump and is stored after it is stale on arrival:
    /// the read/write race.
    pub async fn late_fill_after_a_bump_is_stale(store: &Store) {
        let mut fetched = store.fetch_one("users:1").await;
        store.prepare_fill("users:1", &mut fetched).await;
        store.bump(&["users:*"]).await;
        store.put(&[fill("users:1", "old", &fetched)], TTL).await;
        assert_eq!(store.read("users:1").await, None);
    }

    /// A marker never returns to a generation it had (REVIEW R1).
    pub async fn generations_never_repeat(store: &Store) {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..50 {
            let mut fetched = store.fetch_one("users:1").await;
            store.prepare_fill("users:1", &mut fetched).await;
            assert!(
                seen.insert(fetched.gens[1]),
                "generation {} came back",
                fetched.gens[1]
            );
            store.bump(&["users:*"]).await;
        }
    }

    /// Entries expire with their TTL.
    pub async fn entries_expire(store: &Store) {
        store
            .fill("users:1", "short", Duration::from_millis(200))
            .await;
        assert!(store.read("users:1").await.is_some());
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(store.read("users:1").await, None);
    }

    /// A sweep deletes the entries under its prefix and nothing else.
    pub async fn sweep_deletes_under_its_prefix(store: &Store) {
        for key in ["users:1", "users:2", "tasks:1"] {
            store.fill(key, key, TTL).await;
        }
        assert_eq!(store.sweep("users:").await, 2);
        assert!(store.fetch_one("users:1").await.value.is_none());
        assert_eq!(store.read("tasks:1").await.as_deref(), Some("tasks:1"));
    }
}
