//! The Redis foundation every Redis-backed module stands on: one connection per process,
//! every operation under a short timeout, one circuit breaker, background recovery, and an
//! outage epoch other modules can watch.
//!
//! redis-rs's `ConnectionManager` blocks a caller for seconds while it retries a dead server,
//! and a plain multiplexed connection never recovers once dropped. So callers never connect:
//! they use the current connection under the operation timeout or, with the breaker open, skip
//! Redis after one atomic load; a background task reconnects, lets the modules that queued work
//! during the outage catch up ([`CloseGate`]), and only then closes the breaker.

mod breaker;
mod conn;
mod recovery;
mod script;

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant, SystemTime};

use ::redis::RedisError;
use tokio::sync::watch;

pub use breaker::Circuit;
#[cfg(feature = "pubsub")]
pub(crate) use conn::Subscriber;
pub(crate) use conn::{Connection, Node};
pub(crate) use recovery::CloseGate;
pub(crate) use script::{Lua, with_script};

use crate::config::{Config, ConfigError};
use crate::sync::{lock, read};

/// Why a Redis operation did not happen.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    #[error("redis unavailable (circuit open)")]
    Unavailable,
    #[error("redis operation timed out")]
    Timeout,
    #[error("redis: {0}")]
    Redis(#[from] RedisError),
    /// A write reached its master, but fewer replicas than `REDIS_WAIT_REPLICAS` acknowledged
    /// it in time: a failover could lose it.
    #[error("only {acked} of {wanted} replicas acknowledged the write")]
    NotReplicated { acked: u32, wanted: u32 },
}

/// How much of its Redis time one call has left: the operations of one call (a read, the
/// markers a fill needs, the store-back) share one operation timeout, so a slow but alive
/// Redis adds at most one timeout to a call, not one per operation (REVIEW R22).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Budget {
    left: Duration,
}

impl Budget {
    pub(crate) fn new(total: Duration) -> Self {
        Self { left: total }
    }
}

/// A Redis client shared by every module of the process: the cache, and the sessions, rate
/// limits, pub/sub and locks built on it. Cheap to clone.
///
/// Built by [`crate::CacheBuilder::build`] (see [`crate::Cache::redis`]) or by
/// [`RedisClient::connect`], and given to other modules so that they share its connection,
/// breaker and recovery: a hung Redis then costs one short timeout per call whatever module
/// makes the call.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use cache_runtime::{Cache, Config, RedisClient};
///
/// let config = Config::from_env()?;
/// let redis = RedisClient::connect(&config).await?; // never fails for an unreachable Redis
/// let cache = Cache::builder().config(config).redis_client(redis.clone()).build().await?;
/// assert!(cache.redis().is_some());
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct RedisClient {
    shared: Arc<Shared>,
}

pub(crate) struct Shared {
    me: Weak<Shared>,
    target: conn::Target,
    conn: RwLock<Option<Connection>>,
    breaker: breaker::Breaker,
    op_timeout: Duration,
    connect_timeout: Duration,
    wait_replicas: u32,
    recovering: AtomicBool,
    /// Set while the breaker is open but the recovery's last probe got through: Redis answers,
    /// yet something keeps it from serving (an invalidation not confirmed by replicas).
    answering: AtomicBool,
    gates: Mutex<Vec<Weak<dyn CloseGate>>>,
    /// The breaker's state word, for modules that react to outages.
    outages: watch::Sender<u64>,
    degraded: Mutex<Degraded>,
    /// The process' one subscriber connection on this client, while any handle uses it.
    #[cfg(feature = "pubsub")]
    feed: Mutex<Weak<crate::pubsub::Feed>>,
}

#[derive(Default)]
struct Degraded {
    since: Option<(Instant, SystemTime)>,
    total: Duration,
}

impl std::fmt::Debug for RedisClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisClient")
            .field("circuit", &self.circuit())
            .finish_non_exhaustive()
    }
}

