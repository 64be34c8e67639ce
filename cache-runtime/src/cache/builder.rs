//! [`CacheBuilder`]: configuration in code.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::store::degrading::Degrading;
use super::store::memory::MemoryStore;
use super::{Cache, Inner};
use crate::config::{Config, ConfigError, Fallback, MAX_TTL_LIMIT};

/// Builds a [`Cache`] from code; starts from [`Config::default`] (Redis disabled, memory
/// fallback). Every setter has an environment variable that [`Config::from_env`] reads.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), cache_runtime::ConfigError> {
/// use std::time::Duration;
/// use cache_runtime::{Cache, Fallback};
///
/// let cache = Cache::builder()
///     .default_ttl(Duration::from_secs(60))
///     .prefix("myapp")
///     .fallback(Fallback::Memory)
///     .build()
///     .await?;
/// assert_eq!(cache.mode(), cache_runtime::Mode::Memory);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct CacheBuilder {
    config: Config,
    #[cfg(feature = "redis")]
    client: Option<crate::RedisClient>,
}

impl CacheBuilder {
    /// Starts from an existing configuration (e.g. [`Config::from_env`]).
    pub fn from_config(config: Config) -> Self {
        Self::default().config(config)
    }

    /// Replaces the whole configuration.
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// `false` turns caching off entirely (see [`Config::enabled`]).
    pub fn enabled(mut self, enabled: bool) -> Self {
        self.config.enabled = enabled;
        self
    }

    /// Enables Redis at `url` (`redis://`, or `rediss://` with the `tls` feature; a user name
    /// and password in the URL authenticate, as an ACL user when a name is given).
    pub fn redis_url(mut self, url: impl Into<String>) -> Self {
        self.config.redis_url = url.into();
        self.config.redis_enabled = true;
        self
    }

    /// Enables Redis on a Redis Cluster, given seed nodes as URLs (`redis://host:port`,
    /// `rediss://` for TLS, credentials as in [`CacheBuilder::redis_url`]) or `host:port`
    /// pairs. The client discovers the other nodes from them.
    pub fn redis_cluster<S: Into<String>>(mut self, nodes: impl IntoIterator<Item = S>) -> Self {
        self.config.redis_cluster_nodes = nodes
            .into_iter()
            .map(|node| {
                let node = node.into();
                if node.contains("://") {
                    node
                } else {
                    format!("redis://{node}")
                }
            })
            .collect();
        self.config.redis_enabled = true;
        self
    }

    /// Replicas that must acknowledge an invalidation before it counts as done (see
    /// [`Config::wait_replicas`]).
    pub fn wait_replicas(mut self, replicas: u32) -> Self {
        self.config.wait_replicas = replicas;
        self
    }

    /// Turns Redis on or off (off: no connection is ever opened).
    pub fn redis_enabled(mut self, enabled: bool) -> Self {
        self.config.redis_enabled = enabled;
        self
    }

    /// Uses an existing client (shared with other modules) instead of opening one. Its own
    /// timeouts and breaker apply to the cache's Redis operations.
    #[cfg(feature = "redis")]
    pub fn redis_client(mut self, client: crate::RedisClient) -> Self {
        self.client = Some(client);
        self.config.redis_enabled = true;
        self
    }

    /// The CA certificate (PEM file) that signed the Redis server's certificate.
    pub fn redis_tls_ca(mut self, path: impl Into<PathBuf>) -> Self {
        self.config.redis_tls_ca = Some(path.into());
        self
    }

    /// Default TTL for entries without their own (at most ten years).
    pub fn default_ttl(mut self, ttl: Duration) -> Self {
        self.config.default_ttl = ttl.min(MAX_TTL_LIMIT);
        self
    }

    /// Upper bound for entry TTLs (at most ten years).
    pub fn max_ttl(mut self, ttl: Duration) -> Self {
        self.config.max_ttl = ttl.min(MAX_TTL_LIMIT);
        self
    }

