//! Connecting: the URLs and TLS settings, the rustls crypto provider, and the one connection
//! type every operation goes through, on one Redis or on a Redis Cluster.
//!
//! [`Connection`] is an enum, so modules that run commands do not care which it is, except where
//! a cluster needs commands split by slot (see `cache::store::redis`).

use std::time::Duration;

use ::redis::aio::{ConnectionLike, MultiplexedConnection};
use ::redis::cluster::{ClusterClient, ClusterClientBuilder};
use ::redis::cluster_async::ClusterConnection;
use ::redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use ::redis::{AsyncConnectionConfig, Cmd, Pipeline, RedisFuture, RedisResult, Value};

use super::Error;
use crate::config::{Config, ConfigError, redact_list, redact_url};

/// An open connection: cheap to clone (a handle on one multiplexed socket, or on the cluster
/// client's sockets, one per node).
#[derive(Clone)]
pub(crate) enum Connection {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}

/// A node of a cluster, as `CLUSTER NODES` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Node {
    pub(crate) host: String,
    pub(crate) port: u16,
    /// A master with slots, even one marked failing: sweeps and probes must reach every slot,
    /// so they try it (and fail) rather than skip its slots.
    pub(crate) serving_master: bool,
    pub(crate) role: &'static str,
}

impl Node {
    pub(crate) fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

impl Connection {
    pub(crate) fn is_cluster(&self) -> bool {
        matches!(self, Self::Cluster(_))
    }

    /// The cluster's nodes (none for one Redis), as one node of it sees them.
    pub(crate) async fn nodes(&mut self) -> RedisResult<Vec<Node>> {
        let Self::Cluster(c) = self else {
            return Ok(Vec::new());
        };
        let mut cmd = ::redis::cmd("CLUSTER");
        cmd.arg("NODES");
        let text: String = ::redis::from_redis_value(
            c.route_command(cmd, RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random))
                .await?,
        )?;
        Ok(parse_nodes(&text))
    }

    /// A PING of every master with slots, each on its own connection (`PING` routed to all
    /// masters silently skips a node the client has no connection to); on one Redis, a PING.
    pub(crate) async fn ping_every_master(&mut self) -> RedisResult<()> {
        if !self.is_cluster() {
            return ::redis::cmd("PING").exec_async(self).await;
        }
        let masters: Vec<Node> = self
            .nodes()
            .await?
            .into_iter()
            .filter(|n| n.serving_master)
            .collect();
        if masters.is_empty() {
            return Err((::redis::ErrorKind::ClusterConnectionNotFound, "no master").into());
        }
        let pings = masters.iter().map(|node| {
            let mut conn = self.clone();
            async move {
                conn.command_on(Some(node), ::redis::cmd("PING"))
                    .await
                    .map(drop)
            }
        });
        futures_util::future::try_join_all(pings).await.map(drop)
    }

    /// Runs `pipeline` on one node: the node's own connection on a cluster, this connection on
    /// one Redis (where `node` is ignored).
    pub(crate) async fn pipeline_on(
        &mut self,
        node: Option<&Node>,
        pipeline: Pipeline,
    ) -> RedisResult<Vec<Value>> {
        match (self, node) {
            (Self::Cluster(c), Some(node)) => {
                let count = pipeline.len();
                c.route_pipeline(pipeline, 0, count, by_address(node)).await
            }
            (conn, _) => pipeline.query_async(conn).await,
        }
    }

    /// Runs `cmd` on the master of `key`'s slot (on one Redis, on this connection): for
    /// commands that name no key but belong to one, such as loading the script a call on that
    /// key needs.
    pub(crate) async fn command_at_key(&mut self, key: &str, cmd: Cmd) -> RedisResult<Value> {
        match self {
            Self::Cluster(c) => {
                let route = Route::with_key(key, SlotAddr::Master);
                c.route_command(
                    cmd,
                    RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route)),
                )
                .await
            }
            conn => cmd.query_async(conn).await,
        }
    }

    /// Runs `cmd` on one node (see [`Connection::pipeline_on`]).
    pub(crate) async fn command_on(&mut self, node: Option<&Node>, cmd: Cmd) -> RedisResult<Value> {
        match (self, node) {
            (Self::Cluster(c), Some(node)) => {
                c.route_command(cmd, RoutingInfo::SingleNode(by_address(node)))
                    .await
            }
            (conn, _) => cmd.query_async(conn).await,
        }
    }
}

fn by_address(node: &Node) -> SingleNodeRoutingInfo {
    SingleNodeRoutingInfo::ByAddress {
        host: node.host.clone(),
        port: node.port,
    }
}

/// Parses `CLUSTER NODES`: `<id> <ip:port@cport[,hostname]> <flags> <master> <ping> <pong>
/// <epoch> <link> <slot>...`, one node per line.
fn parse_nodes(text: &str) -> Vec<Node> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let address = fields.get(1)?.split(['@', ',']).next()?;
            let (host, port) = address.rsplit_once(':')?;
            let port = port.parse().ok().filter(|&p| p > 0)?;
            let flags: Vec<&str> = fields.get(2)?.split(',').collect();
            if flags.iter().any(|f| matches!(*f, "noaddr" | "handshake")) || host.is_empty() {
                return None;
            }
            let master = flags.contains(&"master");
            Some(Node {
                host: host.to_owned(),
                port,
                serving_master: master && fields.len() > 8,
                role: if master { "master" } else { "replica" },
            })
        })
        .collect()
}

