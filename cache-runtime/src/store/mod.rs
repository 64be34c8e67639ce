//! The two stores behind a [`crate::Cache`]: Redis (shared, behind a circuit breaker) and the
//! in-process fallback. Both speak the same few primitives; the cache decides which one serves.

pub(crate) mod memory;
#[cfg(feature = "redis")]
pub(crate) mod redis;

/// One key's raw value and the current generations of its markers.
#[derive(Debug, Default)]
pub(crate) struct Fetched {
    pub(crate) value: Option<Vec<u8>>,
    pub(crate) gens: Vec<u64>,
}

/// Why a store operation did not happen. Never surfaces to callers of cached functions: it
/// sends them to the fallback.
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
