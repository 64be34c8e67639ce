//! Counters: per key prefix (the key's first segment), lock-free on the hot path except for one
//! read lock to find a prefix's counters; totals are their sums.

use std::collections::BTreeMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};

use rustc_hash::FxHashMap;
use serde::Serialize;

use crate::sync::{read, write};

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

impl Event {
    const COUNT: usize = 9;
}

/// One set of counters, indexed by [`Event`].
#[derive(Debug, Default)]
struct Counters([AtomicU64; Event::COUNT]);

impl Counters {
    fn add(&self, event: Event) {
        self.0[event as usize].fetch_add(1, Ordering::Relaxed);
    }

    fn snapshot(&self) -> PrefixStats {
        PrefixStats::from_array(self.0.each_ref().map(|a| a.load(Ordering::Relaxed)))
    }
}

#[derive(Debug, Default)]
pub(crate) struct Stats {
    /// Fx, not a keyed hash: at most `MAX_PREFIXES` entries, so colliding prefixes cost little.
    by_prefix: RwLock<FxHashMap<String, Counters>>,
}

/// Prefixes tracked separately; keys beyond this many distinct first segments count under `_other`.
const MAX_PREFIXES: usize = 256;

impl Stats {
    /// Counts one event for `key` (its first segment is the prefix; `_invalid` for keys that
    /// could not be built, `*` for the epoch).
    pub(crate) fn record(&self, key: &str, event: Event) {
        let prefix = key
            .bytes()
            .position(|b| b == b':')
            .map_or(key, |i| &key[..i]);
        if let Some(counters) = read(&self.by_prefix).get(prefix) {
            counters.add(event);
            return;
        }
        let mut map = write(&self.by_prefix);
        let name = if map.len() < MAX_PREFIXES {
            prefix
        } else {
            "_other"
        };
        map.entry(name.to_owned()).or_default().add(event);
    }

    pub(crate) fn totals(&self) -> PrefixStats {
        let mut sums = [0; Event::COUNT];
        for counters in read(&self.by_prefix).values() {
            for (sum, counter) in sums.iter_mut().zip(&counters.0) {
                *sum += counter.load(Ordering::Relaxed);
            }
        }
        PrefixStats::from_array(sums)
    }

    pub(crate) fn prefixes(&self) -> BTreeMap<String, PrefixStats> {
        read(&self.by_prefix)
            .iter()
            .map(|(k, v)| (k.clone(), v.snapshot()))
            .collect()
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

impl PrefixStats {
    /// In [`Event`] order.
    fn from_array(
        [
            hits,
            misses,
            stale,
            sets,
            errors,
            invalidations,
            decode_failures,
            loads,
            coalesced,
        ]: [u64; Event::COUNT],
    ) -> Self {
        Self {
            hits,
            misses,
            stale,
            sets,
            errors,
            invalidations,
            decode_failures,
            loads,
            coalesced,
        }
    }
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
    /// Counters per key prefix (first key segment). `*` counts invalidations of everything,
    /// `_invalid` keys that could not be built, `_other` prefixes beyond the first 256.
    pub prefixes: BTreeMap<String, PrefixStats>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_land_in_their_field_and_sum_up() {
        let stats = Stats::default();
        let events = [
            Event::Hit,
            Event::Miss,
            Event::Stale,
            Event::Set,
            Event::Error,
            Event::Invalidation,
            Event::DecodeFailure,
            Event::Load,
            Event::Coalesced,
        ];
        for (n, event) in events.into_iter().enumerate() {
            for _ in 0..=n {
                stats.record("users:1", event);
            }
        }
        stats.record("tasks:1", Event::Hit);
        let users = &stats.prefixes()["users"];
        assert_eq!(
            (
                users.hits,
                users.misses,
                users.stale,
                users.sets,
                users.errors
            ),
            (1, 2, 3, 4, 5)
        );
        assert_eq!(
            (
                users.invalidations,
                users.decode_failures,
                users.loads,
                users.coalesced
            ),
            (6, 7, 8, 9)
        );
        assert_eq!(stats.totals().hits, 2);
    }

    #[test]
    fn prefixes_are_bounded() {
        let stats = Stats::default();
        for i in 0..1000 {
            stats.record(&format!("p{i}:x"), Event::Hit);
        }
        let prefixes = stats.prefixes();
        assert_eq!(prefixes.len(), MAX_PREFIXES + 1);
        assert_eq!(stats.totals().hits, 1000);
    }
}
