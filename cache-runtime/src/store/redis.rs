//! The Redis store: one multiplexed connection, our own timeouts, a circuit breaker, background
//! reconnection, and the queue of invalidations that could not reach Redis.
//!
//! redis-rs's `ConnectionManager` blocks a caller for seconds while it retries a dead server, and
//! a plain multiplexed connection never recovers once dropped. So callers never connect: they
//! use the current connection under a short timeout or, when the breaker is open, skip Redis at
//! once; a background task reconnects, replays queued invalidations, and only then closes the
//! breaker.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, RedisError};

use super::{Fetched, Raw, StoreError};
use crate::codec::ENTRY_MAGIC;
use crate::key::MARKER_NS;

/// Invalidations kept while Redis is unreachable; past this, one epoch bump replaces them all.
const MAX_PENDING: usize = 10_000;
const RECONNECT_MIN: Duration = Duration::from_millis(50);
const RECONNECT_MAX: Duration = Duration::from_secs(2);

/// Deletes the keys whose values are our entries (never a foreign key under the same prefix).
const SWEEP_SCRIPT: &str = r"
local n = 0
for _, k in ipairs(KEYS) do
  local v = redis.call('GET', k)
  if v and string.sub(v, 1, string.len(ARGV[1])) == ARGV[1] then
    redis.call('DEL', k)
    n = n + 1
  end
end
return n";

/// The breaker's state as reported by health checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Circuit {
    /// Redis serves requests.
    Closed,
    /// Redis is skipped; a background task is reconnecting or replaying invalidations.
    Open,
}

#[derive(Default)]
struct Pending {
    markers: BTreeSet<String>,
    overflowed: bool,
}

pub(crate) struct RedisStore {
    shared: Arc<Shared>,
}

struct Shared {
    me: Weak<Shared>,
    client: Client,
    conn: RwLock<Option<MultiplexedConnection>>,
    /// True while Redis must not serve: breaker open, or invalidations still queued.
    open: AtomicBool,
    failures: AtomicU32,
    threshold: u32,
    op_timeout: Duration,
    connect_timeout: Duration,
    marker_ttl: Duration,
    recovering: AtomicBool,
    pending: Mutex<Pending>,
    /// Counts the times the breaker opened; the cache clears its fallback when this moves.
    outages: AtomicU64,
    degraded: Mutex<Degraded>,
    epoch_marker: String,
}

#[derive(Default)]
struct Degraded {
    since: Option<(Instant, std::time::SystemTime)>,
    total: Duration,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("circuit", &self.circuit())
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// Connects within `connect_timeout`; when that fails the store starts with its breaker open
    /// and reconnects in the background. Never an error: only a malformed URL is.
    pub(crate) async fn connect(config: &crate::Config) -> Result<Self, RedisError> {
        let client = Client::open(config.redis_url.as_str())?;
        let shared = Arc::new_cyclic(|me| Shared {
            me: me.clone(),
            client,
            conn: RwLock::new(None),
            open: AtomicBool::new(true),
            failures: AtomicU32::new(0),
            threshold: config.failure_threshold.max(1),
            op_timeout: config.op_timeout,
            connect_timeout: config.connect_timeout,
            marker_ttl: config.max_ttl + Duration::from_secs(60),
            recovering: AtomicBool::new(false),
            pending: Mutex::default(),
            outages: AtomicU64::new(0),
            degraded: Mutex::default(),
            epoch_marker: format!("{}{MARKER_NS}*", config.prefix),
        });
        match shared.connect().await {
            Ok(conn) => {
                *write(&shared.conn) = Some(conn);
                shared.open.store(false, Ordering::Release);
            }
            Err(e) => {
                tracing::warn!(error = %e, "redis unreachable at start-up; caching degrades until it answers");
                shared.outages.fetch_add(1, Ordering::Relaxed);
                lock(&shared.degraded).since = Some((Instant::now(), std::time::SystemTime::now()));
                shared.spawn_recovery();
            }
        }
        Ok(Self { shared })
    }

    /// Whether Redis may serve right now (one atomic load).
    pub(crate) fn available(&self) -> bool {
        !self.shared.open.load(Ordering::Acquire)
    }

    pub(crate) fn circuit(&self) -> Circuit {
        if self.available() {
            Circuit::Closed
        } else {
            Circuit::Open
        }
    }

