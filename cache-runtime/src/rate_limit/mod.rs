//! Rate limiting (feature `rate-limit`): fixed window, exact sliding window and token bucket
//! (GCRA), exact across any number of instances on the shared [`RedisClient`], one round trip
//! per check.
//!
//! ```
//! use cache_runtime::rate_limit::{Algorithm, Policy, RateLimiter};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let policy = Policy::new("login", Algorithm::SlidingWindow, "2/60s".parse()?)?;
//! let limiter = RateLimiter::memory(policy); // `RateLimiter::redis(client, policy)` on Redis
//! assert!(limiter.check("203.0.113.7").await?.allowed);
//! assert!(limiter.check("203.0.113.7").await?.allowed);
//! let third = limiter.check("203.0.113.7").await?;
//! assert!(!third.allowed);
//! assert!(third.retry_after.unwrap().as_secs() <= 60);
//! assert!(limiter.check("198.51.100.1").await?.allowed); // another partition
//! # Ok(())
//! # }
//! ```
//!
//! How it stays exact and safe:
//! - Every check is one Lua script on one key (`EVALSHA`, loaded again after a restart or a
//!   failover), so concurrent checks from any number of processes are serialized by Redis and
//!   a cluster routes it to one slot. The scripts read Redis' clock (`TIME`): instances with
//!   skewed clocks agree.
//! - Keys are `<prefix>ratelimit:<name>:<f|s|t>:<hash>`: the partition (an IP, a user id) is
//!   hashed with the limiter's name, so neither Redis nor the headers show it. Every key the
//!   scripts write has a TTL of at most the window.
//! - On Redis failure, the policy's [`OnFailure`]: an in-process limiter with the same
//!   algorithm (default), let everything through, or refuse. While the shared breaker is open
//!   a check does not touch Redis; it costs an atomic load and the fallback.
//!
//! Algorithms (see [`Algorithm`]): a fixed window may admit up to twice the limit to a burst
//! straddling a boundary; the sliding window never admits more than the limit in any window;
//! the token bucket admits a burst of up to `burst` units, then one unit per `window / limit`.

mod fixed_window;
mod sliding_window;
mod token_bucket;

use std::fmt;
use std::num::NonZeroU32;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ::redis::{FromRedisValue, Value};
use serde::Serialize;

use crate::RedisClient;
use crate::error::ConfigError;
use crate::redis::{Lua, with_script};

/// The largest limit or burst: the sliding window keeps one entry per admitted unit.
pub const MAX_LIMIT: u32 = 1_000_000;
/// The longest window.
pub const MAX_WINDOW: Duration = Duration::from_secs(30 * 86_400);
/// How long a refusing limiter ([`OnFailure::Closed`]) asks clients to wait.
const CLOSED_RETRY: Duration = Duration::from_secs(2);

/// A rate as users write it: `<count>/<window>[ burst <n>]`, the window a number and a unit
/// (`ms`, `s`, `m`, `h`, `d`; the number may be left out: `10/s`).
///
/// ```
/// use std::time::Duration;
/// use cache_runtime::rate_limit::Limit;
///
/// let limit: Limit = "100/10s burst 20".parse()?;
/// assert_eq!((limit.count(), limit.window(), limit.burst()), (100, Duration::from_secs(10), 20));
/// assert_eq!("5/1m".parse::<Limit>()?.to_string(), "5/60s");
/// assert!("5 per minute".parse::<Limit>().is_err());
/// # Ok::<(), cache_runtime::rate_limit::LimitError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    count: u32,
    window: Duration,
    burst: Option<u32>,
}

/// Why a [`Limit`] or a [`Policy`] is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct LimitError(String);

