//! [`Cache`]: the handle everything goes through, and the parts of the cache behind it.

mod builder;
pub(crate) mod codec;
pub(crate) mod flight;
pub(crate) mod key;
#[cfg(feature = "l1")]
pub(crate) mod l1;
pub(crate) mod markers;
#[cfg(feature = "redis")]
pub(crate) mod outage;
mod read_through;
pub(crate) mod shape;
pub(crate) mod stats;
pub(crate) mod store;

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

pub use builder::CacheBuilder;

use crate::config::Config;
use crate::error::KeyError;
use flight::Flights;
use key::Pattern;
use shape::{ByBytes, Policy};
use stats::{Event, Mode, Stats, StatsSnapshot};
use store::degrading::Degrading;
use store::{Budget, CacheStore, Fill, Origin};

/// A cache: Redis when enabled and reachable, else the in-process fallback, else nothing.
/// Cheap to clone (one `Arc`); share one per process, usually through [`crate::install`].
#[derive(Clone)]
pub struct Cache {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    store: Degrading,
    /// The key prefix as stores apply it (empty, or ending in `:`).
    prefix: String,
    stats: Stats,
    flights: Flights,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("mode", &self.mode())
            .field("prefix", &self.inner.prefix)
            .finish_non_exhaustive()
    }
}

/// Health of a cache, from [`Cache::health`].
#[derive(Debug, Clone, serde::Serialize)]
#[non_exhaustive]
pub struct Health {
    /// Where values live right now.
    pub mode: Mode,
    /// Present when Redis is enabled.
    #[cfg(feature = "redis")]
    pub redis: Option<crate::RedisHealth>,
}

impl Cache {
    /// A builder for code-level configuration.
    pub fn builder() -> CacheBuilder {
        CacheBuilder::default()
    }

    /// Reads `.env` and the environment ([`Config::from_env`]) and builds the cache.
    ///
    /// # Errors
    /// A malformed variable; never an unreachable Redis.
    pub async fn from_env() -> Result<Self, crate::ConfigError> {
        CacheBuilder::from_config(Config::from_env()?).build().await
    }

    /// The configuration this cache was built with.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The Redis client this cache uses, to share with other modules (`None` when Redis is
    /// disabled).
    #[cfg(feature = "redis")]
    pub fn redis(&self) -> Option<&crate::RedisClient> {
        self.inner
            .store
            .redis()
            .map(store::redis::RedisCacheStore::client)
    }

    /// Where values live right now. Has no side effect.
    pub fn mode(&self) -> Mode {
        self.inner.store.mode()
    }

    /// Reads a value; `None` when absent, stale, undecodable, or no store is reachable.
    pub async fn get<T: DeserializeOwned>(&self, key: &str) -> Option<T> {
        if !self.usable_key(key) {
            return None;
        }
        let fetched = self.fetch_one(key, &mut self.budget()).await;
        self.check::<T>(key, &fetched, &ByBytes, false)
    }

    /// Reads several values in one round trip; a key that is not usable reads as `None`
    /// without affecting the others.
    pub async fn get_many<T: DeserializeOwned>(&self, keys: &[&str]) -> Vec<Option<T>> {
        let usable: Vec<(usize, &str)> = keys
            .iter()
            .copied()
            .enumerate()
            .filter(|(_, k)| self.usable_key(k))
            .collect();
        let wanted: Vec<&str> = usable.iter().map(|&(_, k)| k).collect();
        let fetched = self.fetch_many(&wanted, &mut self.budget()).await;
        let mut found: Vec<Option<T>> = keys.iter().map(|_| None).collect();
        for ((i, key), f) in usable.into_iter().zip(fetched) {
            found[i] = self.check::<T>(key, &f, &ByBytes, false);
        }
        found
    }

    /// Stores a value as current (`None` TTL: the default TTL). For read-through caching prefer
    /// [`Cache::get_or_load`], which also closes the race with concurrent invalidations.
    pub async fn set<T: Serialize + ?Sized>(&self, key: &str, value: &T, ttl: Option<Duration>) {
        self.set_many(&[(key, value)], ttl).await;
    }

