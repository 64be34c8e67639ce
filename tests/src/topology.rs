//! One Redis or a Redis Cluster behind one interface, so that a suite is written once and run
//! on both (see [`on_every_topology!`](crate::on_every_topology)).

use std::path::Path;

use cache_runtime::Cache;
use redis::FromRedisValue;

use crate::{RedisCluster, RedisServer};

/// Anything a cache can be built on: a server, a cluster, either.
pub trait Deployment {
    /// A cache builder that reaches it (URL or cluster nodes, CA for TLS).
    fn cache_builder(&self) -> cache_runtime::CacheBuilder;

    /// `n` caches on it, each with its own client (as `n` app instances would have), built by
    /// `configure` from [`cache_builder`](Self::cache_builder).
    ///
    /// # Panics
    /// If a cache cannot be built.
    fn caches(
        &self,
        n: usize,
        configure: impl Fn(cache_runtime::CacheBuilder) -> cache_runtime::CacheBuilder,
    ) -> impl std::future::Future<Output = Vec<cache_runtime::Cache>> {
        let builders: Vec<_> = (0..n).map(|_| configure(self.cache_builder())).collect();
        async move {
            let mut caches = Vec::with_capacity(n);
            for builder in builders {
                caches.push(builder.build().await.expect("a cache"));
            }
            caches
        }
    }
}

impl Deployment for RedisServer {
    fn cache_builder(&self) -> cache_runtime::CacheBuilder {
        trusting(
            self.ca_cert_path(),
            Cache::builder().redis_url(self.url()).l1(l1_on()),
        )
    }
}

impl Deployment for RedisCluster {
    fn cache_builder(&self) -> cache_runtime::CacheBuilder {
        trusting(
            self.ca_cert_path(),
            Cache::builder().redis_cluster(self.urls()).l1(l1_on()),
        )
    }
}

/// `builder`, trusting `ca` when the deployment speaks TLS.
fn trusting(
    ca: Option<&Path>,
    builder: cache_runtime::CacheBuilder,
) -> cache_runtime::CacheBuilder {
    match ca {
        Some(ca) => builder.redis_tls_ca(ca),
        None => builder,
    }
}

impl Deployment for Topology {
    fn cache_builder(&self) -> cache_runtime::CacheBuilder {
        Cache::builder().config(self.config())
    }
}

/// Which deployment a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// One `redis-server`.
    Single,
    /// Three masters from `redis-cli --cluster create`.
    Cluster,
}

/// A running deployment: one server or a cluster of them.
#[derive(Debug)]
pub enum Topology {
    /// One `redis-server`.
    Single(RedisServer),
    /// A Redis Cluster.
    Cluster(RedisCluster),
}

impl Topology {
    /// Starts a deployment of `kind` without persistence.
    ///
    /// # Panics
    /// If it cannot be started.
    pub fn start(kind: Kind) -> Self {
        match kind {
            Kind::Single => Self::Single(RedisServer::start()),
            Kind::Cluster => Self::Cluster(RedisCluster::start()),
        }
    }

    /// Starts a deployment of `kind` whose data survives [`kill`](Self::kill) and
    /// [`restart`](Self::restart).
    ///
    /// # Panics
    /// If it cannot be started.
    pub fn start_persistent(kind: Kind) -> Self {
        match kind {
            Kind::Single => Self::Single(RedisServer::start_persistent()),
            Kind::Cluster => Self::Cluster(RedisCluster::builder().persistent().start()),
        }
    }

    /// Which kind this is.
    pub fn kind(&self) -> Kind {
        match self {
            Self::Single(_) => Kind::Single,
            Self::Cluster(_) => Kind::Cluster,
        }
    }

    /// How many `redis-server` processes make it up.
    pub fn node_count(&self) -> u64 {
        match self {
            Self::Single(_) => 1,
            Self::Cluster(cluster) => cluster.nodes().len() as u64,
        }
    }

    /// The runtime configuration that reaches this deployment (Redis enabled, `REDIS_URL` or
    /// `REDIS_CLUSTER_NODES`, the CA when it speaks TLS); everything else default.
    pub fn config(&self) -> cache_runtime::Config {
        let mut config = cache_runtime::Config::default();
        config.redis_enabled = true;
        config.l1 = l1_on();
        match self {
            Self::Single(server) => {
                config.redis_url = server.url();
                config.redis_tls_ca = server.ca_cert_path().map(Into::into);
            }
            Self::Cluster(cluster) => {
                config.redis_cluster_nodes = cluster.urls();
                config.redis_tls_ca = cluster.ca_cert_path().map(Into::into);
            }
        }
        config
    }