impl Limit {
    /// `count` units per `window`.
    ///
    /// # Errors
    /// A count of 0 or above [`MAX_LIMIT`], a window under a millisecond or above
    /// [`MAX_WINDOW`].
    pub fn new(count: u32, window: Duration) -> Result<Self, LimitError> {
        if count == 0 || count > MAX_LIMIT {
            return Err(LimitError(format!(
                "the count must be between 1 and {MAX_LIMIT}"
            )));
        }
        if window < Duration::from_millis(1) || window > MAX_WINDOW {
            return Err(LimitError(
                "the window must be between 1ms and 30d".to_owned(),
            ));
        }
        Ok(Self {
            count,
            window,
            burst: None,
        })
    }

    /// The same rate with a bucket of `burst` units (token bucket only).
    ///
    /// # Errors
    /// A burst of 0 or above [`MAX_LIMIT`].
    pub fn with_burst(mut self, burst: u32) -> Result<Self, LimitError> {
        if burst == 0 || burst > MAX_LIMIT {
            return Err(LimitError(format!(
                "the burst must be between 1 and {MAX_LIMIT}"
            )));
        }
        self.burst = Some(burst);
        Ok(self)
    }

    /// Parses the value of the environment variable `name` (its name is in the error).
    ///
    /// # Errors
    /// As [`Limit::from_str`], as a [`ConfigError`].
    pub fn from_var(name: &str, value: &str) -> Result<Self, ConfigError> {
        value
            .parse()
            .map_err(|e: LimitError| ConfigError::invalid(name, value, e.0))
    }

    /// Units per window.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// The window.
    pub fn window(&self) -> Duration {
        self.window
    }

    /// The bucket size of a token bucket: the burst if given, else the count.
    pub fn burst(&self) -> u32 {
        self.burst.unwrap_or(self.count)
    }

    fn window_us(&self) -> u64 {
        u64::try_from(self.window.as_micros()).unwrap_or(u64::MAX)
    }
}

impl FromStr for Limit {
    type Err = LimitError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let malformed = || {
            LimitError(format!(
                "`{s}` is not a rate such as `5/60s`, `10/s` or `100/10s burst 20`"
            ))
        };
        let mut words = s.split_whitespace();
        let rate = words.next().ok_or_else(malformed)?;
        let burst = match (words.next(), words.next(), words.next()) {
            (None, ..) => None,
            (Some("burst"), Some(n), None) => Some(n.parse::<u32>().map_err(|_| malformed())?),
            _ => return Err(malformed()),
        };
        let (count, window) = rate.split_once('/').ok_or_else(malformed)?;
        let count = count.parse::<u32>().map_err(|_| malformed())?;
        let digits = window
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(window.len());
        let (number, unit) = window.split_at(digits);
        let number = match number {
            "" => 1,
            n => n.parse::<u64>().map_err(|_| malformed())?,
        };
        let unit_ms: u64 = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return Err(malformed()),
        };
        let window = number
            .checked_mul(unit_ms)
            .map(Duration::from_millis)
            .ok_or_else(malformed)?;
        let limit = Self::new(count, window)?;
        match burst {
            Some(b) => limit.with_burst(b),
            None => Ok(limit),
        }
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.window.as_millis();
        if ms.is_multiple_of(1000) {
            write!(f, "{}/{}s", self.count, ms / 1000)?;
        } else {
            write!(f, "{}/{ms}ms", self.count)?;
        }
        match self.burst {
            Some(b) => write!(f, " burst {b}"),
            None => Ok(()),
        }
    }
}

/// How units are counted; each is exact under concurrency, on Redis and in process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Algorithm {
    /// `count` per window, windows aligned on the clock. A burst across a boundary can get
    /// up to twice the count through. One small hash per partition.
    FixedWindow,
    /// No window of the given length, wherever it starts, admits more than `count` (a log of
    /// admission times per partition: O(count) memory). For small limits such as logins.
    SlidingWindow,
    /// GCRA: a bucket of `burst` units (default `count`) refilled at `count` per window. One
    /// number per partition.
    TokenBucket,
}

