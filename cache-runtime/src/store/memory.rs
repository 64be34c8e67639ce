//! The in-process store (moka): used when Redis is disabled, or down with `CACHE_FALLBACK=memory`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::sync::Cache as Moka;

use super::Fetched;

#[derive(Clone)]
struct Entry {
    bytes: Arc<[u8]>,
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
/// would lose an invalidation), only aged out after the longest entry TTL.
pub(crate) struct MemoryStore {
    entries: Moka<String, Entry>,
    markers: Moka<String, u64>,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("entries", &self.entries.entry_count())
            .finish()
    }
}

impl MemoryStore {
    pub(crate) fn new(capacity_bytes: u64, marker_ttl: Duration) -> Self {
        Self {
            entries: Moka::builder()
                .max_capacity(capacity_bytes)
                .weigher(|k: &String, e: &Entry| {
                    u32::try_from(k.len() + e.bytes.len()).unwrap_or(u32::MAX)
                })
                .expire_after(PerEntryTtl)
                .build(),
            markers: Moka::builder().time_to_live(marker_ttl).build(),
        }
    }

    pub(crate) fn fetch(&self, key: &str, markers: &[String]) -> Fetched {
        Fetched {
            value: self.entries.get(key).map(|e| e.bytes.to_vec()),
            gens: markers
                .iter()
                .map(|m| self.markers.get(m).unwrap_or(0))
                .collect(),
        }
    }

    pub(crate) fn put(&self, key: &str, bytes: Vec<u8>, ttl: Duration) {
        self.entries.insert(
            key.to_owned(),
            Entry {
                bytes: bytes.into(),
                ttl,
            },
        );
    }

    pub(crate) fn delete(&self, key: &str) -> bool {
        self.entries.remove(key).is_some()
    }

    pub(crate) fn bump(&self, marker: &str) {
        self.markers
            .entry_by_ref(marker)
            .and_upsert_with(|old| old.map_or(1, |e| e.into_value().wrapping_add(1)));
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