    /// Runs one command (on a cluster, routed by its key; `KEYS`, `DBSIZE` and the like go to
    /// every master and their replies are combined).
    ///
    /// # Panics
    /// On any error.
    pub fn query<T: FromRedisValue>(&self, args: &[&str]) -> T {
        match self {
            Self::Single(server) => server.query(args),
            Self::Cluster(cluster) => cluster.query(args),
        }
    }

    /// Sets `key` to raw `bytes`.
    ///
    /// # Panics
    /// On any error.
    pub fn set_bytes(&self, key: &str, bytes: &[u8]) {
        match self {
            Self::Single(server) => {
                let mut con = server.client().get_connection().expect("a connection");
                redis::cmd("SET")
                    .arg(key)
                    .arg(bytes)
                    .exec(&mut con)
                    .expect("SET");
            }
            Self::Cluster(cluster) => cluster.set_bytes(key, bytes),
        }
    }

    /// How often `cmd` ran (on a cluster, summed over the masters).
    pub fn command_calls(&self, cmd: &str) -> u64 {
        match self {
            Self::Single(server) => server.command_calls(cmd),
            Self::Cluster(cluster) => cluster.command_calls(cmd),
        }
    }

    /// A numeric `INFO stats` field (on a cluster, summed over the running nodes).
    pub fn info_stat(&self, name: &str) -> u64 {
        match self {
            Self::Single(server) => server.info_stat(name),
            Self::Cluster(cluster) => cluster
                .nodes()
                .iter()
                .filter(|n| n.pid().is_some())
                .map(|n| n.info_stat(name))
                .sum(),
        }
    }

    /// Resets the statistics of every node.
    pub fn reset_stats(&self) {
        match self {
            Self::Single(server) => server.reset_stats(),
            Self::Cluster(cluster) => cluster.reset_stats(),
        }
    }

    /// Kills every node (`SIGKILL`).
    pub fn kill(&mut self) {
        match self {
            Self::Single(server) => server.kill(),
            Self::Cluster(cluster) => cluster.kill(),
        }
    }

    /// Restarts what was killed, on the same ports, and waits until it serves.
    pub fn restart(&mut self) {
        match self {
            Self::Single(server) => server.restart(),
            Self::Cluster(cluster) => cluster.restart(),
        }
    }

    /// Freezes every node (`SIGSTOP`).
    pub fn pause(&self) {
        match self {
            Self::Single(server) => server.pause(),
            Self::Cluster(cluster) => cluster.pause(),
        }
    }

    /// Runs `command` on every node (on one Redis, the server), ignoring the replies.
    ///
    /// # Panics
    /// On any error.
    pub fn on_every_node(&self, command: &[&str]) {
        match self {
            Self::Single(server) => {
                let _: redis::Value = server.query(command);
            }
            Self::Cluster(cluster) => {
                for node in cluster.nodes() {
                    let _: redis::Value = node.query(command);
                }
            }
        }
    }

    /// Continues every node.
    pub fn resume(&self) {
        match self {
            Self::Single(server) => server.resume(),
            Self::Cluster(cluster) => cluster.resume(),
        }
    }
}

tokio::task_local! {
    static L1: bool;
}

/// Whether the caches a test builds from a deployment have the two-level cache's L1 on: in
/// the `single_l1` and `cluster_l1` variants of [`on_every_topology!`](crate::on_every_topology).
pub fn l1_on() -> bool {
    L1.try_with(|on| *on).unwrap_or(false)
}

/// Runs `test` with [`l1_on`] true (for caches built in its own task).
pub async fn with_l1<F: std::future::Future>(test: F) -> F::Output {
    L1.scope(true, test).await
}

/// Runs each named `async fn(Kind)` as two tests, `single::<name>` and `cluster::<name>`, on
/// a two-thread tokio runtime: one definition of a case, run on one Redis and on a cluster.
/// With `with_l1:` first, also as `single_l1::<name>` and `cluster_l1::<name>`, where the
/// caches built from the deployment have the L1 on.
///
/// ```text
/// async fn hit_after_fill(kind: Kind) { let redis = Topology::start(kind); /* ... */ }
/// integration_tests::on_every_topology!(hit_after_fill);
/// ```
#[macro_export]
macro_rules! on_every_topology {
    (with_l1: $($case:ident),* $(,)?) => {
        $crate::on_every_topology!($($case),*);
        mod single_l1 {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                $crate::with_l1(super::$case($crate::Kind::Single)).await;
            })*
        }
        mod cluster_l1 {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                $crate::with_l1(super::$case($crate::Kind::Cluster)).await;
            })*
        }
    };
    ($($case:ident),* $(,)?) => {
        mod single {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                super::$case($crate::Kind::Single).await;
            })*
        }
        mod cluster {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                super::$case($crate::Kind::Cluster).await;
            })*
        }
    };
}