/// Where to connect, checked once at start-up.
// One per client, made once: the size of its variants does not matter.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Target {
    Single(::redis::Client),
    Cluster(
        ClusterClient,
        #[cfg_attr(
            not(feature = "pubsub"),
            expect(dead_code, reason = "only the subscriber's client is built from it")
        )]
        ClusterSettings,
    ),
}

/// What a cluster client is built from, kept to build the subscriber's own client (a
/// `ClusterClientBuilder` is not `Clone`, and its push sender is fixed when it is built).
pub(crate) struct ClusterSettings {
    nodes: Vec<String>,
    ca: Option<Vec<u8>>,
    op_timeout: Duration,
    connect_timeout: Duration,
}

impl ClusterSettings {
    fn builder(&self) -> ClusterClientBuilder {
        let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        // redis-rs's cluster defaults would let one call take seconds (16 retries, sleeps from
        // 1.28 s on CLUSTERDOWN, no response timeout). Every call is bounded by our operation
        // timeout and feeds our breaker, as on one node; these bound what the client does on
        // its own: two retries (a MOVED or ASK redirect, a READONLY refresh), sleeps no longer
        // than an operation may take, and a node that stops answering holds up the client's
        // slot refreshes and connection checks for at most the connect timeout.
        let builder = ClusterClientBuilder::new(self.nodes.iter().map(String::as_str))
            .retries(2)
            .min_retry_wait(1)
            .max_retry_wait(millis(self.op_timeout).max(2))
            .retry_wait_formula(10, 2)
            .connection_timeout(self.connect_timeout)
            .response_timeout(self.connect_timeout.max(self.op_timeout))
            .overall_response_timeout(None);
        with_ca(builder, self.ca.clone())
    }
}

/// The connection that carries a process' subscriptions: RESP3, so that messages arrive as
/// pushes beside ordinary replies (and `PING` still works while subscribed).
#[cfg(feature = "pubsub")]
pub(crate) enum Subscriber {
    /// Resubscribing after a reconnect is the caller's job.
    Single(MultiplexedConnection),
    /// redis-rs reconnects each node and resubscribes it by itself.
    Cluster(ClusterConnection),
}

impl Target {
    /// Parses the URLs and loads the TLS settings.
    ///
    /// # Errors
    /// A URL redis-rs cannot parse, `rediss://` without the `tls` feature, a CA file that
    /// cannot be read; each names its variable.
    pub(crate) fn new(config: &Config) -> Result<Self, ConfigError> {
        let (name, shown, tls) = if config.is_cluster() {
            let first = &config.redis_cluster_nodes[0];
            let shown = redact_list(&config.redis_cluster_nodes.join(","));
            ("REDIS_CLUSTER_NODES", shown, first.starts_with("rediss://"))
        } else {
            let url = config.redis_url.as_str();
            ("REDIS_URL", redact_url(url), url.starts_with("rediss://"))
        };
        let invalid = |reason: String| ConfigError::invalid(name, shown.clone(), reason);
        if tls && !cfg!(feature = "tls") {
            return Err(invalid(
                "TLS needs cache-runtime's `tls` feature".to_owned(),
            ));
        }
        if tls {
            install_crypto_provider();
        }
        let ca = match &config.redis_tls_ca {
            Some(path) if tls => Some(std::fs::read(path).map_err(|e| {
                ConfigError::invalid(
                    "REDIS_TLS_CA_CERT",
                    path.display().to_string(),
                    format!("cannot read the CA certificate: {e}"),
                )
            })?),
            Some(path) => {
                return Err(ConfigError::invalid(
                    "REDIS_TLS_CA_CERT",
                    path.display().to_string(),
                    format!("a CA certificate needs `rediss://` in {name} (or REDIS_SSL=true)"),
                ));
            }
            None => None,
        };
        if !config.is_cluster() {
            let url = config.redis_url.as_str();
            let client = match ca {
                Some(pem) => tls_client(url, pem),
                None => ::redis::Client::open(url),
            };
            return client.map(Self::Single).map_err(|e| invalid(e.to_string()));
        }
        let settings = ClusterSettings {
            nodes: config.redis_cluster_nodes.clone(),
            ca,
            op_timeout: config.op_timeout,
            connect_timeout: config.connect_timeout,
        };
        settings
            .builder()
            .build()
            .map(|client| Self::Cluster(client, settings))
            .map_err(|e| invalid(e.to_string()))
    }