impl Algorithm {
    fn tag(self) -> &'static str {
        match self {
            Self::FixedWindow => "f",
            Self::SlidingWindow => "s",
            Self::TokenBucket => "t",
        }
    }
}

impl FromStr for Algorithm {
    type Err = LimitError;

    /// `fixed-window`, `sliding-window` or `token-bucket`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "fixed-window" => Ok(Self::FixedWindow),
            "sliding-window" => Ok(Self::SlidingWindow),
            "token-bucket" => Ok(Self::TokenBucket),
            other => Err(LimitError(format!(
                "unknown algorithm `{other}`; expected `fixed-window`, `sliding-window` or `token-bucket`"
            ))),
        }
    }
}

/// What a limiter on Redis does while Redis fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnFailure {
    /// Enforce the limit per instance with an in-process limiter of the same algorithm.
    #[default]
    Local,
    /// Let every request through.
    Open,
    /// Refuse every request ([`RateLimitError::Unavailable`]; HTTP 503).
    Closed,
}

impl OnFailure {
    fn name(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::Open => "open",
            Self::Closed => "closed",
        }
    }

    /// Parses the value of the environment variable `name`: `local`, `open` or `closed`.
    ///
    /// ```
    /// use cache_runtime::rate_limit::OnFailure;
    /// assert_eq!(OnFailure::from_var("RATE_LIMIT_ON_FAILURE", "open")?, OnFailure::Open);
    /// assert!(OnFailure::from_var("RATE_LIMIT_ON_FAILURE", "maybe").is_err());
    /// # Ok::<(), cache_runtime::ConfigError>(())
    /// ```
    ///
    /// # Errors
    /// Any other value, naming the variable.
    pub fn from_var(name: &str, value: &str) -> Result<Self, ConfigError> {
        match value.trim() {
            "local" => Ok(Self::Local),
            "open" => Ok(Self::Open),
            "closed" => Ok(Self::Closed),
            _ => Err(ConfigError::invalid(
                name,
                value,
                "expected `local`, `open` or `closed`",
            )),
        }
    }
}

/// A limiter's name, algorithm, rate, failure mode and key prefix.
///
/// ```
/// use cache_runtime::rate_limit::{Algorithm, OnFailure, Policy};
///
/// let policy = Policy::new("api", Algorithm::TokenBucket, "100/10s burst 20".parse()?)?
///     .on_failure(OnFailure::Open)
///     .prefix("myapp:");
/// assert_eq!(policy.name(), "api");
/// assert!(Policy::new("api", Algorithm::FixedWindow, "100/10s burst 20".parse()?).is_err());
/// # Ok::<(), cache_runtime::rate_limit::LimitError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    name: String,
    algorithm: Algorithm,
    limit: Limit,
    on_failure: OnFailure,
    prefix: String,
}

impl Policy {
    /// A policy named `name` (1 to 64 of `A-Z a-z 0-9 _ - .`; it appears in keys and in the
    /// `RateLimit` headers), failing over to a local limiter, without key prefix.
    ///
    /// # Errors
    /// A malformed name, or a burst on a window algorithm.
    pub fn new(name: &str, algorithm: Algorithm, limit: Limit) -> Result<Self, LimitError> {
        let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
        if name.is_empty() || name.len() > 64 || !name.chars().all(valid) {
            return Err(LimitError(format!(
                "limiter name `{name}`: expected 1 to 64 of A-Z a-z 0-9 _ - ."
            )));
        }
        if limit.burst.is_some() && algorithm != Algorithm::TokenBucket {
            return Err(LimitError(
                "a burst applies to the token bucket only".to_owned(),
            ));
        }
        Ok(Self {
            name: name.to_owned(),
            algorithm,
            limit,
            on_failure: OnFailure::default(),
            prefix: String::new(),
        })
    }

    /// The same policy with another failure mode.
    #[must_use]
    pub fn on_failure(mut self, on_failure: OnFailure) -> Self {
        self.on_failure = on_failure;
        self
    }

