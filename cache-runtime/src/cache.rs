//! [`Cache`]: the handle everything goes through.
// Without Redis some bookkeeping only the Redis store uses is idle.
#![cfg_attr(
    not(feature = "redis"),
    allow(unused_imports, unused_variables, unused_mut, dead_code)
)]

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::codec::{self, now_ms};
use crate::config::{Config, ConfigError, Fallback};
use crate::flight::{self, Flights, Join};
use crate::key::{self, KeyError, Pattern};
use crate::shape::{ByBytes, Keep, Outcome, Policy, Shape};
use crate::stats::{Event, Mode, Stats, StatsSnapshot};
use crate::store::memory::MemoryStore;
#[cfg(feature = "redis")]
use crate::store::redis::RedisStore;
use crate::store::{Fetched, Raw, StoreError, Typed};

/// A cache: Redis when enabled and reachable, else the in-process fallback, else nothing.
/// Cheap to clone (one `Arc`); share one per process, usually through [`crate::install`].
#[derive(Clone)]
pub struct Cache {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    #[cfg(feature = "redis")]
    redis: Option<RedisStore>,
    memory: Option<MemoryStore>,
    stats: Stats,
    flights: Flights,
    /// The Redis outage count the fallback was last cleared for.
    memory_epoch: AtomicU64,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("mode", &self.mode())
            .field("prefix", &self.inner.config.prefix)
            .finish_non_exhaustive()
    }
}

/// Which store a read came from; a load is stored back only where its markers were read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tier {
    #[cfg(feature = "redis")]
    Redis,
    Memory,
    None,
}

/// An entry to write: its full key, its encoding, and the value itself where it is kept.
type ToStore<'a> = (&'a str, Arc<[u8]>, Option<Typed>);

/// Why a fetched entry is not served.
enum Miss {
    Absent,
    Undecodable,
    /// Written before an invalidation of one of its markers.
    Stale,
}

/// Takes the kept value or decodes the entry, and checks its markers.
fn lookup<V: DeserializeOwned>(fetched: &Fetched, keep: &impl Keep<V>) -> Result<V, Miss> {
    if let Some(Raw::Kept(entry)) = &fetched.value
        && let Some(typed) = &entry.typed
    {
        // The same generations as the envelope's: no need to decode it to find it stale.
        if *typed.gens != *fetched.gens {
            return Err(Miss::Stale);
        }
        if let Some(v) = keep.take(&*typed.value) {
            return Ok(v);
        }
    }
    let bytes = fetched.value.as_ref().ok_or(Miss::Absent)?;
    let envelope = codec::decode::<V>(bytes).ok_or(Miss::Undecodable)?;
    if envelope.g == fetched.gens {
        Ok(envelope.d)
    } else {
        Err(Miss::Stale)
    }
}

/// Builds a [`Cache`] from code; starts from [`Config::default`] (Redis disabled, memory fallback).
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct CacheBuilder {
    config: Config,
}

impl CacheBuilder {
    /// Starts from an existing configuration (e.g. [`Config::from_env`]).
    pub fn from_config(config: Config) -> Self {
        Self { config }
    }

    /// `false` turns caching off entirely (see [`Config::enabled`]).
    pub fn enabled(mut self, enabled: bool) -> Self {
        self.config.enabled = enabled;
        self
    }

    /// Enables Redis at `url` (`redis://` or `rediss://`).
    pub fn redis_url(mut self, url: impl Into<String>) -> Self {
        self.config.redis_url = url.into();
        self.config.redis_enabled = true;
        self
    }

    /// Turns Redis on or off (off: no connection is ever opened).
    pub fn redis_enabled(mut self, enabled: bool) -> Self {
        self.config.redis_enabled = enabled;
        self
    }

    /// Default TTL for entries without their own.
    pub fn default_ttl(mut self, ttl: Duration) -> Self {
        self.config.default_ttl = ttl;
        self
    }

    /// Upper bound for entry TTLs; markers live this long.
    pub fn max_ttl(mut self, ttl: Duration) -> Self {
        self.config.max_ttl = ttl;
        self
    }

