//! Declarative Redis caching for async Rust services.
//!
//! ```
//! use cache_runtime::{cached, invalidates, Cache};
//!
//! #[derive(serde::Serialize, serde::Deserialize)]
//! struct User { id: u32, name: String }
//!
//! #[cached(key = "users:<id>", ttl = 300)]
//! async fn get_user(id: u32) -> Result<Option<User>, std::io::Error> {
//!     Ok(Some(User { id, name: "Ada".into() })) // a database query in real life
//! }
//!
//! #[invalidates("users:*")]
//! async fn rename_user(id: u32, name: String) -> Result<(), std::io::Error> {
//!     Ok(())
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // At start-up; `Cache::from_env()` reads `.env` and the environment instead.
//! cache_runtime::install(Cache::builder().build().await?).ok();
//! assert_eq!(get_user(42).await?.unwrap().name, "Ada"); // loads, caches `users:42`
//! assert_eq!(get_user(42).await?.unwrap().name, "Ada"); // served from the cache
//! rename_user(42, "Grace".into()).await?;               // every `users:` entry is now stale
//! assert_eq!(cache_runtime::global().unwrap().stats().totals.hits, 1);
//! # Ok(())
//! # }
//! ```
//!
//! The cache serves from Redis when `REDIS_ENABLED=true` and Redis answers; otherwise from an
//! in-process store (`CACHE_FALLBACK=memory`, the default) or not at all (`none`). Failures
//! never reach callers: a hung Redis costs one short timeout per call until a circuit breaker
//! opens, and caching resumes by itself. Invalidation writes one marker per pattern (O(1),
//! never `KEYS` or `SCAN`); see `ARCHITECTURE.md`.
#![cfg_attr(
    not(test),
    warn(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

mod cache;
mod codec;
mod config;
mod flight;
mod key;
mod shape;
mod stats;
mod store;

use std::sync::OnceLock;

pub use cache::{Cache, CacheBuilder};
pub use config::{Config, ConfigError, Fallback};
pub use key::{KeyBuilder, KeyError, MAX_KEY_LEN};
pub use stats::{Mode, PrefixStats, StatsSnapshot};
#[cfg(feature = "redis")]
pub use store::redis::Circuit;

#[cfg(feature = "macros")]
pub use cache_macros::{cached, invalidates};

/// Health of a cache, from [`Cache::health`].
#[derive(Debug, Clone, serde::Serialize)]
#[non_exhaustive]
pub struct Health {
    /// Where values live right now.
    pub mode: Mode,
    /// Present when Redis is enabled.
    pub redis: Option<RedisHealth>,
}

/// Redis' side of [`Health`].
#[derive(Debug, Clone, serde::Serialize)]
#[non_exhaustive]
pub struct RedisHealth {
    /// Whether a PING answered within the operation timeout.
    pub reachable: bool,
    /// PING round trip in microseconds.
    pub latency_us: Option<u64>,
    /// The circuit breaker's state.
    #[cfg(feature = "redis")]
    pub circuit: Circuit,
}

static GLOBAL: OnceLock<Cache> = OnceLock::new();

/// Sets the process-wide cache that `#[cached]` and `#[invalidates]` use (unless given
/// `cache = ..`). Until one is installed, annotated functions call straight through.
///
/// # Errors
/// Returns the cache back if one is already installed.
pub fn install(cache: Cache) -> Result<(), Cache> {
    GLOBAL.set(cache)
}

/// The installed cache, if any.
pub fn global() -> Option<&'static Cache> {
    GLOBAL.get()
}

tokio::task_local! {
    static SCOPED: Cache;
}

/// Runs `future` with `cache` as the cache of every annotated function it calls (without their
/// own `cache = ..`), instead of the installed one. A web app can scope each request to the
/// cache in its state, so tests can run many apps with their own caches in one process.
pub async fn scope<F: Future>(cache: Cache, future: F) -> F::Output {
    SCOPED.scope(cache, future).await
}

/// The cache annotated functions use here: the [`scope`]d one, else the [`install`]ed one.
pub fn current() -> Option<Cache> {
    SCOPED
        .try_with(Cache::clone)
        .ok()
        .or_else(|| global().cloned())
}

/// Not public API: used by the expansions of `#[cached]` and `#[invalidates]`; may change in any
/// release.
#[doc(hidden)]
pub mod __private {
    use std::time::Duration;

    use crate::Cache;
    pub use crate::key::KeyBuilder;
    use crate::key::{KeyError, Pattern};
    pub use crate::shape::{
        ByBytes, ByClone, Keep, OptionShape, Outcome, PlainShape, Policy, Probe, ProbeBytes,
        ProbeClone, ResultOptionShape, ResultShape, Shape,
    };
    pub use serde;

    /// An argument hashed into a key must be serializable.
    #[diagnostic::on_unimplemented(
        message = "`{Self}` cannot be part of a cache key: it does not implement `serde::Serialize`",
        label = "this argument is neither in the key template nor skipped",
        note = "add it to `skip(..)` if it cannot change the result, or derive `Serialize` for its type"
    )]
    pub trait KeyArg: serde::Serialize {}
    impl<T: serde::Serialize + ?Sized> KeyArg for T {}

    /// Seconds to a TTL (the macro checks at compile time that literals are positive).
    pub const fn secs(secs: u64) -> Duration {
        Duration::from_secs(secs)
    }

    /// The cache to use: the given one, else the scoped one, else the installed one.
    pub fn resolve(given: Option<&Cache>) -> Option<Cache> {
        match given {
            Some(cache) => Some(cache.clone()),
            None => crate::current(),
        }
    }

    /// `#[cached]`: read through `cache`, or just run `load` when there is none. `keep` is what
    /// [`Probe`] picked for the value type.
    pub async fn cached<S, R, F, K>(
        cache: Option<&Cache>,
        key: Result<String, KeyError>,
        policy: Policy,
        keep: K,
        load: F,
    ) -> R
    where
        S: Shape<R>,
        F: Future<Output = R>,
        K: Keep<S::Value>,
    {
        if let Some(cache) = cache {
            return cache
                .load_through::<S, R, F>(key, policy, &keep, load)
                .await;
        }
        match crate::current() {
            Some(cache) => {
                cache
                    .load_through::<S, R, F>(key, policy, &keep, load)
                    .await
            }
            None => load.await,
        }
    }

    /// `#[invalidates]`: invalidates every pattern; a pattern that failed to build (an argument
    /// that would not serialize) invalidates everything instead.
    pub async fn invalidate(cache: Option<&Cache>, patterns: &[Result<String, KeyError>]) {
        let Some(cache) = resolve(cache) else { return };
        let parsed: Vec<Pattern> = patterns
            .iter()
            .map(|p| {
                p.clone().and_then(|p| Pattern::parse(&p)).unwrap_or_else(|e| {
                    tracing::error!(error = %e, "invalidation pattern unusable; invalidating everything");
                    Pattern::All
                })
            })
            .collect();
        cache.invalidate_patterns(&parsed).await;
    }

    /// Whether a result should trigger `#[invalidates]`: `Ok` for results.
    pub fn succeeded<T, E>(result: &Result<T, E>) -> bool {
        result.is_ok()
    }
}
