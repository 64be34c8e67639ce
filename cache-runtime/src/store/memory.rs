//! The in-process store (moka): used when Redis is disabled, or down with `CACHE_FALLBACK=memory`.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use foldhash::fast::RandomState;
use moka::sync::Cache as Moka;

use super::{Fetched, Gens, Raw, Typed};
use crate::key::Pattern;

/// An entry as the in-process store keeps it; shared, so a hit copies one pointer.
pub(crate) struct Entry {
    pub(crate) bytes: Arc<[u8]>,
    pub(crate) typed: Option<Typed>,
    ttl: Duration,
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry")
            .field("bytes", &self.bytes.len())
            .field("typed", &self.typed)
            .finish_non_exhaustive()
    }
}

struct PerEntryTtl;

impl moka::Expiry<String, Arc<Entry>> for PerEntryTtl {
    fn expire_after_create(&self, _: &String, entry: &Arc<Entry>, _: Instant) -> Option<Duration> {
        Some(entry.ttl)
    }

    fn expire_after_update(
        &self,
        _: &String,
        entry: &Arc<Entry>,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(entry.ttl)
    }
}

/// Entries are bounded by bytes and evicted under pressure; markers are never evicted (losing one
/// would lose an invalidation), only forgotten after the longest entry TTL. Markers are looked up
/// by slices of the key under one read lock: a hit allocates nothing for them.
pub(crate) struct MemoryStore {
    entries: Moka<String, Arc<Entry>, RandomState>,
    markers: RwLock<Markers>,
    marker_ttl: Duration,
}

#[derive(Default)]
struct Markers {
    epoch: u64,
    /// `users` for `users:*`.
    prefixes: HashMap<Box<str>, Marker, RandomState>,
    exact: HashMap<Box<str>, Marker, RandomState>,
}

struct Marker {
    generation: u64,
    expires: Instant,
}

/// Past this many markers, a bump first forgets the expired ones.
const PRUNE_AT: usize = 4096;

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("entries", &self.entries.entry_count())
            .finish_non_exhaustive()
    }
}

impl MemoryStore {
    pub(crate) fn new(capacity_bytes: u64, marker_ttl: Duration) -> Self {
        Self {
            entries: Moka::builder()
                .max_capacity(capacity_bytes)
                // The value itself, when kept, weighs about as much as its encoding.
                .weigher(|k: &String, e: &Arc<Entry>| {
                    let copies = if e.typed.is_some() { 2 } else { 1 };
                    u32::try_from(k.len() + copies * e.bytes.len()).unwrap_or(u32::MAX)
                })
                .expire_after(PerEntryTtl)
                .build_with_hasher(RandomState::default()),
            markers: RwLock::default(),
            marker_ttl,
        }
    }

    /// The entry under `full` (the key with the cache prefix) and the generations of the markers
    /// of `key`, in [`crate::key::markers_for`]'s order.
    pub(crate) fn fetch(&self, full: &str, key: &str) -> Fetched {
        let value = self.entries.get(full).map(Raw::Kept);
        let markers = self.markers.read().unwrap_or_else(PoisonError::into_inner);
        let mut gens = Gens::new();
        gens.push(markers.epoch);
        if markers.prefixes.is_empty() && markers.exact.is_empty() {
            let prefixes = key.bytes().filter(|&b| b == b':').count();
            gens.extend(std::iter::repeat_n(0, prefixes + 1));
        } else {
            // Reading the clock costs more than a lookup here: only once a marker is found.
            let mut now = None;
            let mut live = |m: Option<&Marker>| {
                m.filter(|m| m.expires > *now.get_or_insert_with(Instant::now))
                    .map_or(0, |m| m.generation)
            };
            gens.extend(
                key.match_indices(':')
                    .map(|(i, _)| live(markers.prefixes.get(&key[..i]))),
            );
            gens.push(live(markers.exact.get(key)));
        }
        Fetched { value, gens }
    }

    pub(crate) fn put(&self, full: &str, bytes: Arc<[u8]>, typed: Option<Typed>, ttl: Duration) {
        self.entries
            .insert(full.to_owned(), Arc::new(Entry { bytes, typed, ttl }));
    }

    pub(crate) fn delete(&self, full: &str) -> bool {
        self.entries.remove(full).is_some()
    }

    pub(crate) fn bump(&self, pattern: &Pattern) {
        let mut markers = self.markers.write().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        let expires = now + self.marker_ttl;
        let map = match pattern {
            Pattern::All => {
                markers.epoch += 1;
                return;
            }
            Pattern::Prefix(p) => (&mut markers.prefixes, p),
            Pattern::Exact(k) => (&mut markers.exact, k),
        };
        let (map, name) = map;
        if map.len() >= PRUNE_AT {
            map.retain(|_, m| m.expires > now);
        }
        let marker = map.entry(name.as_str().into()).or_insert(Marker {
            generation: 0,
            expires,
        });
        if marker.expires <= now {
            marker.generation = 0;
        }
        marker.generation += 1;
        marker.expires = expires;
    }

    /// Removes every entry whose key starts with `prefix`; returns how many.
    pub(crate) fn sweep(&self, prefix: &str) -> u64 {
        let doomed: Vec<Arc<String>> = self
            .entries
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(k, _)| k)
            .collect();
        for k in &doomed {
            self.entries.invalidate(k.as_str());
        }
        doomed.len() as u64
    }

    /// Forgets all entries (not markers): on entering degraded mode, what this process cached
    /// before may have been invalidated by other processes through Redis.
    #[cfg_attr(
        not(feature = "redis"),
        allow(dead_code, reason = "degraded mode follows a Redis outage")
    )]
    pub(crate) fn clear_entries(&self) {
        self.entries.invalidate_all();
    }
}