/// Redis' side of [`crate::Health`].
#[derive(Debug, Clone, serde::Serialize)]
#[non_exhaustive]
pub struct RedisHealth {
    /// Whether a PING answered within the operation timeout.
    pub reachable: bool,
    /// PING round trip in microseconds.
    pub latency_us: Option<u64>,
    /// The circuit breaker's state.
    pub circuit: Circuit,
    /// On a Redis Cluster, each node as the cluster lists it, with its own PING (empty on one
    /// Redis, and when no node answers).
    pub nodes: Vec<NodeHealth>,
}

/// One node of a Redis Cluster, in [`RedisHealth::nodes`].
#[derive(Debug, Clone, serde::Serialize)]
#[non_exhaustive]
pub struct NodeHealth {
    /// `host:port`, as the cluster announces it.
    pub address: String,
    /// `master` or `replica`.
    pub role: &'static str,
    /// Whether a PING answered within the operation timeout.
    pub reachable: bool,
    /// PING round trip in microseconds.
    pub latency_us: Option<u64>,
}

/// Slack for the scheduler before a timeout counts as Redis' fault (see [`RedisClient::run`]).
const LATE_TIMER_SLACK: Duration = Duration::from_millis(25);

impl RedisClient {
    /// Connects to `config.redis_url` within `config.connect_timeout`. When that fails the
    /// client starts with its breaker open and reconnects in the background: an unreachable
    /// Redis is never an error, only a malformed configuration is.
    ///
    /// # Errors
    /// A URL that does not parse, `rediss://` without the `tls` feature, an unreadable
    /// `REDIS_TLS_CA_CERT`.
    pub async fn connect(config: &Config) -> Result<Self, ConfigError> {
        let target = conn::Target::new(config)?;
        let breaker = breaker::Breaker::new(config.failure_threshold);
        let (outages, _) = watch::channel(breaker.state());
        let shared = Arc::new_cyclic(|me| Shared {
            me: me.clone(),
            target,
            conn: RwLock::new(None),
            breaker,
            op_timeout: config.op_timeout,
            connect_timeout: config.connect_timeout,
            wait_replicas: config.wait_replicas,
            recovering: AtomicBool::new(false),
            answering: AtomicBool::new(false),
            gates: Mutex::default(),
            outages,
            degraded: Mutex::new(Degraded {
                since: Some((Instant::now(), SystemTime::now())),
                total: Duration::ZERO,
            }),
            #[cfg(feature = "pubsub")]
            feed: Mutex::default(),
        });
        let client = Self { shared };
        match client.shared.target.connect(config.connect_timeout).await {
            Ok(conn) => {
                *crate::sync::write(&client.shared.conn) = Some(conn);
                client.shared.breaker.close();
                client
                    .shared
                    .outages
                    .send_replace(client.shared.breaker.state());
                lock(&client.shared.degraded).since = None;
            }
            Err(e) => {
                tracing::warn!(error = %e, "redis unreachable at start-up; degraded until it answers");
                client.spawn_recovery();
            }
        }
        Ok(client)
    }