    /// Prefix prepended to every key this cache writes (a `:` is added if it does not end
    /// with one).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.config.prefix = prefix.into();
        self
    }

    /// What serves when Redis is disabled or down.
    pub fn fallback(mut self, fallback: Fallback) -> Self {
        self.config.fallback = fallback;
        self
    }

    /// Longest life of an in-process entry while Redis is enabled but unreachable.
    pub fn fallback_ttl(mut self, ttl: Duration) -> Self {
        self.config.fallback_ttl = ttl.min(MAX_TTL_LIMIT);
        self
    }

    /// Bound on the Redis operations of one call together.
    pub fn op_timeout(mut self, timeout: Duration) -> Self {
        self.config.op_timeout = timeout;
        self
    }

    /// Bound on connecting to Redis, at start-up and when reconnecting.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.config.connect_timeout = timeout;
        self
    }

    /// Consecutive failures that open the circuit breaker.
    pub fn failure_threshold(mut self, failures: u32) -> Self {
        self.config.failure_threshold = failures;
        self
    }

    /// How long concurrent callers of one key wait for its load before loading on their own.
    pub fn flight_timeout(mut self, timeout: Duration) -> Self {
        self.config.flight_timeout = timeout;
        self
    }

    /// Encoded values larger than this are not cached.
    pub fn max_value_bytes(mut self, bytes: usize) -> Self {
        self.config.max_value_bytes = bytes;
        self
    }

    /// What the in-process store may hold, per-entry overhead included.
    pub fn memory_capacity(mut self, bytes: u64) -> Self {
        self.config.memory_capacity_bytes = bytes;
        self
    }

    /// The two-level cache: an in-process L1 in front of Redis (see [`Config::l1`]; needs the
    /// `l1` feature, and Redis).
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), cache_runtime::ConfigError> {
    /// use std::time::Duration;
    ///
    /// let cache = cache_runtime::Cache::builder()
    ///     .redis_url("redis://127.0.0.1:6379")
    ///     .l1(true)
    ///     .l1_capacity(16 << 20)
    ///     .l1_max_ttl(Duration::from_secs(10))
    ///     .build()
    ///     .await?;
    /// # let _ = cache;
    /// # Ok(())
    /// # }
    /// ```
    pub fn l1(mut self, on: bool) -> Self {
        self.config.l1 = on;
        self
    }

    /// What the L1 may hold, per-entry overhead included (see [`Config::l1_capacity_bytes`]).
    pub fn l1_capacity(mut self, bytes: u64) -> Self {
        self.config.l1_capacity_bytes = bytes;
        self
    }

    /// The longest an L1 entry is served (see [`Config::l1_max_ttl`]); at least a millisecond.
    pub fn l1_max_ttl(mut self, ttl: Duration) -> Self {
        self.config.l1_max_ttl = ttl.max(Duration::from_millis(1));
        self
    }

    /// A file that exists while invalidations wait for Redis (see [`Config::outage_file`]).
    pub fn outage_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.config.outage_file = Some(path.into());
        self
    }

    /// Builds the cache. Waits at most the connect timeout for Redis; an unreachable Redis is
    /// not an error (the cache starts degraded and reconnects in the background).
    ///
    /// # Errors
    /// A Redis URL the client cannot parse, `rediss://` without the `tls` feature, an
    /// unreadable CA certificate, braces in the prefix of a cache on a Redis Cluster.
    pub async fn build(self) -> Result<Cache, ConfigError> {
        let config = self.config;
        if config.l1 && !cfg!(feature = "l1") {
            return Err(ConfigError::invalid(
                "CACHE_L1",
                "true",
                "this build of cache-runtime has no `l1` feature",
            ));
        }
        let prefix = config.key_prefix();
        #[cfg(feature = "redis")]
        let redis = if config.enabled && config.redis_enabled {
            check_cluster_prefix(&config.prefix, config.is_cluster())?;
            let client = match self.client {
                Some(client) => client,
                None => crate::RedisClient::connect(&config).await?,
            };
            check_cluster_prefix(&config.prefix, client.is_cluster())?;
            Some(super::store::redis::RedisCacheStore::new(
                client,
                prefix.clone(),
                config.max_ttl,
            ))
        } else {
            None
        };
        #[cfg(not(feature = "redis"))]
        if config.redis_enabled {
            tracing::warn!(
                "REDIS_ENABLED is set but cache-runtime was built without its `redis` feature"
            );
        }
        match (config.enabled, config.redis_enabled, config.fallback) {
            (false, _, _) => tracing::info!("CACHE_ENABLED=false; caching is off"),
            (true, true, _) => {}
            (true, false, Fallback::Memory) => tracing::info!("redis disabled; caching in process"),
            (true, false, _) => tracing::info!("redis disabled and no fallback; nothing is stored"),
        }
        let memory = (config.enabled && config.fallback == Fallback::Memory)
            .then(|| MemoryStore::new(config.memory_capacity_bytes, config.max_ttl));
        #[cfg(feature = "l1")]
        let l1 = match &redis {
            Some(redis) if config.l1 => Some(super::l1::L1::start(
                crate::pubsub::PubSub::redis(redis.client().clone(), &prefix),
                config.l1_capacity_bytes,
                config.l1_max_ttl,
            )),
            _ => None,
        };
        let store = Degrading::new(
            #[cfg(feature = "redis")]
            redis,
            #[cfg(feature = "l1")]
            l1,
            memory,
            config.fallback_ttl,
            config.outage_file.clone(),
        );
        Ok(Cache {
            inner: Arc::new(Inner {
                store,
                prefix,
                stats: super::stats::Stats::default(),
                flights: super::flight::Flights::default(),
                config,
            }),
        })
    }
}

/// On a Redis Cluster, braces in the prefix would be a hash tag putting every key in one slot.
#[cfg(feature = "redis")]
fn check_cluster_prefix(prefix: &str, cluster: bool) -> Result<(), ConfigError> {
    if cluster && prefix.contains(['{', '}']) {
        return Err(ConfigError::invalid(
            "CACHE_PREFIX",
            prefix.to_owned(),
            "on a Redis Cluster, braces in the prefix are a hash tag that would put every key \
             in one slot, on one node: use a prefix without `{` and `}`",
        ));
    }
    Ok(())
}
