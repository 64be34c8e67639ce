//! Distributed locks with fencing tokens, on the shared Redis client, or in process.
//!
//! A lock is one Redis key, `<prefix>lock:{<name>}`, holding the holder's random token, with
//! a TTL: a holder that dies frees it after the TTL. Release and extend compare the token in
//! one Lua script, so a holder that lost the lock (it stalled past the TTL and someone else
//! acquired it) can never release or extend the next holder's. A lock alone cannot stop a
//! stalled holder from *writing* after it lost the lock, so every acquisition also returns a
//! fencing token, strictly increasing per lock name across processes: a resource that
//! remembers the highest token it has seen can refuse a stale holder's write.
//!
//! The fencing token is `max(previous + 1, Redis TIME in µs)`, kept in
//! `<prefix>lock:{<name>}:fence` (same hash tag, so the same slot on a cluster; no TTL): it keeps
//! increasing even when that key is lost (a `FLUSHALL`, a failover that lost the last write), as
//! long as the server's clock does not step back.
//!
//! With Redis enabled but unreachable, acquiring fails at once with [`LockError::Unavailable`]
//! (once the breaker is open; before, within the operation timeout): a lock is never granted
//! without Redis. With Redis disabled, [`Locks::memory`] gives the same API for one process only.
//!
//! ```
//! use std::time::Duration;
//! use cache_runtime::lock::{LockError, Locks};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), LockError> {
//! let locks = Locks::memory(); // `Locks::for_cache(&cache)` on the cache's Redis client
//! let mut guard = locks.try_acquire("import:42", Duration::from_secs(10)).await?;
//! guard.watchdog(); // extends every TTL/3 while the guard lives
//! assert!(matches!(
//!     locks.try_acquire("import:42", Duration::from_secs(10)).await,
//!     Err(LockError::Busy)
//! ));
//! let token = guard.fencing_token(); // pass it to the resource you write
//! guard.release().await?;
//! let next = locks.acquire("import:42", Duration::from_secs(10), Duration::from_secs(1)).await?;
//! assert!(next.fencing_token() > token);
//! # Ok(())
//! # }
//! ```

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ::redis::Value;
use rand::RngExt as _;
use tokio::sync::watch;

use crate::RedisClient;
use crate::redis::{self as foundation, Lua, with_script};
use crate::sync::lock;

/// The longest TTL a lock may have.
pub const MAX_LOCK_TTL: Duration = Duration::from_secs(24 * 3600);
/// The longest lock name, in bytes.
pub const MAX_LOCK_NAME: usize = 1024;

/// The longest sleep between two attempts of [`Locks::acquire`]: short, since a release wakes
/// no waiter (each polls).
const MAX_BACKOFF: Duration = Duration::from_millis(10);

/// `SET lock token NX PX ttl`; on success the fencing token (an integer reply: exact, as a
/// Lua number, below 2^53 µs, the year 2255), else `{0, holder's PTTL}`. Returning the number
/// rather than a formatted table made the script about a fifth cheaper for Redis.
static ACQUIRE: Lua = Lua::new(
    r"
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
  local last = tonumber(redis.call('GET', KEYS[2])) or 0
  local fence = math.max(last + 1, now)
  redis.call('SET', KEYS[2], string.format('%.0f', fence))
  return fence
end
return {0, redis.call('PTTL', KEYS[1])}
",
);

/// Deletes the lock if it still holds `ARGV[1]`: 1, else 0.
static RELEASE: Lua = Lua::new(
    r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
",
);

/// Sets the TTL to `ARGV[2]` ms if the lock still holds `ARGV[1]`: 1, else 0.
static EXTEND: Lua = Lua::new(
    r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
",
);