    /// Stores several values in one round trip (after one that invalidates their keys, one
    /// for their markers, and one more for markers that do not exist yet). Each of the round
    /// trips has the operation timeout. Invalidating first makes the write visible to every
    /// instance's L1, and keeps a load of these keys that was running meanwhile from storing
    /// its older value over them.
    pub async fn set_many<T: Serialize + ?Sized>(
        &self,
        entries: &[(&str, &T)],
        ttl: Option<Duration>,
    ) {
        let entries: Vec<_> = entries.iter().filter(|(k, _)| self.usable_key(k)).collect();
        let keys: Vec<&str> = entries.iter().map(|(k, _)| *k).collect();
        let exact: Vec<Pattern> = keys
            .iter()
            .map(|k| Pattern::Exact((*k).to_owned()))
            .collect();
        if !exact.is_empty()
            && let Err(e) = self.inner.store.bump(&exact).await
        {
            self.store_error(keys[0], &e);
        }
        let mut fetched = self.fetch_many(&keys, &mut self.budget()).await;
        self.prepare_fill(&keys, &mut fetched, &mut self.budget())
            .await;
        let started = codec::now_ms();
        let encoded: Vec<(&str, Vec<u8>, &store::Fetched)> = entries
            .iter()
            .zip(&fetched)
            .filter_map(|((key, value), f)| {
                let bytes = self.encode(key, *value, &f.gens, started, None)?;
                Some((*key, bytes, f))
            })
            .collect();
        let fills: Vec<Fill<'_>> = encoded
            .into_iter()
            .map(|(key, bytes, f)| Fill {
                key,
                bytes: bytes.into(),
                typed: None,
                gens: &f.gens,
                load_time: Duration::ZERO,
                origin: f.origin,
            })
            .collect();
        self.put(&fills, self.ttl(ttl), &mut self.budget()).await;
    }

    /// Invalidates one key: the entry is gone and a load of it that was running meanwhile is
    /// not stored. During an outage the invalidation is queued like any other (REVIEW R13).
    pub async fn delete(&self, key: &str) {
        match Pattern::parse(key) {
            Ok(pattern @ Pattern::Exact(_)) => self.invalidate_patterns(&[pattern]).await,
            _ => {
                self.usable_key(key);
            }
        }
    }

    /// Returns the cached value or runs `load`, caching its `Ok` value. Concurrent calls for
    /// the same key share one `load`. Any cache failure degrades to calling `load`.
    ///
    /// # Errors
    /// Whatever `load` returns; errors are never cached.
    pub async fn get_or_load<T, E, F>(
        &self,
        key: &str,
        ttl: Option<Duration>,
        load: F,
    ) -> Result<T, E>
    where
        T: Serialize + DeserializeOwned,
        F: Future<Output = Result<T, E>>,
    {
        let policy = Policy {
            ttl,
            ..Policy::default()
        };
        self.load_through::<shape::ResultShape, _, _>(
            key::check_key(key).map(|()| key.to_owned()),
            policy,
            &ByBytes,
            load,
        )
        .await
    }

    /// Invalidates a key (`users:42`), a prefix (`users:*`, `users:42:*`) or everything (`*`).
    /// O(1) in Redis whatever the number of keys; never scans. If Redis cannot be reached the
    /// invalidation is queued and replayed, and Redis serves nothing until it is.
    ///
    /// # Errors
    /// A malformed pattern (`*` not a whole trailing segment, empty segments).
    pub async fn invalidate(&self, pattern: &str) -> Result<(), KeyError> {
        let parsed = Pattern::parse(pattern)?;
        self.invalidate_patterns(&[parsed]).await;
        Ok(())
    }

    /// Invalidates several patterns at once (one round trip; see `Degrading::bump`).
    pub(crate) async fn invalidate_patterns(&self, patterns: &[Pattern]) {
        self.invalidate_patterns_as(patterns, None).await;
    }

