//! The in-process store (moka): used when Redis is disabled, or down with `CACHE_FALLBACK=memory`.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use moka::sync::Cache as Moka;

use super::{Fetched, Raw, Typed};
use crate::key::Pattern;

#[derive(Clone)]
struct Entry {
    bytes: Arc<[u8]>,
    typed: Option<Typed>,
    ttl: Duration,
}

struct PerEntryTtl;

impl moka::Expiry<String, Entry> for PerEntryTtl {
    fn expire_after_create(&self, _: &String, entry: &Entry, _: Instant) -> Option<Duration> {
        Some(entry.ttl)
    }

    fn expire_after_update(
        &self,
        _: &String,
        entry: &Entry,
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
    entries: Moka<String, Entry>,
    markers: RwLock<Markers>,
    marker_ttl: Duration,
}

#[derive(Default)]
struct Markers {
    epoch: u64,
    /// `users` for `users:*`.
    prefixes: HashMap<Box<str>, Marker>,
    exact: HashMap<Box<str>, Marker>,
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
                .weigher(|k: &String, e: &Entry| {
                    let copies = if e.typed.is_some() { 2 } else { 1 };
                    u32::try_from(k.len() + copies * e.bytes.len()).unwrap_or(u32::MAX)
                })
                .expire_after(PerEntryTtl)
                .build(),
            markers: RwLock::default(),
            marker_ttl,
        }
    }

    /// The entry under `full` (the key with the cache prefix) and the generations of the markers
    /// of `key`, in [`crate::key::markers_for`]'s order.
    pub(crate) fn fetch(&self, full: &str, key: &str) -> Fetched {
        let (value, typed) = self
            .entries
            .get(full)
            .map_or((None, None), |e| (Some(Raw::Shared(e.bytes)), e.typed));
        let markers = self.markers.read().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        let live = |m: Option<&Marker>| m.filter(|m| m.expires > now).map_or(0, |m| m.generation);
        let mut gens = Vec::with_capacity(4);
        gens.push(markers.epoch);
        gens.extend(
            key.match_indices(':')
                .map(|(i, _)| live(markers.prefixes.get(&key[..i]))),
        );
        gens.push(live(markers.exact.get(key)));
        Fetched { value, typed, gens }
    }

    pub(crate) fn put(&self, full: &str, bytes: Arc<[u8]>, typed: Option<Typed>, ttl: Duration) {
        self.entries
            .insert(full.to_owned(), Entry { bytes, typed, ttl });
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
    pub(crate) fn clear_entries(&self) {
        self.entries.invalidate_all();
    }
}
