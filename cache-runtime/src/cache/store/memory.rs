//! The in-process store (moka): serves when Redis is disabled, or unreachable with
//! `CACHE_FALLBACK=memory`.
//!
//! Entries are tagged with the Redis outage they were read in (the breaker's state word, see
//! `redis::breaker`; always 0 without Redis) and served only in that same outage, so nothing
//! this process cached before Redis last served can come back after other instances
//! invalidated it through Redis (REVIEW R8). Nothing needs clearing for that, so no getter has a
//! side effect (R26).

use std::sync::Arc;
use std::time::{Duration, Instant};

use foldhash::fast::RandomState;
use moka::sync::Cache as Moka;

use super::{Budget, CacheStore, Fetched, Fill, Gens, Origin, Raw, StoreError, Typed};
use crate::cache::key::Pattern;
use crate::cache::markers::MarkerTable;

/// What an entry costs beyond its key and bytes: the key's allocation, the `Arc<Entry>`, moka's
/// node, its access-order and timer-wheel links and its slot in the table (REVIEW R20; measured
/// by `memory_weight_matches_resident_memory` in this module's tests).
pub(crate) const ENTRY_OVERHEAD: u32 = 320;
/// Markers per generation of the in-process marker table (see [`MarkerTable`]).
const MARKERS_PER_GENERATION: usize = 65_536;

/// An entry as the in-process store keeps it; shared, so a hit copies one pointer.
pub(crate) struct Entry {
    pub(crate) bytes: Arc<[u8]>,
    pub(crate) typed: Option<Typed>,
    ttl: Duration,
    /// The outage it was read in.
    epoch: u64,
}

impl Entry {
    /// An entry as the L1 keeps it (outside any outage).
    #[cfg(feature = "l1")]
    pub(crate) fn new(bytes: Arc<[u8]>, typed: Option<Typed>, ttl: Duration) -> Arc<Self> {
        Arc::new(Self {
            bytes,
            typed,
            ttl,
            epoch: 0,
        })
    }

    /// What it weighs in a moka cache under `key`: the value itself, when kept, weighs about
    /// as much as its encoding.
    pub(crate) fn weight(&self, key: &str) -> u32 {
        let copies = if self.typed.is_some() { 2 } else { 1 };
        u32::try_from(key.len() + copies * self.bytes.len())
            .unwrap_or(u32::MAX)
            .saturating_add(ENTRY_OVERHEAD)
    }
}

/// An entry that decides how long it lives.
pub(crate) trait Lifetime {
    fn ttl(&self) -> Duration;
}

impl Lifetime for Entry {
    fn ttl(&self) -> Duration {
        self.ttl
    }
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry")
            .field("bytes", &self.bytes.len())
            .field("typed", &self.typed)
            .finish_non_exhaustive()
    }
}

/// Each entry's own TTL, for moka.
pub(crate) struct PerEntryTtl;

impl<E: Lifetime> moka::Expiry<String, Arc<E>> for PerEntryTtl {
    fn expire_after_create(&self, _: &String, entry: &Arc<E>, _: Instant) -> Option<Duration> {
        Some(entry.ttl())
    }

    fn expire_after_update(
        &self,
        _: &String,
        entry: &Arc<E>,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(entry.ttl())
    }
}

/// Entries bounded by bytes (overhead included) and evicted under pressure; markers in a
/// bounded table with constant-time bumps.
pub(crate) struct MemoryStore {
    entries: Moka<String, Arc<Entry>, RandomState>,
    markers: MarkerTable,
    /// How long a marker is kept after its last bump at least; no load that takes longer is
    /// stored.
    marker_period: Duration,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("entries", &self.entries.entry_count())
            .field("markers", &self.markers)
            .finish_non_exhaustive()
    }
}

impl MemoryStore {
    /// A store holding about `capacity_bytes`, for entries that live at most `max_ttl`.
    pub(crate) fn new(capacity_bytes: u64, max_ttl: Duration) -> Self {
        let marker_period = max_ttl.saturating_add(Duration::from_secs(60));
        Self {
            entries: Moka::builder()
                .max_capacity(capacity_bytes)
                .weigher(|k: &String, e: &Arc<Entry>| e.weight(k))
                .expire_after(PerEntryTtl)
                .build_with_hasher(RandomState::default()),
            markers: MarkerTable::new(marker_period, MARKERS_PER_GENERATION),
            marker_period,
        }
    }

    /// The entry under `key` if it was stored in outage `epoch`, and its markers' generations.
    pub(crate) fn fetch_at(&self, key: &str, epoch: u64) -> Fetched {
        let value = self
            .entries
            .get(key)
            .filter(|e| e.epoch == epoch)
            .map(Raw::Kept);
        let mut gens = Gens::new();
        self.markers.read(key, &mut gens);
        Fetched {
            value,
            gens,
            origin: Origin::Memory { epoch },
            l1: None,
        }
    }

    /// Stores `fill` as read in outage `epoch`, unless one of its markers was bumped during the
    /// load (the check and the insert are not atomic, but a bump in between still makes the
    /// entry stale on read) or the load outlasted the markers' guaranteed lifetime.
    pub(crate) fn put_at(&self, fill: &Fill<'_>, ttl: Duration, epoch: u64) -> bool {
        if fill.load_time >= self.marker_period || !self.markers.unchanged(fill.key, fill.gens) {
            return false;
        }
        self.entries.insert(
            fill.key.to_owned(),
            Arc::new(Entry {
                bytes: fill.bytes.clone(),
                typed: fill.typed.clone(),
                ttl,
                epoch,
            }),
        );
        true
    }

    /// Bumps the markers and drops the exact keys' entries.
    pub(crate) fn bump_now(&self, patterns: &[Pattern]) {
        self.markers.bump(patterns);
        for pattern in patterns {
            if let Pattern::Exact(key) = pattern {
                self.entries.invalidate(key.as_str());
            }
        }
    }

    /// Removes every entry whose key starts with `under`; returns how many.
    pub(crate) fn sweep_now(&self, under: &str) -> u64 {
        let doomed: Vec<Arc<String>> = self
            .entries
            .iter()
            .filter(|(k, _)| k.starts_with(under))
            .map(|(k, _)| k)
            .collect();
        for k in &doomed {
            self.entries.invalidate(k.as_str());
        }
        doomed.len() as u64
    }
}

/// The in-process store on its own (Redis disabled): one epoch, no failures.
impl CacheStore for MemoryStore {
    async fn fetch(&self, keys: &[&str], _: &mut Budget) -> Result<Vec<Fetched>, StoreError> {
        Ok(keys.iter().map(|k| self.fetch_at(k, 0)).collect())
    }

    async fn fetch_one(&self, key: &str, _: &mut Budget) -> Result<Fetched, StoreError> {
        Ok(self.fetch_at(key, 0))
    }

    async fn prepare_fill(
        &self,
        _: &[&str],
        _: &mut [Fetched],
        _: &mut Budget,
    ) -> Result<(), StoreError> {
        // In process, a marker is never lost while an entry may depend on it (see MarkerTable).
        Ok(())
    }

    async fn put(
        &self,
        entries: &[Fill<'_>],
        ttl: Duration,
        _: &mut Budget,
    ) -> Result<(), StoreError> {
        for fill in entries {
            self.put_at(fill, ttl, 0);
        }
        Ok(())
    }

    async fn bump(&self, patterns: &[Pattern]) -> Result<(), StoreError> {
        self.bump_now(patterns);
        Ok(())
    }

    async fn sweep(&self, under: &str) -> Result<u64, StoreError> {
        Ok(self.sweep_now(under))
    }
}