    /// The same policy with keys under `prefix` (as the cache's `CACHE_PREFIX`: `app` and
    /// `app:` both give `app:ratelimit:...`).
    #[must_use]
    pub fn prefix(mut self, prefix: &str) -> Self {
        self.prefix = crate::config::key_prefix(prefix);
        self
    }

    /// The name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The rate.
    pub fn limit(&self) -> Limit {
        self.limit
    }

    /// The most units one partition can hold: the count, or a token bucket's burst.
    pub fn capacity(&self) -> u32 {
        match self.algorithm {
            Algorithm::TokenBucket => self.limit.burst(),
            _ => self.limit.count,
        }
    }

    /// A token bucket's refill interval, `window / count`, in µs (at least 1).
    fn interval_us(&self) -> u64 {
        self.limit
            .window_us()
            .div_ceil(u64::from(self.limit.count))
            .max(1)
    }
}

/// Who decided a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Source {
    /// The script on Redis: shared by every instance.
    Redis,
    /// The in-process limiter: Redis disabled, or failing with [`OnFailure::Local`].
    Local,
    /// Nobody: Redis failed and the policy is [`OnFailure::Open`].
    Open,
}

/// The answer to a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Decision {
    /// Whether the units were admitted (and counted).
    pub allowed: bool,
    /// The policy's count (its `q`).
    pub limit: u32,
    /// Units left right now.
    pub remaining: u32,
    /// Until the partition's full quota is available again.
    pub reset: Duration,
    /// When refused: how long until the same check can succeed.
    pub retry_after: Option<Duration>,
    /// Who decided.
    pub source: Source,
}

impl Decision {
    /// [`Decision::retry_after`] in whole seconds, rounded up, at least 1 (for `Retry-After`).
    pub fn retry_after_secs(&self) -> Option<u64> {
        self.retry_after.map(ceil_secs)
    }
}

/// Seconds, rounded up, at least 1.
pub(crate) fn ceil_secs(d: Duration) -> u64 {
    d.as_micros().div_ceil(1_000_000).max(1) as u64
}

/// Why a check has no decision.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RateLimitError {
    /// Redis fails and the policy is [`OnFailure::Closed`].
    #[error("rate limiter unavailable; retry in {} s", ceil_secs(*retry_after))]
    Unavailable {
        /// How long clients should wait.
        retry_after: Duration,
    },
    /// A cost of 0, or above what a partition can ever hold.
    #[error("cost {cost} outside 1..={capacity}")]
    InvalidCost {
        /// The cost asked for.
        cost: u32,
        /// [`Policy::capacity`].
        capacity: u32,
    },
}

/// A limiter's counters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct RateLimitStats {
    /// The policy's name.
    pub name: String,
    /// Its algorithm.
    pub algorithm: Algorithm,
    /// Its rate, as [`Limit`] displays it.
    pub limit: String,
    /// Its failure mode.
    pub on_failure: OnFailure,
    /// Who decides now: `redis`, `memory` (Redis disabled), or the failure mode while Redis
    /// fails (`local`, `open`, `closed`).
    pub mode: &'static str,
    /// Checks admitted.
    pub allowed: u64,
    /// Checks refused (429).
    pub limited: u64,
    /// Decisions by the in-process limiter (Redis disabled, or failing with `local`).
    pub local: u64,
    /// Checks let through because Redis failed (`open`).
    pub open: u64,
    /// Checks refused because Redis failed (`closed`).
    pub closed: u64,
    /// Checks whose Redis call failed (a timeout, an error), not counting those that
    /// skipped Redis while the breaker was open.
    pub redis_errors: u64,
}

/// A rate limiter: one [`Policy`], many partitions (one per client IP, user, ...). Cheap to
/// clone; clones share their state.
#[derive(Clone)]
pub struct RateLimiter {
    inner: Arc<Inner>,
}