    /// Whether this client talks to a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self.shared.target, conn::Target::Cluster(..))
    }

    /// Whether Redis may serve right now (one atomic load).
    pub fn available(&self) -> bool {
        !self.shared.breaker.is_open()
    }

    /// Whether Redis answered the recovery's last probe although the breaker is still open:
    /// worth a best-effort write that other instances then see.
    pub(crate) fn answers_while_open(&self) -> bool {
        self.shared.answering.load(Ordering::Acquire) && !self.available()
    }

    /// The circuit breaker's state.
    pub fn circuit(&self) -> Circuit {
        self.shared.breaker.circuit()
    }

    /// A number that changes whenever the breaker opens or closes: odd while open. Modules
    /// that keep state derived from Redis tag it with this and drop what another outage made.
    pub fn outage_epoch(&self) -> u64 {
        self.shared.breaker.state()
    }

    /// [`RedisClient::outage_epoch`] for a caller about to choose a store: while the breaker is
    /// open, also makes sure a recovery task runs (one atomic load when it does). A task lost
    /// with its runtime is replaced by the next call, even when no call reaches Redis any more
    /// because everything is served in process meanwhile (REVIEW R12).
    pub(crate) fn serving_epoch(&self) -> u64 {
        let state = self.shared.breaker.state();
        if state & 1 == 1 && !self.shared.recovering.load(Ordering::Acquire) {
            self.spawn_recovery();
        }
        state
    }

    /// A receiver of [`RedisClient::outage_epoch`]'s changes.
    pub fn watch_outages(&self) -> watch::Receiver<u64> {
        self.shared.outages.subscribe()
    }

    /// When the current outage began, and the total time spent degraded.
    pub fn degraded(&self) -> (Option<SystemTime>, Duration) {
        let d = lock(&self.shared.degraded);
        let current = d.since.map_or(Duration::ZERO, |(at, _)| at.elapsed());
        (d.since.map(|(_, wall)| wall), d.total + current)
    }

    /// A PING round trip (bounded by the operation timeout; on a cluster, of every master) and
    /// the breaker's state; on a cluster, each node's own PING too, also while the breaker is
    /// open (it shows which node is down).
    pub async fn health(&self) -> RedisHealth {
        let latency = if self.available() {
            let start = Instant::now();
            self.run(|mut c| async move { c.ping_every_master().await })
                .await
                .ok()
                .map(|()| start.elapsed())
        } else {
            None
        };
        RedisHealth {
            reachable: latency.is_some(),
            latency_us: latency.map(micros),
            circuit: self.circuit(),
            nodes: self.node_health().await,
        }
    }

    async fn node_health(&self) -> Vec<NodeHealth> {
        let timeout = self.shared.op_timeout;
        let nodes = self
            .run_unguarded(timeout, |mut c| async move { c.nodes().await })
            .await
            .unwrap_or_default();
        let pings = nodes.into_iter().map(|node| async move {
            let start = Instant::now();
            let node = &node;
            let reachable = self
                .run_unguarded(timeout, |mut c| async move {
                    c.command_on(Some(node), ::redis::cmd("PING")).await
                })
                .await
                .is_ok();
            NodeHealth {
                address: node.address(),
                role: node.role,
                reachable,
                latency_us: reachable.then(|| micros(start.elapsed())),
            }
        });
        futures_util::future::join_all(pings).await
    }

    /// Runs one operation under the full operation timeout (see [`RedisClient::run_within`]).
    pub(crate) async fn run<T, F, Fut>(&self, op: F) -> Result<T, Error>
    where
        F: FnOnce(Connection) -> Fut,
        Fut: Future<Output = Result<T, RedisError>>,
    {
        self.run_within(&mut Budget::new(self.shared.op_timeout), op)
            .await
    }

    /// Runs one operation on the current connection, bounded by what is left of `budget`,
    /// feeding the breaker. Skips Redis entirely while the breaker is open (then it also makes
    /// sure a recovery task runs). A timeout that fired long after its deadline means this
    /// process was starved of CPU, not that Redis hung: it is not counted (REVIEW R21).
    pub(crate) async fn run_within<T, F, Fut>(&self, budget: &mut Budget, op: F) -> Result<T, Error>
    where
        F: FnOnce(Connection) -> Fut,
        Fut: Future<Output = Result<T, RedisError>>,
    {
        let shared = &*self.shared;
        if shared.breaker.is_open() {
            if !shared.recovering.load(Ordering::Acquire) {
                self.spawn_recovery();
            }
            return Err(Error::Unavailable);
        }
        let limit = budget.left.min(shared.op_timeout);
        if limit.is_zero() {
            return Err(Error::Timeout);
        }
        let Some(conn) = read(&shared.conn).clone() else {
            return Err(Error::Unavailable);
        };
        let started = Instant::now();
        let outcome = tokio::time::timeout(limit, op(conn)).await;
        let took = started.elapsed();
        budget.left = budget.left.saturating_sub(took);
        match outcome {
            Ok(Ok(v)) => {
                shared.breaker.succeeded();
                Ok(v)
            }
            Ok(Err(e)) if is_connectivity(&e) => {
                let fatal = e.is_connection_dropped() || e.is_unrecoverable_error();
                if shared.breaker.failed(fatal) {
                    self.trip(&e.to_string());
                }
                Err(e.into())
            }
            Ok(Err(e)) => Err(e.into()),
            Err(_) => {
                if took <= limit * 2 + LATE_TIMER_SLACK {
                    if shared.breaker.failed(false) {
                        self.trip("operation timed out");
                    }
                } else {
                    tracing::debug!(?took, ?limit, "redis timeout fired late; not counted");
                }
                Err(Error::Timeout)
            }
        }
    }

    /// Runs one operation whatever the breaker says, bounded by `timeout`, without feeding
    /// the breaker: for recovery, administration and shutdown.
    pub(crate) async fn run_unguarded<T, F, Fut>(
        &self,
        timeout: Duration,
        op: F,
    ) -> Result<T, Error>
    where
        F: FnOnce(Connection) -> Fut,
        Fut: Future<Output = Result<T, RedisError>>,
    {
        let Some(conn) = read(&self.shared.conn).clone() else {
            return Err(Error::Unavailable);
        };
        Ok(tokio::time::timeout(timeout, op(conn))
            .await
            .map_err(|_| Error::Timeout)??)
    }

    /// Opens the breaker (once per outage) and starts the recovery task: for modules that
    /// must stop Redis from serving, e.g. after an invalidation did not reach it.
    pub(crate) fn trip(&self, why: &str) {
        self.shared.answering.store(false, Ordering::Release);
        if let Some(state) = self.shared.breaker.open() {
            self.shared.outages.send_replace(state);
            let mut d = lock(&self.shared.degraded);
            if d.since.is_none() {
                d.since = Some((Instant::now(), SystemTime::now()));
            }
            tracing::warn!(
                reason = why,
                "redis circuit opened; degraded until it recovers"
            );
        }
        self.spawn_recovery();
    }

    fn spawn_recovery(&self) {
        // Without a runtime (a drop outside one), the next call from a live runtime starts it.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if !self.shared.recovering.swap(true, Ordering::AcqRel) {
            let recovering = recovery::Recovering(self.shared.me.clone());
            runtime.spawn(recovery::recover(recovering));
        }
    }

    /// Registers a module that must catch up before the breaker closes after an outage.
    pub(crate) fn add_gate(&self, gate: Weak<dyn CloseGate>) {
        lock(&self.shared.gates).push(gate);
    }

    /// The timeout of administrative operations (sweeps, scans, replays): the operation
    /// timeout, at least a second. They run unguarded: a big keyspace must not make this
    /// instance, or any other, stop using Redis.
    pub(crate) fn admin_timeout(&self) -> Duration {
        self.shared.op_timeout.max(Duration::from_secs(1))
    }

    /// Every master with slots; on one Redis `[None]`, the server.
    pub(crate) async fn masters(&self) -> Result<Vec<Option<Node>>, Error> {
        let nodes = self
            .run_unguarded(self.admin_timeout(), |mut c| async move { c.nodes().await })
            .await?;
        Ok(if nodes.is_empty() {
            vec![None]
        } else {
            nodes
                .into_iter()
                .filter(|n| n.serving_master)
                .map(Some)
                .collect()
        })
    }

    /// Every key that starts with `prefix`, on every master (SCAN, administrative timeout per
    /// page).
    #[cfg(feature = "sessions")]
    pub(crate) async fn keys_under(&self, prefix: &str) -> Result<Vec<String>, Error> {
        let pattern = format!("{}*", glob_escape(prefix));
        let mut found = Vec::new();
        for node in &self.masters().await? {
            let mut cursor: u64 = 0;
            loop {
                let mut scan = ::redis::cmd("SCAN");
                scan.arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(100);
                let (next, keys): (u64, Vec<String>) = self
                    .run_unguarded(self.admin_timeout(), |mut c| async move {
                        ::redis::from_redis_value(c.command_on(node.as_ref(), scan).await?)
                            .map_err(RedisError::from)
                    })
                    .await?;
                found.extend(keys);
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        Ok(found)
    }

    /// Where [`crate::pubsub`] keeps this client's subscriber feed.
    #[cfg(feature = "pubsub")]
    pub(crate) fn feed_slot(&self) -> &Mutex<Weak<crate::pubsub::Feed>> {
        &self.shared.feed
    }

    /// Opens a subscriber connection (see [`conn::Subscriber`]) within the connect timeout.
    #[cfg(feature = "pubsub")]
    pub(crate) async fn subscriber(
        &self,
        pushes: tokio::sync::mpsc::UnboundedSender<::redis::PushInfo>,
    ) -> Result<Subscriber, Error> {
        self.shared
            .target
            .subscriber(self.shared.connect_timeout, pushes)
            .await
    }

    /// The operation timeout this client was built with.
    pub(crate) fn op_timeout(&self) -> Duration {
        self.shared.op_timeout
    }

    /// Appends `WAIT` to `pipeline` when writes must reach replicas ([`Config::wait_replicas`]),
    /// bounded by the operation timeout. The pipeline's commands must share one slot, so that
    /// `WAIT` runs on the connection that made the writes.
    pub(crate) fn wait_for_replicas(&self, pipeline: &mut ::redis::Pipeline) {
        if self.shared.wait_replicas > 0 {
            let millis = u64::try_from(self.shared.op_timeout.as_millis()).unwrap_or(u64::MAX);
            pipeline
                .cmd("WAIT")
                .arg(self.shared.wait_replicas)
                .arg(millis.max(1));
        }
    }

    /// Checks the reply of a pipeline made with [`RedisClient::wait_for_replicas`]: returns
    /// the replies before `WAIT`'s, or [`Error::NotReplicated`].
    pub(crate) fn replicated(
        &self,
        mut replies: Vec<::redis::Value>,
    ) -> Result<Vec<::redis::Value>, Error> {
        let wanted = self.shared.wait_replicas;
        if wanted == 0 {
            return Ok(replies);
        }
        let acked = match replies.pop() {
            Some(::redis::Value::Int(n)) => u32::try_from(n).unwrap_or(0),
            _ => 0,
        };
        if acked < wanted {
            return Err(Error::NotReplicated { acked, wanted });
        }
        Ok(replies)
    }
}

/// `s` with SCAN MATCH's metacharacters escaped: a pattern matching `s` literally.
pub(crate) fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Errors that say Redis cannot serve now, as opposed to a bad command or reply. On a
/// cluster these include a cluster that is down or reconfiguring (`CLUSTERDOWN`, `TRYAGAIN`,
/// `MASTERDOWN`) and a node still loading its data: one master that cannot serve makes the
/// whole cache degrade, as one dead server would.
pub(crate) fn is_connectivity(e: &RedisError) -> bool {
    use ::redis::{ErrorKind, ServerErrorKind};
    e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_unrecoverable_error()
        || matches!(
            e.kind(),
            ErrorKind::ClusterConnectionNotFound
                | ErrorKind::Server(
                    ServerErrorKind::ClusterDown
                        | ServerErrorKind::TryAgain
                        | ServerErrorKind::MasterDown
                        | ServerErrorKind::BusyLoading
                )
        )
        || lost_fan_out(e)
}

/// redis-rs 1.8 sends a multi-slot command (our MGET of an entry and its markers) only to the
/// nodes it has a connection to, then reports the missing replies as this client error: a
/// node it cannot reach, in other words.
fn lost_fan_out(e: &RedisError) -> bool {
    e.kind() == ::redis::ErrorKind::Client && e.to_string().contains("number of multi-slot results")
}