/// Why a lock operation did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LockError {
    /// Another holder has the lock (and kept it for the whole wait).
    #[error("the lock is held by someone else")]
    Busy,
    /// This guard no longer holds the lock: its TTL passed, or another holder has it now.
    #[error("the lock was lost (its TTL passed, or another holder has it)")]
    Lost,
    /// Redis is enabled but unreachable: no lock is granted without it.
    #[error("redis is unavailable; no lock is granted without it")]
    Unavailable,
    /// Redis answered with an error (a reply this module did not expect).
    #[error("redis error: {0}")]
    Redis(String),
    /// A TTL of zero or above [`MAX_LOCK_TTL`].
    #[error("a lock TTL must be between 1 ms and 24 h, got {0:?}")]
    InvalidTtl(Duration),
    /// An empty name or one longer than [`MAX_LOCK_NAME`] bytes.
    #[error("a lock name must be 1 to 1024 bytes, got {0} bytes")]
    InvalidName(usize),
}

impl From<foundation::Error> for LockError {
    fn from(e: foundation::Error) -> Self {
        match e {
            foundation::Error::Unavailable | foundation::Error::Timeout => Self::Unavailable,
            foundation::Error::Redis(e) if is_down(&e) => Self::Unavailable,
            other => Self::Redis(other.to_string()),
        }
    }
}

fn is_down(e: &::redis::RedisError) -> bool {
    e.is_io_error() || e.is_timeout() || e.is_connection_dropped() || e.is_unrecoverable_error()
}

/// Counters of one [`Locks`] handle.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct LockStats {
    /// Acquisitions granted.
    pub acquired: u64,
    /// Acquisitions refused because another holder kept the lock.
    pub busy: u64,
    /// Releases that freed the lock.
    pub released: u64,
    /// Locks found lost (by an extend, a release, the watchdog or the TTL passing).
    pub lost: u64,
    /// Operations refused because Redis was unavailable.
    pub unavailable: u64,
}

#[derive(Default)]
struct Counters {
    acquired: AtomicU64,
    busy: AtomicU64,
    released: AtomicU64,
    lost: AtomicU64,
    unavailable: AtomicU64,
}

/// Named locks with TTLs and fencing tokens: on Redis (shared by every process on it) or in
/// process. Cheap to clone. See the [module docs](self).
#[derive(Clone)]
pub struct Locks {
    inner: Arc<Inner>,
}

struct Inner {
    backend: Backend,
    counters: Counters,
}

enum Backend {
    Redis { client: RedisClient, prefix: String },
    Memory(Mutex<HashMap<String, Held>>),
}

/// An in-process lock: its holder's token and deadline, and the name's last fencing token.
struct Held {
    token: u128,
    until: Instant,
    fence: u64,
}

impl std::fmt::Debug for Locks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Locks")
            .field(
                "redis",
                &matches!(self.inner.backend, Backend::Redis { .. }),
            )
            .finish_non_exhaustive()
    }
}

impl Locks {
    /// Locks on `client`, keyed `<prefix>lock:{<name>}`.
    pub fn redis(client: RedisClient, prefix: &str) -> Self {
        Self::with(Backend::Redis {
            client,
            prefix: prefix.to_owned(),
        })
    }

    /// In-process locks: the same API, exclusive within this process only.
    pub fn memory() -> Self {
        Self::with(Backend::Memory(Mutex::default()))
    }

    /// Locks on `cache`'s Redis client under its key prefix, or in process when it has none
    /// (Redis disabled).
    pub fn for_cache(cache: &crate::Cache) -> Self {
        match cache.redis() {
            Some(client) => Self::redis(client.clone(), &cache.config().key_prefix()),
            None => Self::memory(),
        }
    }

    fn with(backend: Backend) -> Self {
        Self {
            inner: Arc::new(Inner {
                backend,
                counters: Counters::default(),
            }),
        }
    }

    /// Whether these locks live in this process only.
    pub fn is_local(&self) -> bool {
        matches!(self.inner.backend, Backend::Memory(_))
    }

