//! The two stores behind a [`crate::Cache`]: Redis (shared, behind a circuit breaker) and the
//! in-process fallback. Both speak the same few primitives; the cache decides which one serves.

pub(crate) mod memory;
#[cfg(feature = "redis")]
pub(crate) mod redis;

use std::any::Any;
use std::sync::Arc;

/// One key's entry and the current generations of its markers.
#[derive(Debug, Default)]
pub(crate) struct Fetched {
    /// The encoded entry (the envelope).
    pub(crate) value: Option<Raw>,
    pub(crate) gens: Gens,
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

/// A value as itself (see [`crate::shape::Keep`]), with the marker generations its envelope
/// records: a hit clones it instead of decoding the bytes.
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

/// Why a store operation did not happen. Never surfaces to callers of cached functions: it
/// sends them to the fallback.
#[cfg_attr(
    not(feature = "redis"),
    allow(dead_code, reason = "the Redis store's failures")
)]
#[derive(Debug, thiserror::Error)]
pub(crate) enum StoreError {
    #[error("redis unavailable (circuit open)")]
    Unavailable,
    #[error("redis operation timed out")]
    Timeout,
    #[cfg(feature = "redis")]
    #[error("redis: {0}")]
    Redis(#[from] ::redis::RedisError),
}
