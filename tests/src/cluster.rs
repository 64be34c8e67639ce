//! A throw-away local Redis Cluster: real `redis-server --cluster-enabled yes` processes, joined
//! by `redis-cli --cluster create`.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::{FromRedisValue, RedisResult, TlsCertificates};

use crate::redis_server::ClusterNode;
use crate::{RedisServer, RedisServerBuilder, wait_until_blocking};

/// Panic message used when no `redis-cli` binary can be found.
const CLI_NOT_FOUND: &str = "redis-cli not found: install it with `apt-get install redis-tools`";
/// How long a new or restarted cluster may take to reach `cluster_state:ok` everywhere.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// A local Redis Cluster on loopback: 3 masters by default, optionally one replica each.
///
/// Every node is a [`RedisServer`] (killed and cleaned up on drop); the constructors return
/// once every node reports `cluster_state:ok`, knows every other node and, with replicas,
/// every replica is in sync with its master.
///
/// ```no_run
/// use integration_tests::RedisCluster;
///
/// let mut cluster = RedisCluster::builder().replicas(1).start();
/// let master = cluster.master_of("users:42");
/// cluster.node_mut(master).kill(); // its replica takes over after the node timeout
/// cluster.wait_for_master_of("users:42");
/// ```
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
    builder: RedisClusterBuilder,
}

/// Configures and starts a [`RedisCluster`]; created by [`RedisCluster::builder`].
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `start` is called"]
pub struct RedisClusterBuilder {
    masters: usize,
    replicas: usize,
    node_timeout_ms: u64,
    persistent: bool,
    tls: bool,
    requirepass: Option<String>,
}

impl Default for RedisClusterBuilder {
    fn default() -> Self {
        Self {
            masters: 3,
            replicas: 0,
            node_timeout_ms: 5_000,
            persistent: false,
            tls: false,
            requirepass: None,
        }
    }
}

impl RedisClusterBuilder {
    /// Replicas per master (default 0). With 0, a dead master takes the whole cluster down
    /// (`CLUSTERDOWN`) once the node timeout passes; with 1, its replica takes over.
    pub fn replicas(mut self, replicas: usize) -> Self {
        self.replicas = replicas;
        self
    }

    /// `cluster-node-timeout` in milliseconds (default 5000): how long a node may be silent
    /// before it counts as failed (and a replica takes over).
    pub fn node_timeout_ms(mut self, millis: u64) -> Self {
        self.node_timeout_ms = millis;
        self
    }

    /// Every node persists every write (`appendfsync always`), so that a killed and restarted
    /// cluster has what it acknowledged.
    pub fn persistent(mut self) -> Self {
        self.persistent = true;
        self
    }

    /// TLS only, on the client ports, the cluster bus and replication, with one CA for all.
    pub fn tls(mut self) -> Self {
        self.tls = true;
        self
    }

    /// A password for the default user on every node (also used between nodes).
    pub fn requirepass(mut self, password: impl Into<String>) -> Self {
        self.requirepass = Some(password.into());
        self
    }

    /// Starts the nodes, creates the cluster and waits until it is ready.
    ///
    /// # Panics
    /// If `redis-server` or `redis-cli` is missing (with an install hint), or the cluster does
    /// not come up.
    pub fn start(self) -> RedisCluster {
        RedisCluster::launch(self)
    }

    fn node(&self, first: Option<&RedisServer>) -> RedisServerBuilder {
        let mut node = RedisServer::builder().cluster_node(ClusterNode {
            node_timeout_ms: self.node_timeout_ms,
        });
        if self.persistent {
            node = node.persistent();
        }
        if let Some(password) = &self.requirepass {
            node = node.requirepass(password.clone());
        }
        match (self.tls, first.and_then(RedisServer::tls_files)) {
            (true, Some(files)) => node.shared_tls(files.clone()),
            (true, None) => node.tls(),
            (false, _) => node,
        }
    }
}

impl RedisCluster {
    /// A builder for clusters with replicas, TLS, a password or persistence.
    pub fn builder() -> RedisClusterBuilder {
        RedisClusterBuilder::default()
    }

    /// Three masters, no replicas.
    ///
    /// # Panics
    /// Like [`RedisClusterBuilder::start`].
    pub fn start() -> Self {
        Self::builder().start()
    }