    /// Acquires `name` for `ttl` if it is free: one attempt.
    ///
    /// # Errors
    /// [`LockError::Busy`] when it is held; [`LockError::Unavailable`] when Redis is enabled
    /// but unreachable; invalid names and TTLs.
    pub async fn try_acquire(&self, name: &str, ttl: Duration) -> Result<LockGuard, LockError> {
        validate(name, ttl)?;
        match self.attempt(name, ttl).await? {
            Ok(guard) => Ok(guard),
            Err(_) => {
                self.inner.counters.busy.fetch_add(1, Ordering::Relaxed);
                Err(LockError::Busy)
            }
        }
    }

    /// Acquires `name` for `ttl`, retrying with jittered backoff while it is held, for at most
    /// `wait` (zero: one attempt).
    ///
    /// # Errors
    /// [`LockError::Busy`] when it was held for the whole wait; otherwise as
    /// [`Locks::try_acquire`].
    pub async fn acquire(
        &self,
        name: &str,
        ttl: Duration,
        wait: Duration,
    ) -> Result<LockGuard, LockError> {
        validate(name, ttl)?;
        let deadline = Instant::now() + wait;
        let mut backoff = Duration::from_millis(2);
        loop {
            let holder_left = match self.attempt(name, ttl).await? {
                Ok(guard) => return Ok(guard),
                Err(left) => left,
            };
            let now = Instant::now();
            if now >= deadline {
                self.inner.counters.busy.fetch_add(1, Ordering::Relaxed);
                return Err(LockError::Busy);
            }
            // Sleep about the backoff (never past the holder's TTL or the deadline), jittered
            // so that waiters do not retry in lockstep.
            let cap = backoff.min(holder_left.max(Duration::from_millis(1)));
            let jittered = cap.mul_f64(rand::rng().random_range(0.5..1.0));
            tokio::time::sleep(jittered.min(deadline - now)).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// One attempt: the guard, or how long the current holder's TTL has left.
    async fn attempt(
        &self,
        name: &str,
        ttl: Duration,
    ) -> Result<Result<LockGuard, Duration>, LockError> {
        let token: u128 = rand::rng().random();
        let started = Instant::now();
        let granted = match &self.inner.backend {
            Backend::Memory(held) => {
                let mut held = lock(held);
                let entry = held.entry(name.to_owned()).or_insert(Held {
                    token: 0,
                    until: started,
                    fence: 0,
                });
                if entry.token != 0 && entry.until > started {
                    Err(entry.until - started)
                } else {
                    entry.token = token;
                    entry.until = started + ttl;
                    entry.fence += 1;
                    Ok(entry.fence)
                }
            }
            Backend::Redis { client, prefix } => {
                let key = key(prefix, name);
                let mut pipe = ::redis::pipe();
                ACQUIRE
                    .call(&mut pipe)
                    .arg(2)
                    .arg(&key)
                    .arg(format!("{key}:fence"))
                    .arg(hex(token))
                    .arg(millis(ttl));
                let replies = self.counted(
                    client
                        .run(|conn| with_script(conn, &ACQUIRE, &key, &pipe))
                        .await,
                )?;
                parse_acquire(&replies)?
            }
        };
        Ok(match granted {
            Ok(fence) => {
                self.inner.counters.acquired.fetch_add(1, Ordering::Relaxed);
                Ok(LockGuard::new(
                    self.clone(),
                    name,
                    token,
                    fence,
                    ttl,
                    started,
                ))
            }
            Err(left) => Err(left),
        })
    }

    fn counted<T>(&self, result: Result<T, foundation::Error>) -> Result<T, LockError> {
        result.map_err(|e| {
            let e = LockError::from(e);
            if e == LockError::Unavailable {
                self.inner
                    .counters
                    .unavailable
                    .fetch_add(1, Ordering::Relaxed);
            }
            e
        })
    }

    /// Runs release (`ttl` `None`) or extend for `token`: whether it still held the lock.
    async fn compare(
        &self,
        name: &str,
        token: u128,
        ttl: Option<Duration>,
    ) -> Result<bool, LockError> {
        match &self.inner.backend {
            Backend::Memory(held) => {
                let mut held = lock(held);
                let now = Instant::now();
                let Some(entry) = held
                    .get_mut(name)
                    .filter(|e| e.token == token && e.until > now)
                else {
                    return Ok(false);
                };
                match ttl {
                    Some(ttl) => entry.until = now + ttl,
                    // Keep the entry: it carries the name's fencing counter.
                    None => entry.token = 0,
                }
                Ok(true)
            }
            Backend::Redis { client, prefix } => {
                let key = key(prefix, name);
                let script = if ttl.is_some() { &EXTEND } else { &RELEASE };
                let mut pipe = ::redis::pipe();
                script.call(&mut pipe).arg(1).arg(&key).arg(hex(token));
                if let Some(ttl) = ttl {
                    pipe.arg(millis(ttl));
                }
                let replies = self.counted(
                    client
                        .run(|conn| with_script(conn, script, &key, &pipe))
                        .await,
                )?;
                Ok(matches!(replies.first(), Some(Value::Int(1))))
            }
        }
    }

    /// Counters since this handle was made.
    pub fn stats(&self) -> LockStats {
        let c = &self.inner.counters;
        LockStats {
            acquired: c.acquired.load(Ordering::Relaxed),
            busy: c.busy.load(Ordering::Relaxed),
            released: c.released.load(Ordering::Relaxed),
            lost: c.lost.load(Ordering::Relaxed),
            unavailable: c.unavailable.load(Ordering::Relaxed),
        }
    }
}

fn validate(name: &str, ttl: Duration) -> Result<(), LockError> {
    if name.is_empty() || name.len() > MAX_LOCK_NAME {
        return Err(LockError::InvalidName(name.len()));
    }
    if ttl < Duration::from_millis(1) || ttl > MAX_LOCK_TTL {
        return Err(LockError::InvalidTtl(ttl));
    }
    Ok(())
}

fn key(prefix: &str, name: &str) -> String {
    format!("{prefix}lock:{{{name}}}")
}

fn hex(token: u128) -> String {
    format!("{token:032x}")
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// `fence` → the fence; `{0, pttl}` → the holder's time left.
fn parse_acquire(replies: &[Value]) -> Result<Result<u64, Duration>, LockError> {
    let unexpected = || LockError::Redis(format!("unexpected reply to acquire: {replies:?}"));
    match replies.first() {
        Some(Value::Int(fence)) => u64::try_from(*fence).map(Ok).map_err(|_| unexpected()),
        Some(Value::Array(reply)) => match reply.as_slice() {
            [Value::Int(0), Value::Int(pttl)] => Ok(Err(Duration::from_millis(
                u64::try_from(*pttl).unwrap_or(0),
            ))),
            _ => Err(unexpected()),
        },
        _ => Err(unexpected()),
    }
}

/// A held lock. Dropping it releases the lock in the background (within one round trip when
/// Redis is up); [`LockGuard::release`] does it now and says whether it still held it.
#[must_use = "dropping the guard releases the lock"]
pub struct LockGuard {
    locks: Locks,
    name: String,
    token: u128,
    fence: u64,
    ttl: Duration,
    /// When the lock expires by this process' clock (measured from before the request that
    /// set its TTL was sent), and whether it is known lost.
    state: Arc<watch::Sender<GuardState>>,
    watchdog: Option<tokio::task::JoinHandle<()>>,
    released: bool,
}

#[derive(Debug, Clone, Copy)]
struct GuardState {
    until: Instant,
    lost: bool,
}

impl std::fmt::Debug for LockGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LockGuard")
            .field("name", &self.name)
            .field("fencing_token", &self.fence)
            .field("held", &self.is_held())
            .finish_non_exhaustive()
    }
}

impl LockGuard {
    fn new(
        locks: Locks,
        name: &str,
        token: u128,
        fence: u64,
        ttl: Duration,
        started: Instant,
    ) -> Self {
        let (state, _) = watch::channel(GuardState {
            until: started + ttl,
            lost: false,
        });
        Self {
            locks,
            name: name.to_owned(),
            token,
            fence,
            ttl,
            state: Arc::new(state),
            watchdog: None,
            released: false,
        }
    }