    pub(crate) fn outages(&self) -> u64 {
        self.shared.outages.load(Ordering::Relaxed)
    }

    pub(crate) fn pending_invalidations(&self) -> usize {
        lock(&self.shared.pending).markers.len()
    }

    /// When the current outage began, and the total time spent degraded.
    pub(crate) fn degraded(&self) -> (Option<std::time::SystemTime>, Duration) {
        let d = lock(&self.shared.degraded);
        let current = d.since.map_or(Duration::ZERO, |(at, _)| at.elapsed());
        (d.since.map(|(_, wall)| wall), d.total + current)
    }

    /// Values of several keys (without the cache prefix) and the generations of their markers
    /// ([`crate::key::markers_for`]), in one MGET.
    pub(crate) async fn fetch_many(
        &self,
        prefix: &str,
        keys: &[&str],
    ) -> Result<Vec<Fetched>, StoreError> {
        // Sized up front: the arguments would otherwise regrow the buffer a few times per call.
        let args = 1 + keys.iter().map(|k| 1 + marker_count(k)).sum::<usize>();
        let bytes = keys
            .iter()
            .map(|k| (1 + marker_count(k)) * (prefix.len() + MARKER_NS.len() + k.len() + 2))
            .sum::<usize>();
        let mut cmd = redis::Cmd::with_capacity(args, bytes + 4);
        cmd.arg("MGET");
        for key in keys {
            cmd.arg(KeyAndMarkers { prefix, key });
        }
        let values: Vec<Option<Vec<u8>>> = self
            .shared
            .run(|mut c| async move { cmd.query_async(&mut c).await })
            .await?;
        let mut values = values.into_iter();
        Ok(keys
            .iter()
            .map(|key| Fetched {
                value: values.next().flatten().map(Raw::Owned),
                gens: values
                    .by_ref()
                    .take(marker_count(key))
                    .map(|m| parse_gen(m.as_deref()))
                    .collect(),
            })
            .collect())
    }

    pub(crate) async fn put_many<'a>(
        &self,
        entries: impl IntoIterator<Item = (&'a str, &'a [u8])>,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let mut pipe = redis::pipe();
        for (key, bytes) in entries {
            pipe.cmd("SET")
                .arg(key)
                .arg(bytes)
                .arg("PX")
                .arg(millis(ttl))
                .ignore();
        }
        self.shared
            .run(|mut c| async move { pipe.query_async::<()>(&mut c).await })
            .await
    }

    pub(crate) async fn delete(&self, keys: &[String]) -> Result<u64, StoreError> {
        let mut cmd = redis::cmd("DEL");
        cmd.arg(keys);
        self.shared
            .run(|mut c| async move { cmd.query_async(&mut c).await })
            .await
    }

    /// Bumps markers and deletes exact keys. When Redis cannot take it, the markers are queued
    /// and Redis stops serving until they are replayed: an invalidation is never lost.
    pub(crate) async fn invalidate(
        &self,
        markers: &[String],
        exact: &[String],
    ) -> Result<(), StoreError> {
        let result = if self.available() {
            let pipe = self.shared.invalidation_pipeline(markers, exact);
            self.shared
                .run(|mut c| async move { pipe.query_async::<()>(&mut c).await })
                .await
        } else {
            Err(StoreError::Unavailable)
        };
        if result.is_err() {
            self.shared.enqueue(markers);
            self.shared
                .trip("invalidation could not reach redis; queued");
        }
        result
    }

    /// Deletes our entries under `pattern` (a key prefix followed by `*`), SCANning in batches.
    /// Administrative only: the invalidation path never scans.
    pub(crate) async fn sweep(&self, prefix: &str) -> Result<u64, StoreError> {
        let pattern = format!("{}*", glob_escape(prefix));
        let script = redis::Script::new(SWEEP_SCRIPT);
        let mut cursor: u64 = 0;
        let mut deleted = 0;
        loop {
            let mut scan = redis::cmd("SCAN");
            scan.arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000);
            let (next, keys): (u64, Vec<String>) = self
                .shared
                .run(|mut c| async move { scan.query_async(&mut c).await })
                .await?;
            let keys: Vec<String> = keys
                .into_iter()
                .filter(|k| !k.contains(MARKER_NS))
                .collect();
            if !keys.is_empty() {
                let mut inv = script.prepare_invoke();
                inv.key(keys).arg(ENTRY_MAGIC);
                let n: u64 = self
                    .shared
                    .run(|mut c| async move { inv.invoke_async(&mut c).await })
                    .await?;
                deleted += n;
            }
            if next == 0 {
                return Ok(deleted);
            }
            cursor = next;
        }
    }

    /// Round-trip time of a PING, or `None` when the breaker is open or Redis does not answer.
    pub(crate) async fn ping(&self) -> Option<Duration> {
        if !self.available() {
            return None;
        }
        let start = Instant::now();
        let ok: Result<String, _> = self
            .shared
            .run(|mut c| async move { redis::cmd("PING").query_async(&mut c).await })
            .await;
        ok.ok().map(|_| start.elapsed())
    }
}

