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
    /// A hit the L1 served: counted with [`Stats::record_l1_hit`], which also counts the hit.
    #[cfg_attr(not(feature = "l1"), allow(dead_code, reason = "the L1's"))]
    L1Hit,
}

impl Event {
    const COUNT: usize = 10;
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
        self.record_all(key, &[event]);
    }

    /// A hit the L1 served (one counter lookup for both counts: this is the hottest path).
    #[cfg(feature = "l1")]
    pub(crate) fn record_l1_hit(&self, key: &str) {
        self.record_all(key, &[Event::Hit, Event::L1Hit]);
    }

    fn record_all(&self, key: &str, events: &[Event]) {
        let add = |counters: &Counters| {
            for &event in events {
                counters.add(event);
            }
        };
        let prefix = key
            .bytes()
            .position(|b| b == b':')
            .map_or(key, |i| &key[..i]);
        if let Some(counters) = read(&self.by_prefix).get(prefix) {
            add(counters);
            return;
        }
        let mut map = write(&self.by_prefix);
        let name = if map.len() < MAX_PREFIXES {
            prefix
        } else {
            "_other"
        };
        add(map.entry(name.to_owned()).or_default());
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
    /// Of the hits, those the two-level cache's L1 served, without a round trip.
    pub l1_hits: u64,
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
            l1_hits,
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
            l1_hits,
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
    /// The two-level cache's L1, when it is on (`CACHE_L1`).
    pub l1: Option<L1Stats>,
}

/// Counters of the L1, for [`crate::StatsSnapshot::l1`].
#[derive(Debug, Clone, Default, serde::Serialize)]
#[non_exhaustive]
pub struct L1Stats {
    /// Reads the L1 answered (the sum of the prefixes' `l1_hits`).
    pub hits: u64,
    /// Reads it could not (absent, invalid, or the feed not live).
    pub misses: u64,
    /// Reads from Redis that fetched the entry alone (the table knew its markers).
    pub entry_only_reads: u64,
    /// Entries stored.
    pub fills: u64,
    /// Flushes: lost or resumed subscriptions, lags, silences, a full table.
    pub flushes: u64,
    /// Whether the feed is live now (the L1 serves).
    pub live: bool,
    /// Invalidation messages applied (heartbeats not counted).
    pub messages: u64,
    /// Markers in the table.
    pub markers: u64,
    /// Entries held (approximate: moka counts lazily).
    pub entries: u64,
    /// From a bump in Redis to its message applied here, for the last message and the
    /// largest since start, in µs (the Redis server's clock against this host's).
    pub lag_last_us: u64,
    /// See `lag_last_us`.
    pub lag_max_us: u64,
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
            Event::L1Hit,
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
                users.coalesced,
                users.l1_hits
            ),
            (6, 7, 8, 9, 10)
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