    /// The lock's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// This acquisition's fencing token: larger than every earlier acquisition's of this name.
    pub fn fencing_token(&self) -> u64 {
        self.fence
    }

    /// The TTL it was acquired (or last extended) with.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Whether the lock is still held as far as this process knows: not found lost, and its
    /// TTL not passed since the last acquire or extend.
    pub fn is_held(&self) -> bool {
        let s = *self.state.borrow();
        !s.lost && Instant::now() < s.until
    }

    /// Resolves once the lock is known lost: the watchdog (or an extend) found another holder,
    /// or the TTL passed without a successful extend.
    pub fn lost(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut state = self.state.subscribe();
        async move {
            loop {
                let s = *state.borrow_and_update();
                if s.lost {
                    return;
                }
                let expiry = tokio::time::sleep_until(s.until.into());
                tokio::select! {
                    () = expiry => {
                        if Instant::now() >= state.borrow().until {
                            return;
                        }
                    }
                    changed = state.changed() => {
                        if changed.is_err() {
                            // The guard is gone: released, so no longer held either.
                            return;
                        }
                    }
                }
            }
        }
    }

    /// Sets the lock's TTL to `ttl` from now, if it still holds it.
    ///
    /// # Errors
    /// [`LockError::Lost`] when another holder has it or it expired; Redis errors (the lock
    /// may then still be held until its TTL).
    pub async fn extend(&self, ttl: Duration) -> Result<(), LockError> {
        validate(&self.name, ttl)?;
        extend(&self.locks, &self.name, self.token, ttl, &self.state).await
    }