    /// Prefix prepended to every key this cache writes.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.config.prefix = prefix.into();
        self
    }

    /// What serves when Redis is disabled or down.
    pub fn fallback(mut self, fallback: Fallback) -> Self {
        self.config.fallback = fallback;
        self
    }

    /// Bound on each Redis operation.
    pub fn op_timeout(mut self, timeout: Duration) -> Self {
        self.config.op_timeout = timeout;
        self
    }

    /// Bound on connecting to Redis, at start-up and when reconnecting.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.config.connect_timeout = timeout;
        self
    }

    /// Consecutive failures that open the circuit breaker.
    pub fn failure_threshold(mut self, failures: u32) -> Self {
        self.config.failure_threshold = failures;
        self
    }

    /// Encoded values larger than this are not cached.
    pub fn max_value_bytes(mut self, bytes: usize) -> Self {
        self.config.max_value_bytes = bytes;
        self
    }

    /// Builds the cache. Waits at most the connect timeout for Redis; an unreachable Redis is
    /// not an error (the cache starts degraded and reconnects in the background).
    ///
    /// # Errors
    /// A Redis URL the client cannot parse, or `rediss://` without the `tls` feature.
    pub async fn build(self) -> Result<Cache, ConfigError> {
        let config = self.config;
        #[cfg(feature = "redis")]
        let redis = if config.enabled && config.redis_enabled {
            let invalid = |e: &dyn std::fmt::Display| {
                ConfigError::invalid("REDIS_URL", &config.redis_url, e.to_string())
            };
            if config.redis_url.starts_with("rediss://") && !cfg!(feature = "tls") {
                return Err(invalid(&"TLS needs cache-runtime's `tls` feature"));
            }
            Some(
                RedisStore::connect(&config)
                    .await
                    .map_err(|e| invalid(&e))?,
            )
        } else {
            None
        };
        #[cfg(not(feature = "redis"))]
        if config.redis_enabled {
            tracing::warn!(
                "REDIS_ENABLED is set but cache-runtime was built without its `redis` feature"
            );
        }
        match (config.enabled, config.redis_enabled, config.fallback) {
            (false, _, _) => tracing::info!("CACHE_ENABLED=false; caching is off"),
            (true, true, _) => {}
            (true, false, Fallback::Memory) => {
                tracing::info!("redis disabled; caching in process");
            }
            (true, false, _) => tracing::info!("redis disabled and no fallback; nothing is stored"),
        }
        let memory = (config.enabled && config.fallback == Fallback::Memory).then(|| {
            MemoryStore::new(
                config.memory_capacity_bytes,
                config.max_ttl + Duration::from_secs(60),
            )
        });
        Ok(Cache {
            inner: Arc::new(Inner {
                #[cfg(feature = "redis")]
                redis,
                memory,
                stats: Stats::default(),
                flights: Flights::default(),
                memory_epoch: AtomicU64::new(0),
                config,
            }),
        })
    }
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
    pub async fn from_env() -> Result<Self, ConfigError> {
        CacheBuilder::from_config(Config::from_env()?).build().await
    }

    /// The configuration this cache was built with.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// Where values live right now.
    pub fn mode(&self) -> Mode {
        match self.tier() {
            #[cfg(feature = "redis")]
            Tier::Redis => Mode::Redis,
            Tier::Memory => Mode::Memory,
            Tier::None => Mode::Disabled,
        }
    }

    /// Reads a value; `None` when absent, stale, undecodable, or no store is reachable.
    pub async fn get<T: DeserializeOwned>(&self, key: &str) -> Option<T> {
        if !self.usable_key(key) {
            return None;
        }
        let (fetched, _) = self.fetch(key).await;
        self.check::<T>(key, &fetched, &ByBytes)
    }

    /// Reads several values in one round trip.
    pub async fn get_many<T: DeserializeOwned>(&self, keys: &[&str]) -> Vec<Option<T>> {
        let usable: Vec<&str> = keys
            .iter()
            .copied()
            .filter(|k| self.usable_key(k))
            .collect();
        let (fetched, _) = self.fetch_many(&usable).await;
        let mut found = usable.iter().zip(fetched);
        keys.iter()
            .map(|k| match found.next() {
                Some((u, f)) if u == k => self.check::<T>(k, &f, &ByBytes),
                _ => None,
            })
            .collect()
    }

    /// Stores a value as current (`None` TTL: the default TTL). For read-through caching prefer
    /// [`Cache::get_or_load`], which also closes the race with concurrent invalidations.
    pub async fn set<T: Serialize + ?Sized>(&self, key: &str, value: &T, ttl: Option<Duration>) {
        self.set_many(&[(key, value)], ttl).await;
    }

    /// Stores several values in one round trip (after one round trip for their markers).
    pub async fn set_many<T: Serialize + ?Sized>(
        &self,
        entries: &[(&str, &T)],
        ttl: Option<Duration>,
    ) {
        let entries: Vec<_> = entries.iter().filter(|(k, _)| self.usable_key(k)).collect();
        let keys: Vec<&str> = entries.iter().map(|(k, _)| *k).collect();
        let (fetched, tier) = self.fetch_many(&keys).await;
        let started = now_ms();
        let full: Vec<Cow<'_, str>> = keys.iter().map(|k| self.full_key(k)).collect();
        let mut encoded = Vec::with_capacity(entries.len());
        for (((key, value), full), f) in entries.iter().zip(&full).zip(&fetched) {
            if let Some(bytes) = self.encode(key, *value, &f.gens, started) {
                encoded.push((full.as_ref(), Arc::from(bytes), None));
            }
        }
        self.put(tier, &encoded, self.ttl(ttl)).await;
    }

    /// Removes one entry.
    pub async fn delete(&self, key: &str) {
        let full = self.full_key(key);
        if let Some(m) = &self.inner.memory {
            m.delete(&full);
        }
        #[cfg(feature = "redis")]
        if let Some(r) = self.redis_serving()
            && let Err(e) = r.delete(&[full.into_owned()]).await
        {
            self.store_error(key, &e);
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
        self.load_through::<crate::shape::ResultShape, _, _>(
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

    /// Invalidates several patterns at once (one round trip). A pattern that failed to build
    /// invalidates everything instead: an invalidation is never dropped.
    pub(crate) async fn invalidate_patterns(&self, patterns: &[Pattern]) {
        let prefix = &self.inner.config.prefix;
        let markers: Vec<String> = patterns
            .iter()
            .map(|p| format!("{prefix}{}", p.marker()))
            .collect();
        let exact: Vec<String> = patterns
            .iter()
            .filter_map(|p| match p {
                Pattern::Exact(k) => Some(self.full_key(k).into_owned()),
                _ => None,
            })
            .collect();
        for p in patterns {
            let name = match p {
                Pattern::All => "*",
                Pattern::Prefix(k) | Pattern::Exact(k) => k,
            };
            self.inner.stats.record(name, Event::Invalidation);
        }
        if let Some(m) = &self.inner.memory {
            patterns.iter().for_each(|p| m.bump(p));
            exact.iter().for_each(|k| {
                m.delete(k);
            });
        }
        #[cfg(feature = "redis")]
        if let Some(r) = &self.inner.redis
            && let Err(e) = r.invalidate(&markers, &exact).await
        {
            tracing::warn!(error = %e, patterns = ?patterns, "invalidation queued until redis returns");
            self.inner.stats.record("*", Event::Error);
        }
    }

    /// Removes every entry of this cache (and only this cache's: keys under its prefix whose
    /// values are its envelopes). Immediate through the epoch marker; the deletion that frees
    /// memory scans, so it is for administration, not request paths.
    pub async fn clear(&self) {
        self.clear_matching("*").await.unwrap_or_default();
    }

    /// Invalidates `pattern` and deletes the entries under it (see [`Cache::clear`]); returns
    /// how many entries were deleted.
    ///
    /// # Errors
    /// A malformed pattern.
    pub async fn clear_matching(&self, pattern: &str) -> Result<u64, KeyError> {
        let parsed = Pattern::parse(pattern)?;
        self.invalidate_patterns(std::slice::from_ref(&parsed))
            .await;
        let under = match &parsed {
            Pattern::All => self.inner.config.prefix.clone(),
            Pattern::Prefix(p) => format!("{}{p}:", self.inner.config.prefix),
            Pattern::Exact(_) => return Ok(0),
        };
        let mut deleted = self.inner.memory.as_ref().map_or(0, |m| m.sweep(&under));
        #[cfg(feature = "redis")]
        if let Some(r) = self.redis_serving() {
            match r.sweep(&under).await {
                Ok(n) => deleted += n,
                Err(e) => self.store_error(pattern, &e),
            }
        }
        Ok(deleted)
    }

    /// Counters and state.
    pub fn stats(&self) -> StatsSnapshot {
        let totals = self.inner.stats.totals();
        let reads = totals.hits + totals.misses;
        #[cfg(feature = "redis")]
        let (degraded_since, degraded_total, pending, degraded) = match &self.inner.redis {
            Some(r) => {
                let (since, total) = r.degraded();
                (since, total, r.pending_invalidations(), !r.available())
            }
            None => (None, Duration::ZERO, 0, false),
        };
        #[cfg(not(feature = "redis"))]
        let (degraded_since, degraded_total, pending, degraded) =
            (None::<std::time::SystemTime>, Duration::ZERO, 0, false);
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
            pending_invalidations: pending,
            prefixes: self.inner.stats.prefixes(),
        }
    }

    /// Mode, and for Redis a PING round trip (bounded by the operation timeout) and the circuit.
    pub async fn health(&self) -> crate::Health {
        #[cfg(feature = "redis")]
        let redis = match &self.inner.redis {
            Some(r) => {
                let latency = r.ping().await;
                Some(crate::RedisHealth {
                    reachable: latency.is_some(),
                    latency_us: latency.map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX)),
                    circuit: r.circuit(),
                })
            }
            None => None,
        };
        #[cfg(not(feature = "redis"))]
        let redis = None;
        crate::Health {
            mode: self.mode(),
            redis,
        }
    }

    /// The read-through core behind `#[cached]`: lookup, single flight, load, store. `key` is
    /// checked already (by [`key::KeyBuilder::finish`] or [`key::check_key`]).
    pub(crate) async fn load_through<S, R, F>(
        &self,
        key: Result<String, KeyError>,
        policy: Policy,
        keep: &impl Keep<S::Value>,
        load: F,
    ) -> R
    where
        S: Shape<R>,
        F: Future<Output = R>,
    {
        if !self.inner.config.enabled {
            return load.await;
        }
        let key = match key {
            Ok(k) => k,
            Err(e) => {
                tracing::error!(error = %e, "cache key unusable; calling through");
                self.inner.stats.record("_invalid", Event::Error);
                return load.await;
            }
        };
        let seen_finished = self.inner.flights.finished(&key);
        // The in-process lookup stays synchronous: awaiting a fetch that could go to Redis costs
        // a good part of an in-process hit.
        let (mut fetched, mut tier) = match self.tier() {
            #[cfg(feature = "redis")]
            Tier::Redis => self.fetch_from(Tier::Redis, &key).await,
            tier => self.fetch_local(tier, &key),
        };
        if let Some(v) = self.check::<S::Value>(&key, &fetched, keep) {
            return S::rebuild(v);
        }
        let leader = loop {
            match self.inner.flights.join(&key) {
                Join::Leader(leader) => break leader,
                Join::Follower(rx) => match flight::follow(rx).await {
                    Ok(Some(bytes)) => {
                        if let Some(env) = codec::decode::<S::Value>(&bytes) {
                            self.inner.stats.record(&key, Event::Coalesced);
                            return S::rebuild(env.d);
                        }
                        return self.run_load(&key, load).await;
                    }
                    // The leader's outcome is not shareable (e.g. an error): load ourselves.
                    Ok(None) => return self.run_load(&key, load).await,
                    // The leader was cancelled: elect a new one.
                    Err(()) => {}
                },
            }
        };
        // A flight on this key may have finished (and stored) between our miss and our
        // election: look again. The miss is counted already; a value found now was coalesced.
        if tier != Tier::None && self.inner.flights.finished(&key) != seen_finished {
            (fetched, tier) = self.fetch(&key).await;
            if let Ok(v) = lookup::<S::Value>(&fetched, keep) {
                self.inner.stats.record(&key, Event::Coalesced);
                leader.publish(fetched.value.map(Into::into));
                return S::rebuild(v);
            }
        }
        let started = now_ms();
        let result = self.run_load(&key, load).await;
        let (value, negative) = match S::outcome(&result) {
            Outcome::Value(v) => (v, false),
            Outcome::Negative(v) => (v, true),
            Outcome::Skip => {
                leader.publish(None);
                return result;
            }
        };
        if tier == Tier::None {
            // Nothing to store: encode only for callers that joined meanwhile.
            leader.leave_and_publish(|| {
                self.encode(&key, value, &fetched.gens, started)
                    .map(Into::into)
            });
            return result;
        }
        let Some(bytes) = self.encode(&key, value, &fetched.gens, started) else {
            leader.publish(None);
            return result;
        };
        let bytes: Arc<[u8]> = bytes.into();
        leader.publish(Some(bytes.clone()));
        if !negative || policy.cache_none {
            let ttl = if negative {
                policy.none_ttl.or(policy.ttl)
            } else {
                policy.ttl
            };
            let full = self.full_key(&key);
            let typed = (tier == Tier::Memory)
                .then(|| keep.keep(value))
                .flatten()
                .map(|value| Typed {
                    value,
                    gens: fetched.gens.as_slice().into(),
                });
            self.put(tier, &[(&full, bytes, typed)], self.ttl(ttl))
                .await;
        }
        drop(leader);
        result
    }

    async fn run_load<R>(&self, key: &str, load: impl Future<Output = R>) -> R {
        self.inner.stats.record(key, Event::Load);
        load.await
    }

    fn ttl(&self, ttl: Option<Duration>) -> Duration {
        ttl.unwrap_or(self.inner.config.default_ttl)
            .min(self.inner.config.max_ttl)
    }

    /// The key without the cache prefix (for stats).
    fn short_key<'k>(&self, full: &'k str) -> &'k str {
        full.strip_prefix(self.inner.config.prefix.as_str())
            .unwrap_or(full)
    }

    fn full_key<'k>(&self, key: &'k str) -> Cow<'k, str> {
        match self.inner.config.prefix.as_str() {
            "" => Cow::Borrowed(key),
            prefix => Cow::Owned(format!("{prefix}{key}")),
        }
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

    /// Decodes a fetched entry and checks its markers. Counts the hit or the miss.
    fn check<V: DeserializeOwned>(
        &self,
        key: &str,
        fetched: &Fetched,
        keep: &impl Keep<V>,
    ) -> Option<V> {
        let stats = &self.inner.stats;
        match lookup(fetched, keep) {
            Ok(v) => {
                stats.record(key, Event::Hit);
                return Some(v);
            }
            Err(Miss::Absent) => {}
            Err(Miss::Undecodable) => {
                tracing::debug!(key, "undecodable cache entry treated as a miss");
                stats.record(key, Event::DecodeFailure);
            }
            Err(Miss::Stale) => stats.record(key, Event::Stale),
        }
        stats.record(key, Event::Miss);
        None
    }

    fn encode<V: Serialize + ?Sized>(
        &self,
        key: &str,
        value: &V,
        gens: &[u64],
        started: u64,
    ) -> Option<Vec<u8>> {
        match codec::encode(&value, gens, started) {
            Ok(bytes) if bytes.len() <= self.inner.config.max_value_bytes => Some(bytes),
            Ok(bytes) => {
                tracing::debug!(
                    key,
                    size = bytes.len(),
                    "value larger than CACHE_MAX_VALUE_BYTES not cached"
                );
                None
            }
            Err(e) => {
                tracing::warn!(key, error = %e, "value cannot be serialized; not cached");
                self.inner.stats.record(key, Event::Error);
                None
            }
        }
    }

    /// The store that serves now. Entering the fallback after Redis served clears it, since
    /// other processes may have invalidated through Redis meanwhile.
    fn tier(&self) -> Tier {
        #[cfg(feature = "redis")]
        if let Some(r) = &self.inner.redis {
            if r.available() {
                return Tier::Redis;
            }
            if let Some(m) = &self.inner.memory {
                let outages = r.outages();
                if self.inner.memory_epoch.swap(outages, Ordering::AcqRel) != outages {
                    m.clear_entries();
                }
            }
        }
        if self.inner.memory.is_some() {
            Tier::Memory
        } else {
            Tier::None
        }
    }

    #[cfg(feature = "redis")]
    fn redis_serving(&self) -> Option<&RedisStore> {
        self.inner.redis.as_ref().filter(|r| r.available())
    }

    /// The entry and marker generations of `key` from the serving store, in one round trip.
    async fn fetch(&self, key: &str) -> (Fetched, Tier) {
        self.fetch_from(self.tier(), key).await
    }

    /// [`Cache::fetch`] from the tier the caller found serving.
    async fn fetch_from(&self, tier: Tier, key: &str) -> (Fetched, Tier) {
        #[cfg(feature = "redis")]
        if let Some(found) = self.fetch_redis(tier, &[key]).await {
            return (found.into_iter().next().unwrap_or_default(), Tier::Redis);
        }
        self.fetch_local(tier, key)
    }

    /// [`Cache::fetch`] for several keys, still in one round trip.
    async fn fetch_many(&self, keys: &[&str]) -> (Vec<Fetched>, Tier) {
        let tier = self.tier();
        #[cfg(feature = "redis")]
        if let Some(found) = self.fetch_redis(tier, keys).await {
            return (found, Tier::Redis);
        }
        let found = keys.iter().map(|k| self.fetch_local(tier, k).0).collect();
        (
            found,
            if tier == Tier::Memory {
                Tier::Memory
            } else {
                Tier::None
            },
        )
    }

    /// `None` when Redis does not serve or the read failed. There is no fallback for that call:
    /// the in-process store serves only once the breaker has opened (and emptied it).
    #[cfg(feature = "redis")]
    async fn fetch_redis(&self, tier: Tier, keys: &[&str]) -> Option<Vec<Fetched>> {
        let r = self.inner.redis.as_ref().filter(|_| tier == Tier::Redis)?;
        match r.fetch_many(&self.inner.config.prefix, keys).await {
            Ok(found) => Some(found),
            Err(e) => {
                self.store_error(keys.first().copied().unwrap_or(""), &e);
                None
            }
        }
    }

    fn fetch_local(&self, tier: Tier, key: &str) -> (Fetched, Tier) {
        match (tier, &self.inner.memory) {
            (Tier::Memory, Some(m)) => (m.fetch(&self.full_key(key), key), Tier::Memory),
            _ => (Fetched::default(), Tier::None),
        }
    }

    /// Writes entries (under their full keys) to the store their markers were read from;
    /// skips if that store changed meanwhile.
    async fn put(&self, tier: Tier, entries: &[ToStore<'_>], ttl: Duration) {
        if entries.is_empty() || tier != self.tier() {
            return;
        }
        match tier {
            #[cfg(feature = "redis")]
            Tier::Redis => {
                if let Some(r) = &self.inner.redis
                    && let Err(e) = r
                        .put_many(entries.iter().map(|(k, b, _)| (*k, &**b)), ttl)
                        .await
                {
                    self.store_error(self.short_key(entries[0].0), &e);
                    return;
                }
            }
            Tier::Memory => {
                if let Some(m) = &self.inner.memory {
                    for (full, bytes, typed) in entries {
                        m.put(full, bytes.clone(), typed.clone(), ttl);
                    }
                }
            }
            Tier::None => return,
        }
        for (full, ..) in entries {
            self.inner.stats.record(self.short_key(full), Event::Set);
        }
    }

    #[cfg(feature = "redis")]
    fn store_error(&self, key: &str, e: &StoreError) {
        tracing::debug!(key, error = %e, "cache store operation failed");
        self.inner.stats.record(key, Event::Error);
    }
}