struct Inner {
    policy: Policy,
    redis: Option<RedisClient>,
    /// `<prefix>ratelimit:<name>:<tag>:`.
    key_base: String,
    local: Local,
    /// The zero of the in-process clock.
    epoch: Instant,
    counters: Counters,
}

#[derive(Default)]
struct Counters {
    allowed: AtomicU64,
    limited: AtomicU64,
    local: AtomicU64,
    open: AtomicU64,
    closed: AtomicU64,
    redis_errors: AtomicU64,
}

impl fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimiter")
            .field("policy", &self.inner.policy)
            .field("redis", &self.inner.redis.is_some())
            .finish_non_exhaustive()
    }
}

enum Local {
    Fixed(fixed_window::Local),
    Sliding(sliding_window::Local),
    Bucket(token_bucket::Local),
}

/// An algorithm's answer, times in µs.
#[derive(Debug, Clone, Copy)]
struct Verdict {
    allowed: bool,
    remaining: u64,
    reset: u64,
    retry: u64,
}

impl Verdict {
    fn allowed(remaining: u64, reset: u64) -> Self {
        Self {
            allowed: true,
            remaining,
            reset,
            retry: 0,
        }
    }

    fn limited(remaining: u64, reset: u64, retry: u64) -> Self {
        Self {
            allowed: false,
            remaining,
            reset,
            retry,
        }
    }
}

/// An in-process algorithm's state per partition, pruned of finished partitions whenever the
/// map has doubled since the last pruning: memory follows the partitions active in a window.
#[derive(Debug)]
struct Partitions<V> {
    map: rustc_hash::FxHashMap<u128, V>,
    next_prune: usize,
}

/// The smallest map that is pruned.
const MIN_PRUNE: usize = 1024;

impl<V> Default for Partitions<V> {
    fn default() -> Self {
        Self {
            map: rustc_hash::FxHashMap::default(),
            next_prune: MIN_PRUNE,
        }
    }
}

impl<V: Default> Partitions<V> {
    /// The state of `partition` (a default one if new); `live` tells which to keep on pruning.
    fn get(&mut self, partition: u128, live: impl Fn(&V) -> bool) -> &mut V {
        if self.map.len() >= self.next_prune {
            self.map.retain(|_, v| live(v));
            self.next_prune = (self.map.len() * 2).max(MIN_PRUNE);
        }
        self.map.entry(partition).or_default()
    }
}

impl RateLimiter {
    /// A limiter on Redis (shared by every instance using the same Redis), falling back as
    /// the policy says.
    pub fn redis(client: RedisClient, policy: Policy) -> Self {
        Self::with(Some(client), policy)
    }

    /// An in-process limiter: per instance.
    pub fn memory(policy: Policy) -> Self {
        Self::with(None, policy)
    }

    /// On `cache`'s Redis client when it has one, else in process; keys under the cache's
    /// `CACHE_PREFIX` unless the policy has its own prefix.
    pub fn for_cache(cache: &crate::Cache, mut policy: Policy) -> Self {
        if policy.prefix.is_empty() {
            policy = policy.prefix(&cache.config().key_prefix());
        }
        match cache.redis() {
            Some(client) => Self::redis(client.clone(), policy),
            None => Self::memory(policy),
        }
    }

    fn with(redis: Option<RedisClient>, policy: Policy) -> Self {
        let local = match policy.algorithm {
            Algorithm::FixedWindow => Local::Fixed(fixed_window::Local::default()),
            Algorithm::SlidingWindow => Local::Sliding(sliding_window::Local::default()),
            Algorithm::TokenBucket => Local::Bucket(token_bucket::Local::new(
                NonZeroU32::new(policy.capacity()).unwrap_or(NonZeroU32::MIN),
                policy.interval_us(),
            )),
        };
        Self {
            inner: Arc::new(Inner {
                key_base: format!(
                    "{}ratelimit:{}:{}:",
                    policy.prefix,
                    policy.name,
                    policy.algorithm.tag()
                ),
                policy,
                redis,
                local,
                epoch: Instant::now(),
                counters: Counters::default(),
            }),
        }
    }