    /// Starts a background task that extends the lock by its TTL every TTL/3 for as long as
    /// the guard lives. When an extend finds the lock lost, or the TTL passes without one
    /// succeeding (Redis unreachable), [`LockGuard::lost`] resolves and [`LockGuard::is_held`]
    /// turns false. Needs a tokio runtime; does nothing when one is running already.
    pub fn watchdog(&mut self) {
        if self.watchdog.is_some() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (locks, name, token, ttl) =
            (self.locks.clone(), self.name.clone(), self.token, self.ttl);
        let state = Arc::downgrade(&self.state);
        self.watchdog = Some(runtime.spawn(async move {
            let period = (ttl / 3).max(Duration::from_millis(1));
            loop {
                tokio::time::sleep(period).await;
                let Some(state) = state.upgrade() else { return };
                match extend(&locks, &name, token, ttl, &state).await {
                    Err(LockError::Lost) => return,
                    // Transient: `lost()` fires by itself once the TTL passes meanwhile.
                    _ if state.borrow().lost => return,
                    _ => {}
                }
            }
        }));
    }

    /// Releases the lock now.
    ///
    /// # Errors
    /// [`LockError::Lost`] when it no longer held it (nothing was deleted: the key, if any, is
    /// another holder's); Redis errors (the lock then expires by its TTL).
    pub async fn release(mut self) -> Result<(), LockError> {
        self.released = true;
        self.stop_watchdog();
        let held = self.locks.compare(&self.name, self.token, None).await?;
        self.finish(held)
    }

    fn finish(&self, held: bool) -> Result<(), LockError> {
        let counters = &self.locks.inner.counters;
        if held {
            counters.released.fetch_add(1, Ordering::Relaxed);
            Ok(())
        } else {
            counters.lost.fetch_add(1, Ordering::Relaxed);
            Err(LockError::Lost)
        }
    }

