//! Counters: totals and per key prefix (the key's first segment), lock-free on the hot path
//! except for one read lock to find a prefix's counters.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{PoisonError, RwLock};

use rustc_hash::FxHashMap;
use serde::Serialize;

/// One set of counters.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) hits: AtomicU64,
    pub(crate) misses: AtomicU64,
    pub(crate) stale: AtomicU64,
    pub(crate) sets: AtomicU64,
    pub(crate) errors: AtomicU64,
    pub(crate) invalidations: AtomicU64,
    pub(crate) decode_failures: AtomicU64,
    pub(crate) loads: AtomicU64,
    pub(crate) coalesced: AtomicU64,
}

/// What a counter counts; see [`PrefixStats`] for their meaning.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Event {
    Hit,
    Miss,
    Stale,
    Set,
    Error,
    Invalidation,
    DecodeFailure,
    Load,
    Coalesced,
}

impl Counters {
    fn get(&self, e: Event) -> &AtomicU64 {
        match e {
            Event::Hit => &self.hits,
            Event::Miss => &self.misses,
            Event::Stale => &self.stale,
            Event::Set => &self.sets,
            Event::Error => &self.errors,
            Event::Invalidation => &self.invalidations,
            Event::DecodeFailure => &self.decode_failures,
            Event::Load => &self.loads,
            Event::Coalesced => &self.coalesced,
        }
    }

    fn snapshot(&self) -> PrefixStats {
        let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
        PrefixStats {
            hits: n(&self.hits),
            misses: n(&self.misses),
            stale: n(&self.stale),
            sets: n(&self.sets),
            errors: n(&self.errors),
            invalidations: n(&self.invalidations),
            decode_failures: n(&self.decode_failures),
            loads: n(&self.loads),
            coalesced: n(&self.coalesced),
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct Stats {
    /// Every event counts under one prefix (or `_other`): the totals are their sums.
    /// Fx, not a keyed hash: at most `MAX_PREFIXES` entries, so colliding prefixes cost little.
    by_prefix: RwLock<FxHashMap<String, Counters>>,
}

/// Prefixes tracked separately; keys beyond this many distinct first segments count under `_other`.
const MAX_PREFIXES: usize = 256;

impl Stats {
    /// Counts one event for `key` (its first segment is the prefix).
    pub(crate) fn record(&self, key: &str, event: Event) {
        let prefix = key
            .bytes()
            .position(|b| b == b':')
            .map_or(key, |i| &key[..i]);
        let map = self
            .by_prefix
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(counters) = map.get(prefix) {
            counters.get(event).fetch_add(1, Ordering::Relaxed);
            return;
        }
        drop(map);
        let mut map = self
            .by_prefix
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let name = if map.len() < MAX_PREFIXES {
            prefix
        } else {
            "_other"
        };
        map.entry(name.to_owned())
            .or_default()
            .get(event)
            .fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn totals(&self) -> PrefixStats {
        let map = self
            .by_prefix
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        map.values().fold(PrefixStats::default(), |t, c| {
            let c = c.snapshot();
            PrefixStats {
                hits: t.hits + c.hits,
                misses: t.misses + c.misses,
                stale: t.stale + c.stale,
                sets: t.sets + c.sets,
                errors: t.errors + c.errors,
                invalidations: t.invalidations + c.invalidations,
                decode_failures: t.decode_failures + c.decode_failures,
                loads: t.loads + c.loads,
                coalesced: t.coalesced + c.coalesced,
            }
        })
    }

    pub(crate) fn prefixes(&self) -> BTreeMap<String, PrefixStats> {
        let map = self
            .by_prefix
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        map.iter().map(|(k, v)| (k.clone(), v.snapshot())).collect()
    }
}

/// Counters of one key prefix, or of the whole cache.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct PrefixStats {
    /// Reads served from the cache.
    pub hits: u64,
    /// Reads that found nothing usable (absent, stale, or undecodable).
    pub misses: u64,
    /// Misses because an invalidation marker was newer than the entry.
    pub stale: u64,
    /// Entries written.
    pub sets: u64,
    /// Store failures and unusable keys; each also logged.
    pub errors: u64,
    /// Invalidations issued (one per pattern).
    pub invalidations: u64,
    /// Entries that were corrupt, truncated, foreign or of another type (also counted as misses).
    pub decode_failures: u64,
    /// Loader runs (the wrapped function's body).
    pub loads: u64,
    /// Calls that waited for another call's load of the same key instead of loading.
    pub coalesced: u64,
}

/// Where cached values currently live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Mode {
    /// Redis serves.
    Redis,
    /// The in-process store serves (Redis disabled, or down with `CACHE_FALLBACK=memory`).
    Memory,
    /// Nothing is cached; calls go straight through.
    Disabled,
}

/// A snapshot of a cache's counters and state, from [`crate::Cache::stats`].
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct StatsSnapshot {
    /// Totals over all prefixes.
    #[serde(flatten)]
    pub totals: PrefixStats,
    /// `hits / (hits + misses)`, 0 when there were no reads.
    pub hit_ratio: f64,
    /// The store serving now.
    pub mode: Mode,
    /// Redis is enabled but not serving.
    pub degraded: bool,
    /// When the current outage began (Unix seconds).
    pub degraded_since: Option<u64>,
    /// Total time spent degraded since start-up, in seconds.
    pub degraded_seconds: f64,
    /// Invalidations waiting for Redis to come back.
    pub pending_invalidations: usize,
    /// Counters per key prefix (first key segment).
    pub prefixes: BTreeMap<String, PrefixStats>,
}