    /// The policy.
    pub fn policy(&self) -> &Policy {
        &self.inner.policy
    }

    /// Counts one unit against `partition` (see [`RateLimiter::check_n`]).
    ///
    /// # Errors
    /// [`RateLimitError::Unavailable`] when Redis fails and the policy is closed.
    pub async fn check(&self, partition: &str) -> Result<Decision, RateLimitError> {
        self.check_n(partition, 1).await
    }

    /// Admits `cost` units for `partition` if they fit, else none; either way answers what
    /// is left. `partition` is any string (an IP, a user id); only its hash is stored.
    ///
    /// # Errors
    /// A cost of 0 or above [`Policy::capacity`]; [`RateLimitError::Unavailable`] when Redis
    /// fails and the policy is closed.
    pub async fn check_n(&self, partition: &str, cost: u32) -> Result<Decision, RateLimitError> {
        let inner = &*self.inner;
        let capacity = inner.policy.capacity();
        let Some(cost) = NonZeroU32::new(cost).filter(|c| c.get() <= capacity) else {
            return Err(RateLimitError::InvalidCost { cost, capacity });
        };
        let hash = self.partition_hash(partition);
        let Some(redis) = &inner.redis else {
            return Ok(self.locally(hash, cost));
        };
        match self.on_redis(redis, hash, cost).await {
            Ok(verdict) => Ok(self.decide(verdict, Source::Redis)),
            Err(e) => {
                if !matches!(e, crate::redis::Error::Unavailable) {
                    add(&inner.counters.redis_errors);
                    tracing::debug!(limiter = %inner.policy.name, error = %e, "rate limit check fell back");
                }
                match inner.policy.on_failure {
                    OnFailure::Local => Ok(self.locally(hash, cost)),
                    OnFailure::Open => {
                        add(&inner.counters.open);
                        add(&inner.counters.allowed);
                        Ok(Decision {
                            allowed: true,
                            limit: inner.policy.limit.count,
                            remaining: capacity - cost.get(),
                            reset: inner.policy.limit.window,
                            retry_after: None,
                            source: Source::Open,
                        })
                    }
                    OnFailure::Closed => {
                        add(&inner.counters.closed);
                        Err(RateLimitError::Unavailable {
                            retry_after: CLOSED_RETRY,
                        })
                    }
                }
            }
        }
    }