    /// `admin`: the timeout of an administrative invalidation (`clear`), which does not count
    /// against Redis when it times out; `None` for a request's.
    async fn invalidate_patterns_as(&self, patterns: &[Pattern], admin: Option<Duration>) {
        if patterns.is_empty() {
            return;
        }
        for p in patterns {
            let name = match p {
                Pattern::All => "*",
                Pattern::Prefix(k) | Pattern::Exact(k) => k,
            };
            self.inner.stats.record(name, Event::Invalidation);
        }
        let bumped = match admin {
            Some(timeout) => self.inner.store.bump_for_admin(patterns, timeout).await,
            None => self.inner.store.bump(patterns).await,
        };
        if let Err(e) = bumped {
            tracing::warn!(error = %e, ?patterns, "invalidation queued until redis returns");
            self.inner.stats.record("*", Event::Error);
        }
    }

    /// Removes every entry of this cache: immediately through the epoch marker, then frees
    /// memory by deleting them (see [`Cache::clear_matching`]).
    pub async fn clear(&self) {
        self.clear_matching("*").await.unwrap_or_default();
    }

    /// Invalidates `pattern` (immediate, O(1)), then deletes the entries under it to free
    /// memory; returns how many were deleted. The deletion scans in small batches under its own
    /// timeout and only deletes this cache's envelopes, so it is for administration, not
    /// request paths. With `CACHE_PREFIX` empty, clearing everything deletes nothing from
    /// Redis (the keyspace may be shared with other applications): the entries are stale at
    /// once and expire by their TTL. If Redis fails midway, what was deleted so far is not
    /// counted (the invalidation happened regardless).
    ///
    /// # Errors
    /// A malformed pattern.
    pub async fn clear_matching(&self, pattern: &str) -> Result<u64, KeyError> {
        let parsed = Pattern::parse(pattern)?;
        // Administration, like the sweep below: a timeout of its own, not the breaker's.
        let admin = self.inner.config.op_timeout.max(Duration::from_secs(1));
        self.invalidate_patterns_as(std::slice::from_ref(&parsed), Some(admin))
            .await;
        let under = match &parsed {
            Pattern::All => String::new(),
            Pattern::Prefix(p) => format!("{p}:"),
            Pattern::Exact(_) => return Ok(0),
        };
        match self.inner.store.sweep(&under).await {
            Ok(deleted) => Ok(deleted),
            Err(e) => {
                self.store_error(pattern, &e);
                Ok(0)
            }
        }
    }

