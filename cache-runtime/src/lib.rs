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
//!
//! Layout: [`cache`](Cache) (the handle, its stores and the read-through engine) stands on
//! [`redis`](RedisClient), the connection, timeouts, circuit breaker and recovery that every
//! Redis-backed module of the process shares.
#![cfg_attr(
    not(test),
    warn(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

#[cfg(feature = "axum")]
pub mod axum;
mod cache;
mod config;
mod context;
mod error;
#[cfg(feature = "locks")]
pub mod lock;
#[cfg(feature = "pubsub")]
pub mod pubsub;
#[cfg(feature = "rate-limit")]
pub mod rate_limit;
#[cfg(feature = "redis")]
mod redis;
#[cfg(feature = "sessions")]
pub mod session;
mod sync;

#[doc(hidden)]
pub mod __private;
#[cfg(feature = "testing")]
#[doc(hidden)]
pub mod testing;

pub use cache::key::{KeyBuilder, MAX_KEY_LEN};
pub use cache::stats::{L1Stats, Mode, PrefixStats, StatsSnapshot};
pub use cache::{Cache, CacheBuilder, Health};
pub use config::{Config, Environment, Fallback, MAX_TTL_LIMIT};
pub use context::defer_invalidations;
pub use context::{current, global, install, scope};
pub use error::{ConfigError, KeyError};
#[cfg(feature = "redis")]
pub use redis::{Circuit, NodeHealth, RedisClient, RedisHealth};

#[cfg(feature = "macros")]
pub use cache_macros::{cached, invalidates};