    /// Who decides now (see [`RateLimitStats::mode`]).
    pub fn mode(&self) -> &'static str {
        match &self.inner.redis {
            None => "memory",
            Some(redis) if redis.available() => "redis",
            Some(_) => self.inner.policy.on_failure.name(),
        }
    }

    /// The counters.
    pub fn stats(&self) -> RateLimitStats {
        let c = &self.inner.counters;
        let policy = &self.inner.policy;
        RateLimitStats {
            name: policy.name.clone(),
            algorithm: policy.algorithm,
            limit: policy.limit.to_string(),
            on_failure: policy.on_failure,
            mode: self.mode(),
            allowed: get(&c.allowed),
            limited: get(&c.limited),
            local: get(&c.local),
            open: get(&c.open),
            closed: get(&c.closed),
            redis_errors: get(&c.redis_errors),
        }
    }

    /// The Redis key of `partition` (for tests and operators: `redis-cli TTL <key>`).
    pub fn key_of(&self, partition: &str) -> String {
        format!(
            "{}{:032x}",
            self.inner.key_base,
            self.partition_hash(partition)
        )
    }

    /// 128 bits of BLAKE3 over the limiter's name and the partition: pseudonymous (a
    /// partition from a small set, such as IPv4 addresses, can be found by trying them all).
    fn partition_hash(&self, partition: &str) -> u128 {
        let mut hasher = blake3::Hasher::new();
        hasher.update(self.inner.policy.name.as_bytes());
        hasher.update(&[0]);
        hasher.update(partition.as_bytes());
        let bytes = hasher.finalize();
        let mut first = [0; 16];
        first.copy_from_slice(&bytes.as_bytes()[..16]);
        u128::from_be_bytes(first)
    }

    async fn on_redis(
        &self,
        redis: &RedisClient,
        hash: u128,
        cost: NonZeroU32,
    ) -> Result<Verdict, crate::redis::Error> {
        let policy = &self.inner.policy;
        let (lua, size, time): (&Lua, u32, u64) = match policy.algorithm {
            Algorithm::FixedWindow => (
                &fixed_window::LUA,
                policy.limit.count,
                policy.limit.window_us(),
            ),
            Algorithm::SlidingWindow => (
                &sliding_window::LUA,
                policy.limit.count,
                policy.limit.window_us(),
            ),
            Algorithm::TokenBucket => (&token_bucket::LUA, policy.capacity(), policy.interval_us()),
        };
        let key = format!("{}{hash:032x}", self.inner.key_base);
        redis
            .run(|conn| async move {
                let mut pipeline = ::redis::pipe();
                lua.call(&mut pipeline)
                    .arg(1)
                    .arg(&key)
                    .arg(size)
                    .arg(time)
                    .arg(cost.get());
                let reply = with_script(conn, lua, &key, &pipeline).await?;
                let value = reply.into_iter().next().unwrap_or(Value::Nil);
                let (allowed, remaining, reset, retry): (i64, i64, i64, i64) =
                    FromRedisValue::from_redis_value(value)?;
                let us = |n: i64| u64::try_from(n).unwrap_or(0);
                Ok(Verdict {
                    allowed: allowed == 1,
                    remaining: us(remaining),
                    reset: us(reset),
                    retry: us(retry).max(1),
                })
            })
            .await
    }

    fn locally(&self, hash: u128, cost: NonZeroU32) -> Decision {
        let inner = &*self.inner;
        let limit = &inner.policy.limit;
        let now = u64::try_from(inner.epoch.elapsed().as_micros()).unwrap_or(u64::MAX);
        let (count, window, n) = (
            u64::from(limit.count),
            limit.window_us(),
            u64::from(cost.get()),
        );
        let verdict = match &inner.local {
            Local::Fixed(local) => local.check(hash, count, window, n, now),
            Local::Sliding(local) => local.check(hash, count, window, n, now),
            Local::Bucket(local) => local.check(hash, cost),
        };
        add(&inner.counters.local);
        self.decide(verdict, Source::Local)
    }

    fn decide(&self, verdict: Verdict, source: Source) -> Decision {
        let counters = &self.inner.counters;
        add(if verdict.allowed {
            &counters.allowed
        } else {
            &counters.limited
        });
        Decision {
            allowed: verdict.allowed,
            limit: self.inner.policy.limit.count,
            remaining: u32::try_from(verdict.remaining).unwrap_or(u32::MAX),
            reset: Duration::from_micros(verdict.reset),
            retry_after: (!verdict.allowed).then(|| Duration::from_micros(verdict.retry)),
            source,
        }
    }
}