    /// Counters and state. Has no side effect.
    pub fn stats(&self) -> StatsSnapshot {
        let totals = self.inner.stats.totals();
        let reads = totals.hits + totals.misses;
        #[cfg(feature = "redis")]
        let (degraded_since, degraded_total, degraded) = match self.redis() {
            Some(r) => {
                let (since, total) = r.degraded();
                (since, total, !r.available())
            }
            None => (None, Duration::ZERO, false),
        };
        #[cfg(not(feature = "redis"))]
        let (degraded_since, degraded_total, degraded) =
            (None::<std::time::SystemTime>, Duration::ZERO, false);
        StatsSnapshot {
            hit_ratio: if reads == 0 {
                0.0
            } else {
                totals.hits as f64 / reads as f64
            },
            totals,
            mode: self.mode(),
            degraded,
            degraded_since: degraded_since
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_secs()),
            degraded_seconds: degraded_total.as_secs_f64(),
            pending_invalidations: self.pending_invalidations(),
            prefixes: self.inner.stats.prefixes(),
            l1: self.l1_stats(),
        }
    }

    /// The L1's counters and state (`None` without one); cheaper than [`Cache::stats`].
    pub fn l1_stats(&self) -> Option<stats::L1Stats> {
        #[cfg(feature = "l1")]
        return self.inner.store.l1().map(|l1| stats::L1Stats {
            hits: self.inner.stats.totals().l1_hits,
            ..l1.stats()
        });
        #[cfg(not(feature = "l1"))]
        None
    }

    fn pending_invalidations(&self) -> usize {
        #[cfg(feature = "redis")]
        if let Some(queue) = self.inner.store.outage() {
            return queue.len();
        }
        0
    }

    /// Mode, and for Redis a PING round trip (bounded by the operation timeout) and the circuit.
    pub async fn health(&self) -> Health {
        Health {
            mode: self.mode(),
            #[cfg(feature = "redis")]
            redis: match self.redis() {
                Some(r) => Some(r.health().await),
                None => None,
            },
        }
    }

    /// Before the process exits: sends the invalidations still queued for Redis, waiting at
    /// most `deadline` (REVIEW R10). Returns whether none is left. What is left is lost with
    /// the process, unless `CACHE_OUTAGE_FILE` is set: the next process to start then
    /// invalidates everything once.
    pub async fn shutdown(&self, deadline: Duration) -> bool {
        #[cfg(feature = "redis")]
        if let (Some(redis), Some(queue)) = (self.redis(), self.inner.store.outage()) {
            if queue.len() == 0 {
                return true;
            }
            let flushed = tokio::time::timeout(deadline, async {
                if !redis.reconnect_if_dead().await {
                    return false;
                }
                loop {
                    if !queue.replay(deadline).await {
                        return false;
                    }
                    // The recovery task may be replaying too: done only when its replay has
                    // landed (one that fails puts its patterns back, for the next round).
                    if queue.len() == 0 {
                        return true;
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
            .await
            .unwrap_or(false);
            if !flushed {
                tracing::error!(
                    pending = queue.len(),
                    "shutting down with invalidations redis never received"
                );
            }
            return flushed;
        }
        let _ = deadline;
        true
    }

    fn budget(&self) -> Budget {
        Budget::new(self.inner.config.op_timeout)
    }

    fn ttl(&self, ttl: Option<Duration>) -> Duration {
        ttl.unwrap_or(self.inner.config.default_ttl)
            .min(self.inner.config.max_ttl)
    }

    fn usable_key(&self, key: &str) -> bool {
        match key::check_key(key) {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(error = %e, "cache key unusable");
                self.inner.stats.record("_invalid", Event::Error);
                false
            }
        }
    }

    async fn fetch_one(&self, key: &str, budget: &mut Budget) -> store::Fetched {
        match self.inner.store.fetch_one(key, budget).await {
            Ok(fetched) => fetched,
            Err(e) => {
                self.store_error(key, &e);
                store::Fetched::default()
            }
        }
    }

    /// [`Cache::fetch_one`], through the L1's table when `l1` (see `Degrading::fetch_one_for`).
    async fn fetch_one_for(&self, key: &str, budget: &mut Budget, l1: bool) -> store::Fetched {
        match self.inner.store.fetch_one_for(key, budget, l1).await {
            Ok(fetched) => fetched,
            Err(e) => {
                self.store_error(key, &e);
                store::Fetched::default()
            }
        }
    }

    async fn fetch_many(&self, keys: &[&str], budget: &mut Budget) -> Vec<store::Fetched> {
        match self.inner.store.fetch(keys, budget).await {
            Ok(fetched) => fetched,
            Err(e) => {
                self.store_error(keys.first().copied().unwrap_or(""), &e);
                keys.iter().map(|_| store::Fetched::default()).collect()
            }
        }
    }

    /// Makes sure the markers of fills exist; fills that cannot be prepared are not stored.
    async fn prepare_fill(
        &self,
        keys: &[&str],
        fetched: &mut [store::Fetched],
        budget: &mut Budget,
    ) {
        if fetched.iter().all(|f| f.origin == Origin::Nowhere) {
            return;
        }
        if let Err(e) = self.inner.store.prepare_fill(keys, fetched, budget).await {
            self.store_error(keys.first().copied().unwrap_or(""), &e);
            for f in fetched {
                f.origin = Origin::Nowhere;
            }
        }
    }

    async fn put(&self, fills: &[Fill<'_>], ttl: Duration, budget: &mut Budget) {
        let stored = || fills.iter().filter(|f| f.origin != Origin::Nowhere);
        let Some(first) = stored().next() else {
            return;
        };
        match self.inner.store.put(fills, ttl, budget).await {
            Ok(()) => {
                for fill in stored() {
                    self.inner.stats.record(fill.key, Event::Set);
                }
            }
            Err(e) => self.store_error(first.key, &e),
        }
    }

    fn store_error(&self, key: &str, e: &store::StoreError) {
        tracing::debug!(key, error = %e, "cache store operation failed");
        self.inner.stats.record(key, Event::Error);
    }
}