impl Shared {
    async fn connect(&self) -> Result<MultiplexedConnection, StoreError> {
        // `run` bounds every operation; a second timer inside redis-rs would only cost time.
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.connect_timeout))
            .set_response_timeout(None);
        let conn = tokio::time::timeout(
            self.connect_timeout,
            self.client
                .get_multiplexed_async_connection_with_config(&config),
        )
        .await
        .map_err(|_| StoreError::Timeout)??;
        Ok(conn)
    }

    /// Runs one operation on the current connection under the operation timeout, feeding the
    /// breaker. Skips Redis entirely while the breaker is open.
    async fn run<T, F, Fut>(&self, op: F) -> Result<T, StoreError>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: Future<Output = Result<T, RedisError>>,
    {
        let Some(conn) = read(&self.conn).clone() else {
            return Err(StoreError::Unavailable);
        };
        match tokio::time::timeout(self.op_timeout, op(conn)).await {
            Ok(Ok(v)) => {
                if self.failures.load(Ordering::Relaxed) != 0 {
                    self.failures.store(0, Ordering::Relaxed);
                }
                Ok(v)
            }
            Ok(Err(e)) if is_connectivity(&e) => {
                self.failed(
                    &e.to_string(),
                    e.is_connection_dropped() || e.is_unrecoverable_error(),
                );
                Err(e.into())
            }
            Ok(Err(e)) => Err(e.into()),
            Err(_) => {
                self.failed("operation timed out", false);
                Err(StoreError::Timeout)
            }
        }
    }

    fn failed(&self, why: &str, fatal: bool) {
        let n = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if fatal || n >= self.threshold {
            self.trip(why);
        }
    }

    /// Opens the breaker (once per outage) and starts the recovery task.
    fn trip(&self, why: &str) {
        if !self.open.swap(true, Ordering::AcqRel) {
            self.outages.fetch_add(1, Ordering::Relaxed);
            let mut d = lock(&self.degraded);
            if d.since.is_none() {
                d.since = Some((Instant::now(), std::time::SystemTime::now()));
            }
            tracing::warn!(
                reason = why,
                "redis circuit opened; serving from the fallback until it recovers"
            );
        }
        self.spawn_recovery();
    }

    fn spawn_recovery(&self) {
        if !self.recovering.swap(true, Ordering::AcqRel) {
            tokio::spawn(recover(self.me.clone()));
        }
    }

    fn enqueue(&self, markers: &[String]) {
        let mut p = lock(&self.pending);
        if p.overflowed {
            return;
        }
        p.markers.extend(markers.iter().cloned());
        if p.markers.len() > MAX_PENDING {
            // Too many to remember: one epoch bump on recovery invalidates everything instead.
            p.markers.clear();
            p.overflowed = true;
        }
    }

    fn invalidation_pipeline(&self, markers: &[String], exact: &[String]) -> redis::Pipeline {
        let ttl = millis(self.marker_ttl);
        let mut pipe = redis::pipe();
        for m in markers {
            pipe.cmd("INCR").arg(m).ignore();
            pipe.cmd("PEXPIRE").arg(m).arg(ttl).ignore();
        }
        if !exact.is_empty() {
            pipe.cmd("DEL").arg(exact).ignore();
        }
        pipe
    }

    /// Replays queued invalidations; true when the queue is empty.
    async fn replay(&self) -> bool {
        let (markers, overflowed) = {
            let p = lock(&self.pending);
            (p.markers.iter().cloned().collect::<Vec<_>>(), p.overflowed)
        };
        if markers.is_empty() && !overflowed {
            return true;
        }
        let markers = if overflowed {
            vec![self.epoch_marker.clone()]
        } else {
            markers
        };
        let pipe = self.invalidation_pipeline(&markers, &[]);
        if self
            .run(|mut c| async move { pipe.query_async::<()>(&mut c).await })
            .await
            .is_err()
        {
            return false;
        }
        let mut p = lock(&self.pending);
        for m in &markers {
            p.markers.remove(m);
        }
        if overflowed {
            p.overflowed = false;
        }
        tracing::info!(
            count = markers.len(),
            "replayed invalidations queued during the redis outage"
        );
        p.markers.is_empty() && !p.overflowed
    }
}

