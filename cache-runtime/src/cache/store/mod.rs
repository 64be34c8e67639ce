//! The stores behind a [`crate::Cache`]: a small trait, its two backends (Redis, shared by every
//! instance; the in-process fallback), and the wrapper that picks which one serves.
//!
//! A store keeps envelopes under keys and the generations of invalidation markers. Keys are
//! given without the cache prefix; each store applies the prefix it was built with.

pub(crate) mod degrading;
pub(crate) mod memory;
#[cfg(feature = "redis")]
pub(crate) mod redis;

use std::any::Any;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use super::key::Pattern;

#[cfg(feature = "redis")]
pub(crate) use crate::redis::Error as StoreError;

/// Why a store operation did not happen. The in-process store never fails.
#[cfg(not(feature = "redis"))]
#[derive(Debug, thiserror::Error)]
pub(crate) enum StoreError {}

#[cfg(feature = "redis")]
pub(crate) use crate::redis::Budget;

/// Without Redis there is no time budget to keep.
#[cfg(not(feature = "redis"))]
#[derive(Debug, Clone, Copy)]
pub(crate) struct Budget;

#[cfg(not(feature = "redis"))]
impl Budget {
    pub(crate) fn new(_: Duration) -> Self {
        Self
    }
}

/// The primitives every store provides. Each method is one round trip for a networked store.
pub(crate) trait CacheStore: Send + Sync {
    /// The entries under `keys` and the current generations of their markers
    /// ([`super::markers::of_key`] order), in one round trip.
    fn fetch(
        &self,
        keys: &[&str],
        budget: &mut Budget,
    ) -> impl Future<Output = Result<Vec<Fetched>, StoreError>> + Send;

    /// [`CacheStore::fetch`] of one key (stores answer it without a `Vec` where they can).
    fn fetch_one(
        &self,
        key: &str,
        budget: &mut Budget,
    ) -> impl Future<Output = Result<Fetched, StoreError>> + Send {
        async move {
            let mut found = self.fetch(&[key], budget).await?;
            Ok(found.pop().unwrap_or_default())
        }
    }

    /// Before filling `keys`: makes sure every marker their reads (`fetched`, in the same
    /// order) found absent exists, and puts the generations it then holds into the reads'
    /// `gens`, in one round trip. An entry is only ever recorded against markers that exist,
    /// so that a marker lost later reads as "changed".
    fn prepare_fill(
        &self,
        keys: &[&str],
        fetched: &mut [Fetched],
        budget: &mut Budget,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Stores entries (each with the generations it was loaded under) for `ttl`.
    fn put(
        &self,
        entries: &[Fill<'_>],
        ttl: Duration,
        budget: &mut Budget,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Gives each pattern's marker a new generation and deletes the exact keys among them.
    fn bump(&self, patterns: &[Pattern]) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Deletes this cache's entries whose keys start with `under` (administration only: it
    /// scans); returns how many.
    fn sweep(&self, under: &str) -> impl Future<Output = Result<u64, StoreError>> + Send;
}

/// One key's entry and the current generations of its markers.
#[derive(Debug, Default)]
pub(crate) struct Fetched {
    /// The encoded entry (the envelope).
    pub(crate) value: Option<Raw>,
    pub(crate) gens: Gens,
    /// Where it was read: a fill goes back there, or nowhere.
    pub(crate) origin: Origin,
    /// Read from Redis while the L1's feed was live: the value may go into the L1.
    pub(crate) l1: Option<Ticket>,
}

#[cfg(feature = "l1")]
pub(crate) use crate::cache::l1::Ticket;
/// Without the `l1` feature no read carries one.
#[cfg(not(feature = "l1"))]
#[derive(Debug, Clone, Copy)]
pub(crate) enum Ticket {}

/// Which store answered a read. Generations of one store mean nothing to the other, so a load
/// is stored only in the store (and, in process, the Redis outage) its markers were read from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum Origin {
    /// Nothing answered (no store, or the read failed): the load is not stored.
    #[default]
    Nowhere,
    #[cfg_attr(
        not(feature = "redis"),
        allow(dead_code, reason = "read from Redis only")
    )]
    Redis,
    /// The in-process store, in the Redis outage with this breaker state (0 without Redis).
    Memory { epoch: u64 },
}

/// Marker generations: a handful per key, kept off the heap.
pub(crate) type Gens = smallvec::SmallVec<[u64; 4]>;

/// An encoded entry: read from Redis, or shared with the in-process store (which may keep the
/// value itself beside it).
#[derive(Debug)]
pub(crate) enum Raw {
    #[cfg_attr(
        not(feature = "redis"),
        allow(dead_code, reason = "read from Redis only")
    )]
    Owned(Vec<u8>),
    Kept(Arc<memory::Entry>),
}

impl std::ops::Deref for Raw {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Raw::Owned(v) => v,
            Raw::Kept(e) => &e.bytes,
        }
    }
}

impl From<Raw> for Arc<[u8]> {
    fn from(raw: Raw) -> Self {
        match raw {
            Raw::Owned(v) => v.into(),
            Raw::Kept(e) => e.bytes.clone(),
        }
    }
}

/// A value as itself (see [`crate::cache::shape::Keep`]), with the marker generations its
/// envelope records: an in-process hit clones it instead of decoding the bytes.
#[derive(Clone)]
pub(crate) struct Typed {
    pub(crate) value: Arc<dyn Any + Send + Sync>,
    pub(crate) gens: Arc<[u64]>,
}

impl std::fmt::Debug for Typed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Typed")
            .field("gens", &self.gens)
            .finish_non_exhaustive()
    }
}

/// An entry to store.
#[derive(Debug, Clone)]
pub(crate) struct Fill<'a> {
    /// The key, without the cache prefix.
    pub(crate) key: &'a str,
    /// The envelope.
    pub(crate) bytes: Arc<[u8]>,
    /// The value itself, for the in-process store to keep beside the envelope.
    pub(crate) typed: Option<Typed>,
    /// The marker generations read before the load (the envelope records them too).
    pub(crate) gens: &'a [u64],
    /// How long the load took: the in-process store refuses loads longer than its markers'
    /// guaranteed lifetime.
    pub(crate) load_time: Duration,
    /// Where the generations were read.
    pub(crate) origin: Origin,
}