    fn launch(builder: RedisClusterBuilder) -> Self {
        redis_cli_binary();
        let count = builder.masters * (1 + builder.replicas);
        let mut nodes: Vec<RedisServer> = Vec::with_capacity(count);
        for _ in 0..count {
            let node = builder.node(nodes.first()).start();
            nodes.push(node);
        }
        let cluster = Self { nodes, builder };
        let mut args = vec!["--cluster".to_owned(), "create".to_owned()];
        args.extend(
            cluster
                .nodes
                .iter()
                .map(|n| format!("127.0.0.1:{}", n.port())),
        );
        args.extend([
            "--cluster-replicas".to_owned(),
            cluster.builder.replicas.to_string(),
            "--cluster-yes".to_owned(),
        ]);
        cluster.redis_cli(&args);
        cluster.wait_until_ready();
        cluster
    }

    /// Runs `redis-cli` against the first node, with its TLS and password settings.
    fn redis_cli(&self, args: &[String]) {
        let first = &self.nodes[0];
        let mut cmd = Command::new(redis_cli_binary());
        cmd.args(["-h", "127.0.0.1", "-p", &first.port().to_string()]);
        if let Some(ca) = first.ca_cert_path() {
            cmd.arg("--tls").arg("--cacert").arg(ca);
        }
        if let Some(password) = &self.builder.requirepass {
            cmd.env("REDISCLI_AUTH", password);
        }
        let mut child = cmd
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|err| panic!("cannot run redis-cli: {err}"));
        // `--cluster create` waits forever for nodes that cannot meet (a TLS handshake that
        // fails, a bus port in use): bound it.
        let exited = wait_until_blocking(READY_TIMEOUT, || {
            child.try_wait().is_ok_and(|status| status.is_some())
        });
        if !exited {
            let _ = child.kill();
        }
        let output = child
            .wait_with_output()
            .unwrap_or_else(|err| panic!("cannot run redis-cli: {err}"));
        assert!(
            output.status.success() && !String::from_utf8_lossy(&output.stdout).contains("[ERR]"),
            "redis-cli {args:?} failed:\n{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Waits until every running node reports `cluster_state:ok` and knows every other node,
    /// every slot has a master and, with replicas, every replica's link to its master is up.
    ///
    /// # Panics
    /// If that does not happen within 30 s.
    pub fn wait_until_ready(&self) {
        let live: Vec<&RedisServer> = self.nodes.iter().filter(|n| n.pid().is_some()).collect();
        let ready = wait_until_blocking(READY_TIMEOUT, || {
            live.iter().all(|node| {
                let Ok(info) = node.try_query::<String>(&["CLUSTER", "INFO"], CLI_TIMEOUT) else {
                    return false;
                };
                let field = |name: &str| {
                    info.lines()
                        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                        .map(str::trim)
                        .unwrap_or_default()
                        .to_owned()
                };
                let replica_synced = node
                    .try_query::<String>(&["INFO", "replication"], CLI_TIMEOUT)
                    .is_ok_and(|r| {
                        !r.contains("role:slave") || r.contains("master_link_status:up")
                    });
                field("cluster_state") == "ok"
                    && field("cluster_slots_assigned") == "16384"
                    && field("cluster_known_nodes") == self.nodes.len().to_string()
                    && replica_synced
            })
        });
        assert!(
            ready,
            "the cluster did not become ready within {READY_TIMEOUT:?}:\n{}",
            self.describe()
        );
    }

    /// Each node's view (`CLUSTER NODES`), for failure messages.
    fn describe(&self) -> String {
        self.nodes
            .iter()
            .map(|n| {
                let view = n
                    .try_query::<String>(&["CLUSTER", "NODES"], CLI_TIMEOUT)
                    .unwrap_or_else(|e| format!("({e})"));
                format!("node {}:\n{view}", n.port())
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The nodes, masters and replicas, in creation order (`redis-cli` makes the first
    /// `masters` of them masters).
    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }

    /// Node `i`, e.g. to kill or pause it.
    pub fn node_mut(&mut self, i: usize) -> &mut RedisServer {
        &mut self.nodes[i]
    }

    /// The seed nodes' URLs (every node, with password and scheme), comma-separated: the
    /// value of `REDIS_CLUSTER_NODES`.
    pub fn nodes_var(&self) -> String {
        self.urls().join(",")
    }

    /// Every node's URL.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// The CA that signed every node's certificate (TLS clusters).
    pub fn ca_cert_path(&self) -> Option<&Path> {
        self.nodes[0].ca_cert_path()
    }

    /// A redis-rs cluster client for this cluster (trusting its CA), for tests' own reads and
    /// writes.
    ///
    /// # Panics
    /// If the client cannot be built.
    pub fn client(&self) -> ClusterClient {
        let mut builder = ClusterClientBuilder::new(self.urls());
        if let Some(ca) = self.ca_cert_path() {
            crate::tls::install_crypto_provider();
            builder = builder.certs(TlsCertificates {
                client_tls: None,
                root_cert: Some(std::fs::read(ca).expect("the cluster's CA")),
            });
        }
        builder.build().expect("a cluster client")
    }

    /// Runs one command through a cluster connection (routed by its key; commands without
    /// one, such as `DBSIZE` or `KEYS`, go to every master and their replies are combined).
    ///
    /// # Panics
    /// On any error.
    pub fn query<T: FromRedisValue>(&self, args: &[&str]) -> T {
        self.try_query(args)
            .unwrap_or_else(|err| panic!("cluster command {args:?} failed: {err}"))
    }

    /// [`RedisCluster::query`] without the panic.
    pub fn try_query<T: FromRedisValue>(&self, args: &[&str]) -> RedisResult<T> {
        let (name, rest) = args.split_first().expect("a command needs a name");
        let mut con = self.client().get_connection()?;
        let mut cmd = redis::cmd(name);
        for arg in rest {
            cmd.arg(*arg);
        }
        cmd.query(&mut con)
    }

    /// Sets `key` to raw `bytes` (e.g. a corrupt entry).
    ///
    /// # Panics
    /// On any error.
    pub fn set_bytes(&self, key: &str, bytes: &[u8]) {
        let mut con = self
            .client()
            .get_connection()
            .expect("a cluster connection");
        redis::cmd("SET")
            .arg(key)
            .arg(bytes)
            .exec(&mut con)
            .unwrap_or_else(|err| panic!("SET {key} failed: {err}"));
    }

    /// Indices of the running nodes that are masters now.
    pub fn masters(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| {
                self.nodes[i].pid().is_some()
                    && self.nodes[i]
                        .try_query::<String>(&["INFO", "replication"], CLI_TIMEOUT)
                        .is_ok_and(|r| r.contains("role:master"))
            })
            .collect()
    }

    /// The index of the node that serves `key`'s slot now, as a running node sees it.
    ///
    /// # Panics
    /// If no running node answers or no master serves the slot.
    pub fn master_of(&self, key: &str) -> usize {
        self.try_master_of(key)
            .unwrap_or_else(|| panic!("no master serves {key}:\n{}", self.describe()))
    }

    fn try_master_of(&self, key: &str) -> Option<usize> {
        let node = self.nodes.iter().find(|n| n.pid().is_some())?;
        let slot: i64 = node
            .try_query(&["CLUSTER", "KEYSLOT", key], CLI_TIMEOUT)
            .ok()?;
        let view: String = node.try_query(&["CLUSTER", "NODES"], CLI_TIMEOUT).ok()?;
        let port = view
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .filter(|f| {
                f.len() > 8
                    && f[2].contains("master")
                    && !f[2].contains("fail")
                    && f[8..].iter().any(|range| serves(range, slot))
            })
            .find_map(|f| node_port(f[1]))?;
        self.nodes.iter().position(|n| n.port() == port)
    }

    /// The index of a running replica of node `master`, if it has one.
    pub fn replica_of(&self, master: usize) -> Option<usize> {
        let view: String = self.nodes[master].query(&["CLUSTER", "NODES"]);
        let id = view
            .lines()
            .find(|l| l.contains("myself"))?
            .split_whitespace()
            .next()?
            .to_owned();
        view.lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .filter(|f| f.len() > 3 && f[3] == id && !f[2].contains("fail"))
            .find_map(|f| node_port(f[1]))
            .and_then(|port| self.nodes.iter().position(|n| n.port() == port))
    }

    /// Waits until the replicas of node `master` have every write it has made.
    ///
    /// # Panics
    /// If they have not within 30 s.
    pub fn wait_for_replication(&self, master: usize) {
        let offset = |node: &RedisServer, field: &str| {
            node.info_field("replication", field)
                .and_then(|v| v.parse::<u64>().ok())
        };
        let wanted = offset(&self.nodes[master], "master_repl_offset").unwrap_or_default();
        let replicas: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| i != master && self.nodes[i].pid().is_some())
            .filter(|&i| {
                self.nodes[i].info_field("replication", "master_port")
                    == Some(self.nodes[master].port().to_string())
            })
            .collect();
        let ok = wait_until_blocking(READY_TIMEOUT, || {
            replicas
                .iter()
                .all(|&i| offset(&self.nodes[i], "slave_repl_offset").is_some_and(|o| o >= wanted))
        });
        assert!(ok, "replicas of node {master} lag:\n{}", self.describe());
    }

    /// Waits until a running master serves `key`'s slot again (after its master was killed)
    /// and the cluster is ok; returns that master's index.
    ///
    /// # Panics
    /// If no replica took over within 30 s.
    pub fn wait_for_master_of(&self, key: &str) -> usize {
        let mut master = None;
        let ok = wait_until_blocking(READY_TIMEOUT, || {
            let live = self.nodes.iter().filter(|n| n.pid().is_some());
            let all_ok = live.clone().all(|n| {
                n.try_query::<String>(&["CLUSTER", "INFO"], CLI_TIMEOUT)
                    .is_ok_and(|i| i.contains("cluster_state:ok"))
            });
            master = self
                .try_master_of(key)
                .filter(|&m| self.nodes[m].pid().is_some());
            all_ok && master.is_some()
        });
        assert!(ok, "no master took over {key}:\n{}", self.describe());
        master.unwrap_or_default()
    }

    /// How often the masters executed `cmd` (summed; see [`RedisServer::command_calls`]).
    pub fn command_calls(&self, cmd: &str) -> u64 {
        self.masters()
            .into_iter()
            .map(|i| self.nodes[i].command_calls(cmd))
            .sum()
    }

    /// Resets the statistics of every running node.
    pub fn reset_stats(&self) {
        for node in self.nodes.iter().filter(|n| n.pid().is_some()) {
            node.reset_stats();
        }
    }

    /// Kills every node (`SIGKILL`).
    pub fn kill(&mut self) {
        for node in &mut self.nodes {
            node.kill();
        }
    }

    /// Restarts every node that is not running (same ports and directories, so they rejoin)
    /// and waits until the cluster is ready.
    pub fn restart(&mut self) {
        for node in self.nodes.iter_mut().filter(|n| n.pid().is_none()) {
            node.restart();
        }
        self.wait_until_ready();
    }

    /// Freezes every node (`SIGSTOP`).
    pub fn pause(&self) {
        for node in &self.nodes {
            node.pause();
        }
    }

    /// Continues every node.
    pub fn resume(&self) {
        for node in &self.nodes {
            node.resume();
        }
    }
}

/// Connect/read/write timeout of the harness's own commands.
const CLI_TIMEOUT: Duration = Duration::from_secs(5);

/// Whether a `CLUSTER NODES` slot field (`5461`, `0-5460`; migrating `[..]` fields do not
/// count) covers `slot`.
fn serves(range: &str, slot: i64) -> bool {
    match range.split_once('-') {
        _ if range.starts_with('[') => false,
        Some((a, b)) => {
            a.parse::<i64>().is_ok_and(|a| a <= slot) && b.parse::<i64>().is_ok_and(|b| slot <= b)
        }
        None => range.parse::<i64>() == Ok(slot),
    }
}

/// The client port of a `CLUSTER NODES` address field (`ip:port@cport[,hostname]`).
fn node_port(field: &str) -> Option<u16> {
    field
        .split(['@', ','])
        .next()?
        .rsplit_once(':')?
        .1
        .parse()
        .ok()
}

fn redis_cli_binary() -> &'static Path {
    static BINARY: std::sync::OnceLock<Option<std::path::PathBuf>> = std::sync::OnceLock::new();
    BINARY
        .get_or_init(|| {
            let path = std::env::var_os("PATH")?;
            std::env::split_paths(&path)
                .map(|dir| dir.join("redis-cli"))
                .find(|candidate| candidate.is_file())
        })
        .as_deref()
        .unwrap_or_else(|| panic!("{CLI_NOT_FOUND}"))
}