/// Reconnects with backoff, replays the queue, then closes the breaker. Holds only a weak
/// reference, so a dropped cache stops its recovery.
async fn recover(weak: Weak<Shared>) {
    let mut delay = RECONNECT_MIN;
    loop {
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(RECONNECT_MAX);
        let Some(shared) = weak.upgrade() else { return };
        match shared.connect().await {
            Ok(conn) => *write(&shared.conn) = Some(conn),
            Err(_) => continue,
        }
        let alive: Result<String, _> = shared
            .run(|mut c| async move { redis::cmd("PING").query_async(&mut c).await })
            .await;
        if alive.is_err() || !shared.replay().await {
            continue;
        }
        // Close under the queue's lock, so an invalidation queued meanwhile is not stranded.
        let p = lock(&shared.pending);
        if !p.markers.is_empty() || p.overflowed {
            continue;
        }
        shared.failures.store(0, Ordering::Relaxed);
        shared.recovering.store(false, Ordering::Release);
        shared.open.store(false, Ordering::Release);
        drop(p);
        let mut d = lock(&shared.degraded);
        if let Some((at, _)) = d.since.take() {
            d.total += at.elapsed();
            tracing::info!(after = ?at.elapsed(), "redis reachable again; caching resumed");
        }
        return;
    }
}

/// A key and its markers as MGET arguments, written straight into the command buffer: the hit
/// path allocates no marker names.
struct KeyAndMarkers<'a> {
    prefix: &'a str,
    key: &'a str,
}

impl redis::ToRedisArgs for KeyAndMarkers<'_> {
    fn write_redis_args<W: ?Sized + redis::RedisWrite>(&self, out: &mut W) {
        use std::io::Write as _;
        let (prefix, key) = (self.prefix.as_bytes(), self.key.as_bytes());
        let mut arg = |parts: &[&[u8]]| {
            let mut w = out.writer_for_next_arg();
            for part in parts {
                // Writing to the command buffer cannot fail.
                let _ = w.write_all(part);
            }
        };
        let ns = MARKER_NS.as_bytes();
        arg(&[prefix, key]);
        arg(&[prefix, ns, b"*"]);
        for (i, _) in self.key.match_indices(':') {
            arg(&[prefix, ns, &key[..i], b":*"]);
        }
        arg(&[prefix, ns, key]);
    }

    fn num_of_args(&self) -> usize {
        1 + marker_count(self.key)
    }
}

/// How many markers a key has: the epoch, one per proper segment prefix, its own.
fn marker_count(key: &str) -> usize {
    2 + key.matches(':').count()
}

fn is_connectivity(e: &RedisError) -> bool {
    e.is_io_error() || e.is_timeout() || e.is_connection_dropped() || e.is_unrecoverable_error()
}

fn parse_gen(bytes: Option<&[u8]>) -> u64 {
    bytes
        .and_then(|b| std::str::from_utf8(b).ok())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

// A poisoned lock only means another thread panicked mid-update of plain data; keep going.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}
fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mget_arguments_are_the_key_and_its_markers() {
        for key in ["users", "users:42", "users:42:tasks"] {
            let args = redis::ToRedisArgs::to_redis_args(&KeyAndMarkers { prefix: "p:", key });
            let mut expected = vec![format!("p:{key}")];
            expected.extend(
                crate::key::markers_for(key)
                    .iter()
                    .map(|m| format!("p:{m}")),
            );
            let args: Vec<String> = args
                .into_iter()
                .map(|a| String::from_utf8(a).unwrap())
                .collect();
            assert_eq!(args, expected);
            assert_eq!(marker_count(key) + 1, args.len());
        }
    }
}