    fn stop_watchdog(&mut self) {
        if let Some(task) = self.watchdog.take() {
            task.abort();
        }
    }
}

/// Extends `name` for `token`, recording the new deadline or the loss in `state`.
async fn extend(
    locks: &Locks,
    name: &str,
    token: u128,
    ttl: Duration,
    state: &watch::Sender<GuardState>,
) -> Result<(), LockError> {
    let started = Instant::now();
    if state.borrow().lost {
        return Err(LockError::Lost);
    }
    if locks.compare(name, token, Some(ttl)).await? {
        state.send_modify(|s| s.until = started + ttl);
        Ok(())
    } else {
        locks.inner.counters.lost.fetch_add(1, Ordering::Relaxed);
        state.send_modify(|s| s.lost = true);
        Err(LockError::Lost)
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        self.stop_watchdog();
        if self.released {
            return;
        }
        let (locks, name, token) = (
            self.locks.clone(),
            std::mem::take(&mut self.name),
            self.token,
        );
        if let Backend::Memory(_) = locks.inner.backend {
            // No I/O: release right here.
            let _ = futures_util::FutureExt::now_or_never(locks.compare(&name, token, None));
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Ok(true) = locks.compare(&name, token, None).await {
                    locks
                        .inner
                        .counters
                        .released
                        .fetch_add(1, Ordering::Relaxed);
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_locks_exclude_expire_and_fence() {
        let locks = Locks::memory();
        let a = locks
            .try_acquire("n", Duration::from_millis(50))
            .await
            .unwrap();
        assert_eq!(
            locks
                .try_acquire("n", Duration::from_secs(1))
                .await
                .unwrap_err(),
            LockError::Busy
        );
        assert!(
            locks
                .try_acquire("other", Duration::from_secs(1))
                .await
                .is_ok()
        );
        a.lost().await;
        assert!(!a.is_held());
        let b = locks
            .try_acquire("n", Duration::from_secs(1))
            .await
            .unwrap();
        assert!(b.fencing_token() > a.fencing_token());
        // The stale guard can neither extend nor release the new holder's lock.
        assert_eq!(a.extend(Duration::from_secs(1)).await, Err(LockError::Lost));
        assert_eq!(a.release().await, Err(LockError::Lost));
        assert_eq!(
            locks
                .try_acquire("n", Duration::from_secs(1))
                .await
                .unwrap_err(),
            LockError::Busy
        );
        drop(b);
        let c = locks
            .acquire("n", Duration::from_secs(1), Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(locks.stats().acquired, 4);
        c.release().await.unwrap();
    }

    #[tokio::test]
    async fn acquire_waits_for_the_holder() {
        let locks = Locks::memory();
        let held = locks
            .try_acquire("n", Duration::from_millis(80))
            .await
            .unwrap();
        let started = Instant::now();
        let next = locks
            .acquire("n", Duration::from_secs(1), Duration::from_secs(2))
            .await
            .unwrap();
        assert!(started.elapsed() >= Duration::from_millis(60));
        assert!(next.fencing_token() > held.fencing_token());
        assert_eq!(
            locks
                .acquire("n", Duration::from_secs(1), Duration::from_millis(30))
                .await
                .unwrap_err(),
            LockError::Busy
        );
    }

    #[tokio::test]
    async fn bad_names_and_ttls_are_errors() {
        let locks = Locks::memory();
        assert_eq!(
            locks
                .try_acquire("", Duration::from_secs(1))
                .await
                .unwrap_err(),
            LockError::InvalidName(0)
        );
        let long = "x".repeat(MAX_LOCK_NAME + 1);
        assert!(matches!(
            locks.try_acquire(&long, Duration::from_secs(1)).await,
            Err(LockError::InvalidName(_))
        ));
        assert!(matches!(
            locks.try_acquire("n", Duration::ZERO).await,
            Err(LockError::InvalidTtl(_))
        ));
        assert!(matches!(
            locks.try_acquire("n", MAX_LOCK_TTL * 2).await,
            Err(LockError::InvalidTtl(_))
        ));
    }

    #[tokio::test]
    async fn the_watchdog_keeps_a_lock_past_its_ttl() {
        let locks = Locks::memory();
        let mut guard = locks
            .try_acquire("n", Duration::from_millis(60))
            .await
            .unwrap();
        guard.watchdog();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(guard.is_held());
        assert_eq!(
            locks
                .try_acquire("n", Duration::from_secs(1))
                .await
                .unwrap_err(),
            LockError::Busy
        );
    }
}