    /// Opens a connection within `timeout` (TCP, TLS handshake, AUTH and SELECT included; on a
    /// cluster, the slot map too).
    pub(crate) async fn connect(&self, timeout: Duration) -> Result<Connection, Error> {
        let connecting = async {
            match self {
                Self::Single(client) => {
                    // Every operation runs under our own timeout; a second timer inside
                    // redis-rs would only cost time on each call.
                    let config = AsyncConnectionConfig::new()
                        .set_connection_timeout(Some(timeout))
                        .set_response_timeout(None);
                    client
                        .get_multiplexed_async_connection_with_config(&config)
                        .await
                        .map(Connection::Single)
                }
                Self::Cluster(client, _) => {
                    client.get_async_connection().await.map(Connection::Cluster)
                }
            }
        };
        Ok(tokio::time::timeout(timeout, connecting)
            .await
            .map_err(|_| Error::Timeout)??)
    }

    /// Opens a subscriber connection within `timeout`, its pushes (messages, subscription
    /// confirmations, `Disconnection`) going to `pushes`.
    #[cfg(feature = "pubsub")]
    pub(crate) async fn subscriber(
        &self,
        timeout: Duration,
        pushes: tokio::sync::mpsc::UnboundedSender<::redis::PushInfo>,
    ) -> Result<Subscriber, Error> {
        use ::redis::ProtocolVersion::RESP3;
        let connecting = async {
            match self {
                Self::Single(client) => {
                    let info = client.get_connection_info().clone();
                    let redis = info.redis_settings().clone().set_protocol(RESP3);
                    let client = ::redis::Client::open(info.set_redis_settings(redis))?;
                    let config = AsyncConnectionConfig::new()
                        .set_connection_timeout(Some(timeout))
                        .set_response_timeout(None)
                        .set_push_sender(pushes);
                    client
                        .get_multiplexed_async_connection_with_config(&config)
                        .await
                        .map(Subscriber::Single)
                }
                Self::Cluster(_, settings) => {
                    let client = settings
                        .builder()
                        .use_protocol(RESP3)
                        .push_sender(pushes)
                        .build()?;
                    client.get_async_connection().await.map(Subscriber::Cluster)
                }
            }
        };
        Ok(tokio::time::timeout(timeout, connecting)
            .await
            .map_err(|_| Error::Timeout)??)
    }
}

#[cfg(feature = "tls")]
fn tls_client(url: &str, ca_pem: Vec<u8>) -> RedisResult<::redis::Client> {
    ::redis::Client::build_with_tls(
        url,
        ::redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(ca_pem),
        },
    )
}

#[cfg(not(feature = "tls"))]
fn tls_client(url: &str, _: Vec<u8>) -> RedisResult<::redis::Client> {
    // Unreachable in practice: `Target::new` refuses `rediss://` without the feature.
    ::redis::Client::open(url)
}

#[cfg(feature = "tls")]
fn with_ca(builder: ClusterClientBuilder, ca_pem: Option<Vec<u8>>) -> ClusterClientBuilder {
    match ca_pem {
        Some(pem) => builder.certs(::redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(pem),
        }),
        None => builder,
    }
}

#[cfg(not(feature = "tls"))]
fn with_ca(builder: ClusterClientBuilder, _: Option<Vec<u8>>) -> ClusterClientBuilder {
    builder
}

/// rustls needs a process-wide crypto provider; without one, the first TLS handshake panics
/// (REVIEW R2). Installs ring's unless the application installed one already.
fn install_crypto_provider() {
    #[cfg(feature = "tls")]
    {
        // `Err` means a provider is installed already, which is just as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_nodes_parse() {
        let text = "\
07c3 127.0.0.1:30004@40004 replica 292f 0 1426238317239 4 connected
67ed 127.0.0.1:30002@40002,host-b master - 0 1426238316232 2 connected 5461-10922
292f 127.0.0.1:30001@40001 myself,master - 0 0 1 connected 0-5460
6ec2 127.0.0.1:30005@40005 master,fail 67ed 1426238316232 1426238316232 5 connected
8a1f 127.0.0.1:30006@40006 master,fail? - 1426238316232 1426238316232 6 connected 16000
e7d1 :0@0 master,noaddr - 1426238316232 1426238316232 3 disconnected 10923-16383
";
        let nodes = parse_nodes(text);
        let summary: Vec<(u16, bool, &str)> = nodes
            .iter()
            .map(|n| (n.port, n.serving_master, n.role))
            .collect();
        assert_eq!(
            summary,
            [
                (30004, false, "replica"),
                (30002, true, "master"),
                (30001, true, "master"),
                (30005, false, "master"),
                (30006, true, "master"),
            ]
        );
        assert_eq!(nodes[1].address(), "127.0.0.1:30002");
    }
}

#[cfg(all(test, feature = "tls"))]
mod tls_tests {
    use super::*;

    /// R2: a `rediss://` URL used to panic in rustls ("no process-level CryptoProvider") on the
    /// first handshake. Now it is an ordinary connection failure (nothing listens on port 1).
    #[tokio::test]
    async fn r02_a_tls_connection_attempt_does_not_panic() {
        let config = Config {
            redis_url: "rediss://127.0.0.1:1/".to_owned(),
            ..Config::default()
        };
        let target = Target::new(&config).unwrap();
        assert!(target.connect(Duration::from_millis(500)).await.is_err());
    }
}