fn add(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

fn get(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(algorithm: Algorithm, limit: &str) -> RateLimiter {
        RateLimiter::memory(Policy::new("t", algorithm, limit.parse().unwrap()).unwrap())
    }

    #[test]
    fn limits_parse_and_display() {
        for (text, shown) in [
            ("5/60s", "5/60s"),
            ("10/s", "10/1s"),
            ("3/500ms", "3/500ms"),
            ("2/1m", "2/60s"),
            ("1/1h", "1/3600s"),
            ("7/2d", "7/172800s"),
            (" 100/10s  burst 20 ", "100/10s burst 20"),
        ] {
            assert_eq!(text.parse::<Limit>().unwrap().to_string(), shown, "{text}");
        }
        for bad in [
            "",
            "5",
            "5/",
            "/60s",
            "0/60s",
            "5/0s",
            "5/60",
            "5/60x",
            "-1/60s",
            "5/60s burst",
            "5/60s burst 0",
            "5/60s bust 2",
            "5/60s burst 2 3",
            "5/31d",
            "1000001/s",
            "5/99999999999999999999s",
        ] {
            assert!(bad.parse::<Limit>().is_err(), "{bad:?} parsed");
        }
        let e = Limit::from_var("LOGIN_RATE_LIMIT", "lots").unwrap_err();
        assert!(e.to_string().contains("LOGIN_RATE_LIMIT"), "{e}");
    }

    #[test]
    fn policies_check_names_and_bursts() {
        let limit: Limit = "5/60s".parse().unwrap();
        for bad in ["", "has space", "a\"b", &"x".repeat(65)] {
            assert!(
                Policy::new(bad, Algorithm::FixedWindow, limit).is_err(),
                "{bad:?}"
            );
        }
        let burst = limit.with_burst(9).unwrap();
        assert!(Policy::new("p", Algorithm::SlidingWindow, burst).is_err());
        assert_eq!(
            Policy::new("p", Algorithm::TokenBucket, burst)
                .unwrap()
                .capacity(),
            9
        );
        assert_eq!(
            Policy::new("p", Algorithm::SlidingWindow, limit)
                .unwrap()
                .capacity(),
            5
        );
    }

    #[tokio::test]
    async fn every_algorithm_admits_the_limit_then_refuses() {
        for algorithm in [
            Algorithm::FixedWindow,
            Algorithm::SlidingWindow,
            Algorithm::TokenBucket,
        ] {
            let limiter = limiter(algorithm, "5/60s");
            for left in (0..5).rev() {
                let d = limiter.check("ip").await.unwrap();
                assert!(d.allowed, "{algorithm:?}");
                assert_eq!(d.remaining, left, "{algorithm:?}");
                assert_eq!(d.source, Source::Local);
            }
            let d = limiter.check("ip").await.unwrap();
            assert!(!d.allowed, "{algorithm:?}");
            let retry = d.retry_after.unwrap();
            assert!(
                retry > Duration::from_secs(1) && retry <= Duration::from_secs(60),
                "{algorithm:?} {retry:?}"
            );
            assert!(limiter.check("other").await.unwrap().allowed);
            assert_eq!(
                limiter.check_n("ip", 6).await,
                Err(RateLimitError::InvalidCost {
                    cost: 6,
                    capacity: 5
                })
            );
            assert!(limiter.check_n("ip", 0).await.is_err());
            let stats = limiter.stats();
            assert_eq!((stats.allowed, stats.limited, stats.local), (6, 1, 7));
            assert_eq!(stats.mode, "memory");
        }
    }

    #[tokio::test]
    async fn a_refused_check_counts_nothing() {
        let limiter = limiter(Algorithm::SlidingWindow, "3/60s");
        assert!(limiter.check_n("k", 2).await.unwrap().allowed);
        assert!(!limiter.check_n("k", 2).await.unwrap().allowed);
        assert!(limiter.check_n("k", 1).await.unwrap().allowed);
    }

    #[tokio::test]
    async fn windows_free_units_as_time_passes() {
        let sliding = limiter(Algorithm::SlidingWindow, "2/1s");
        let bucket = limiter(Algorithm::TokenBucket, "2/1s");
        for l in [&sliding, &bucket] {
            assert!(l.check("k").await.unwrap().allowed);
            assert!(l.check("k").await.unwrap().allowed);
            assert!(!l.check("k").await.unwrap().allowed);
        }
        std::thread::sleep(Duration::from_millis(1_050));
        for l in [&sliding, &bucket] {
            assert!(l.check("k").await.unwrap().allowed);
        }
    }
}
