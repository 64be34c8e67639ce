//! A throw-away `redis-server` process bound to a free loopback port.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use redis::{FromRedisValue, RedisResult, TlsCertificates, Value};

use crate::tls::{self, TlsFiles};
use crate::wait_until_blocking;

/// Panic message used when no `redis-server` binary can be found.
const NOT_FOUND: &str = "redis-server not found: install it with `apt-get install redis-server`";
/// How long a freshly spawned server may take to answer `PING`.
const READY_TIMEOUT: Duration = Duration::from_secs(5);
/// How long [`RedisServer::restart`] keeps retrying to bind the old port.
const RESTART_TIMEOUT: Duration = Duration::from_secs(5);
/// How many fresh ports [`RedisServer::start`] tries before giving up.
const START_ATTEMPTS: usize = 5;
/// Connect/read/write timeout of a single readiness probe.
const PROBE_TIMEOUT: Duration = Duration::from_millis(250);
/// Pause between two readiness probes.
const PROBE_INTERVAL: Duration = Duration::from_millis(20);
/// Connect/read/write timeout used by [`RedisServer::cli`].
const CLI_TIMEOUT: Duration = Duration::from_secs(5);
/// Name of the server log file inside the server directory.
const LOG_FILE: &str = "redis.log";
/// Name of the file receiving the server's stdout/stderr.
const OUTPUT_FILE: &str = "redis.out";

/// A real `redis-server` child process listening on `127.0.0.1:<port>`.
///
/// Each server gets a free port and a private temporary directory (working
/// directory, log file and, for [`RedisServer::start_persistent`], the AOF).
/// Constructors return only once the server answers `PING` and statistics
/// have been reset with `CONFIG RESETSTAT`.
///
/// [`RedisServer::builder`] starts servers configured like real deployments:
/// TLS, a password, ACL users, a memory limit or any other directive. The
/// blocking helpers ([`cli`](Self::cli), [`query`](Self::query),
/// [`info_stat`](Self::info_stat), ...) and [`client`](Self::client) speak TLS
/// and authenticate as the default user wherever that is configured.
///
/// Dropping the handle resumes (`SIGCONT`), kills (`SIGKILL`) and reaps the
/// process and removes the directory, so no server outlives its test even if
/// the test panics.
///
/// All methods are blocking; they are cheap enough to call from async tests.
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    dir: PathBuf,
    config: ServerConfig,
    child: Option<Child>,
}

/// Configures and starts a [`RedisServer`]; created by [`RedisServer::builder`].
///
/// Every option is kept for [`RedisServer::restart`], which brings the server
/// back with the same certificates, passwords, ACL users and limits.
///
/// ```no_run
/// use integration_tests::RedisServer;
///
/// let server = RedisServer::builder()
///     .tls()
///     .requirepass("pw")
///     .acl_user("app", "s3cret", "on ~* &* +@all")
///     .maxmemory(8 << 20, "allkeys-lru")
///     .start();
/// assert_eq!(server.url(), format!("rediss://:pw@127.0.0.1:{}/", server.port()));
/// let _ca = server.ca_cert_path().expect("a TLS server has a CA");
/// ```
#[derive(Debug, Clone, Default)]
#[must_use = "a builder does nothing until `start` is called"]
pub struct RedisServerBuilder {
    persistent: bool,
    tls: bool,
    requirepass: Option<String>,
    acl_users: Vec<AclUser>,
    maxmemory: Option<(u64, String)>,
    args: Vec<(String, String)>,
    cluster: Option<ClusterNode>,
    shared_tls: Option<TlsFiles>,
}

/// How a server takes part in a Redis Cluster (see [`crate::RedisCluster`]).
#[derive(Debug, Clone)]
pub(crate) struct ClusterNode {
    /// `cluster-node-timeout`, in milliseconds.
    pub(crate) node_timeout_ms: u64,
}

impl RedisServerBuilder {
    /// Starts the server as a Redis Cluster node (`--cluster-enabled yes`, its `nodes.conf` in
    /// its directory, so that a restart rejoins the cluster) on a port the cluster bus can use
    /// (at most 55535: the bus listens on port + 10000). A password also becomes `masterauth`,
    /// TLS also covers the bus and replication.
    pub(crate) fn cluster_node(mut self, node: ClusterNode) -> Self {
        self.cluster = Some(node);
        self
    }

    /// Uses these certificates instead of generating new ones: the nodes of a cluster share
    /// one CA.
    pub(crate) fn shared_tls(mut self, files: TlsFiles) -> Self {
        self.tls = true;
        self.shared_tls = Some(files);
        self
    }

    /// Persists every write like [`RedisServer::start_persistent`]
    /// (`--appendonly yes --appendfsync always`), so acknowledged writes
    /// survive [`kill`](RedisServer::kill) followed by
    /// [`restart`](RedisServer::restart).
    pub fn persistent(mut self) -> Self {
        self.persistent = true;
        self
    }

    /// Listens with TLS only: `--port 0 --tls-port <free port>` with
    /// `--tls-auth-clients no` (clients need no certificate of their own).
    ///
    /// A fresh self-signed CA and a server certificate for `127.0.0.1` and
    /// `localhost` signed by it are generated at [`start`](Self::start) and
    /// written as PEM files into the server directory;
    /// [`RedisServer::ca_cert_path`] gives the CA for clients, and
    /// [`RedisServer::url`] becomes `rediss://127.0.0.1:<port>/`.
    pub fn tls(mut self) -> Self {
        self.tls = true;
        self
    }

    /// Requires `password` for the default user (`--requirepass`).
    /// [`RedisServer::url`] then carries it (`redis://:<password>@...`), and
    /// the harness's helpers authenticate with it.
    pub fn requirepass(mut self, password: impl Into<String>) -> Self {
        self.requirepass = Some(password.into());
        self
    }

    /// Creates the ACL user `name` with `password` and the ACL `rules`
    /// (whitespace-separated, as after `ACL SETUSER <name>`), e.g.
    /// `acl_user("app", "s3cret", "on ~* &* +@all")`. A new user is `off`
    /// and may do nothing until the rules say otherwise.
    ///
    /// Passed as a `--user` directive, so the user exists as soon as the
    /// server answers and again after every restart. May be called several
    /// times. The helpers keep using the default user; connect as this user
    /// with [`RedisServer::url_as`].
    pub fn acl_user(
        mut self,
        name: impl Into<String>,
        password: impl Into<String>,
        rules: impl Into<String>,
    ) -> Self {
        self.acl_users.push(AclUser {
            name: name.into(),
            password: password.into(),
            rules: rules.into(),
        });
        self
    }

    /// Limits memory to `bytes` with the eviction `policy`
    /// (`--maxmemory <bytes> --maxmemory-policy <policy>`, e.g. `allkeys-lru`
    /// or `noeviction`).
    pub fn maxmemory(mut self, bytes: u64, policy: impl Into<String>) -> Self {
        self.maxmemory = Some((bytes, policy.into()));
        self
    }

    /// Adds any other configuration directive as `--<name> <value>`, e.g.
    /// `arg("notify-keyspace-events", "KEA")`. A leading `--` on `name` is
    /// optional; `value` is passed as one argument.
    ///
    /// Extra directives come last on the command line, so they override the
    /// harness's defaults (e.g. `arg("appendfsync", "everysec")`). Use the
    /// dedicated methods for the port, TLS, `requirepass` and ACL users: the
    /// harness must know about those to reach the server.
    pub fn arg(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        let name = name.into();
        let name = name.strip_prefix("--").map(str::to_owned).unwrap_or(name);
        self.args.push((name, value.into()));
        self
    }

    /// Starts the configured server on a free loopback port and waits until
    /// it answers `PING` (over TLS and authenticated where configured).
    ///
    /// # Panics
    ///
    /// Like [`RedisServer::start`]; also if the certificates cannot be
    /// generated or the server rejects the configuration (the panic message
    /// shows the end of its log).
    pub fn start(self) -> RedisServer {
        RedisServer::launch(self)
    }
}

/// An ACL user created at server start (see [`RedisServerBuilder::acl_user`]).
#[derive(Debug, Clone)]
struct AclUser {
    name: String,
    password: String,
    rules: String,
}

/// The configuration a [`RedisServer`] was started with; reused by restarts.
#[derive(Debug, Clone)]
struct ServerConfig {
    persistent: bool,
    tls: Option<TlsFiles>,
    requirepass: Option<String>,
    acl_users: Vec<AclUser>,
    maxmemory: Option<(u64, String)>,
    args: Vec<(String, String)>,
    cluster: Option<ClusterNode>,
}

impl ServerConfig {
    /// The final configuration of `builder` for a server living in `dir`
    /// (generates the TLS certificates there).
    fn new(builder: RedisServerBuilder, dir: &Path) -> Result<Self, String> {
        let RedisServerBuilder {
            persistent,
            tls,
            requirepass,
            acl_users,
            maxmemory,
            args,
            cluster,
            shared_tls,
        } = builder;
        let tls = match (tls, shared_tls) {
            (_, Some(files)) => Some(files),
            (true, None) => Some(
                tls::generate(dir)
                    .map_err(|err| format!("cannot create TLS certificates: {err}"))?,
            ),
            (false, None) => None,
        };
        Ok(Self {
            persistent,
            tls,
            requirepass,
            acl_users,
            maxmemory,
            args,
            cluster,
        })
    }

    /// `rediss` for TLS servers, `redis` otherwise.
    fn scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "rediss"
        } else {
            "redis"
        }
    }

    /// The URL of the server on `port` with the given credentials
    /// (percent-encoded).
    fn url(&self, port: u16, user: Option<&str>, password: Option<&str>) -> String {
        let auth = match (user, password) {
            (None, None) => String::new(),
            (user, password) => format!(
                "{}:{}@",
                percent_encode(user.unwrap_or_default()),
                percent_encode(password.unwrap_or_default())
            ),
        };
        format!("{}://{auth}127.0.0.1:{port}/", self.scheme())
    }

    /// The URL the harness itself uses: the default user, with
    /// `requirepass` if set.
    fn default_url(&self, port: u16) -> String {
        self.url(port, None, self.requirepass.as_deref())
    }

    /// A client for `url` that trusts this server's CA if `url` is a
    /// `rediss://` URL and the server has TLS.
    fn client(&self, url: &str) -> RedisResult<redis::Client> {
        match &self.tls {
            Some(files) if url.starts_with("rediss://") => {
                tls::install_crypto_provider();
                let root_cert = fs::read(&files.ca_cert)?;
                redis::Client::build_with_tls(
                    url,
                    TlsCertificates {
                        client_tls: None,
                        root_cert: Some(root_cert),
                    },
                )
            }
            _ => redis::Client::open(url),
        }
    }
}

impl RedisServer {
    /// A builder for servers with TLS, passwords, ACL users, a memory limit
    /// or other directives; see [`RedisServerBuilder`].
    pub fn builder() -> RedisServerBuilder {
        RedisServerBuilder::default()
    }

    /// Starts a non-persistent server (`--save "" --appendonly no`) on a free
    /// loopback port and waits until it answers `PING`.
    ///
    /// # Panics
    ///
    /// If `redis-server` is not installed (the message contains an install
    /// hint) or the server cannot be started after a few attempts.
    pub fn start() -> Self {
        Self::builder().start()
    }

    /// Starts a server with `--appendonly yes --appendfsync always`, so every
    /// acknowledged write survives [`kill`](Self::kill) followed by
    /// [`restart`](Self::restart).
    ///
    /// # Panics
    ///
    /// Like [`RedisServer::start`].
    pub fn start_persistent() -> Self {
        Self::builder().persistent().start()
    }

    fn launch(builder: RedisServerBuilder) -> Self {
        // Fail with the install hint before creating anything.
        redis_server_binary();
        let dir = make_temp_dir();
        let config = ServerConfig::new(builder, &dir).unwrap_or_else(|err| {
            let _ = fs::remove_dir_all(&dir);
            panic!("failed to configure redis-server: {err}");
        });
        let mut errors = Vec::new();
        for _ in 0..START_ATTEMPTS {
            let port = if config.cluster.is_some() {
                free_cluster_port()
            } else {
                free_port()
            };
            match spawn_ready(port, &dir, &config) {
                Ok(child) => {
                    let server = Self {
                        port,
                        dir,
                        config,
                        child: Some(child),
                    };
                    server.reset_stats();
                    return server;
                }
                Err(err) => errors.push(format!("port {port}: {err}")),
            }
        }
        let log = log_tail(&dir);
        let _ = fs::remove_dir_all(&dir);
        panic!(
            "failed to start redis-server after {START_ATTEMPTS} attempts:\n{}\n--- log tail ---\n{log}",
            errors.join("\n")
        );
    }

    /// The TCP port the server listens on (stable across restarts); for a
    /// TLS server its TLS port, the only one it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Connection URL of the server as the default user:
    /// `redis://127.0.0.1:<port>/`, `rediss://` for a TLS server, with the
    /// password if one is required (`redis://:<password>@127.0.0.1:<port>/`,
    /// percent-encoded).
    ///
    /// Clients of a TLS server must trust [`ca_cert_path`](Self::ca_cert_path);
    /// [`client`](Self::client) does.
    pub fn url(&self) -> String {
        self.config.default_url(self.port)
    }

    /// Like [`url`](Self::url) but without credentials, e.g. to check that
    /// the server refuses unauthenticated commands.
    pub fn url_without_auth(&self) -> String {
        self.config.url(self.port, None, None)
    }

    /// The URL for logging in as `user` with `password` (both
    /// percent-encoded), e.g. an ACL user of
    /// [`RedisServerBuilder::acl_user`]: `redis://<user>:<password>@127.0.0.1:<port>/`.
    pub fn url_as(&self, user: &str, password: &str) -> String {
        self.config.url(self.port, Some(user), Some(password))
    }

    /// The password of the default user, if the server was built with
    /// [`RedisServerBuilder::requirepass`].
    pub fn password(&self) -> Option<&str> {
        self.config.requirepass.as_deref()
    }

    /// The CA certificate (PEM) that signed a TLS server's certificate, for
    /// clients to trust; `None` unless built with [`RedisServerBuilder::tls`].
    pub fn ca_cert_path(&self) -> Option<&Path> {
        self.config
            .tls
            .as_ref()
            .map(|files| files.ca_cert.as_path())
    }

    pub(crate) fn tls_files(&self) -> Option<&TlsFiles> {
        self.config.tls.as_ref()
    }

    /// The server's private temporary directory (working dir, logs, AOF,
    /// TLS certificates).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Process id of the running server, or `None` after [`kill`](Self::kill).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills the server with `SIGKILL` and waits for it to exit; afterwards
    /// connections to the port are refused. Does nothing if it is not running.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and in the same directory
    /// with the same configuration (certificates, passwords, ACL users,
    /// limits; a persistent server reloads its AOF) and waits until it
    /// answers `PING`. Kills the current process first if it is still running.
    ///
    /// Binding is retried for about 5 s in case the port lingers.
    ///
    /// # Panics
    ///
    /// If the server cannot be restarted on the same port in time.
    pub fn restart(&mut self) {
        self.kill();
        let deadline = Instant::now() + RESTART_TIMEOUT;
        loop {
            match spawn_ready(self.port, &self.dir, &self.config) {
                Ok(child) => {
                    self.child = Some(child);
                    self.reset_stats();
                    return;
                }
                Err(err) if Instant::now() >= deadline => panic!(
                    "failed to restart redis-server on port {}: {err}\n--- log tail ---\n{}",
                    self.port,
                    log_tail(&self.dir)
                ),
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// Freezes the server with `SIGSTOP`: connections are still accepted by
    /// the kernel but no command is answered until [`resume`](Self::resume).
    ///
    /// # Panics
    ///
    /// If the server is not running or the signal cannot be sent.
    pub fn pause(&self) {
        self.signal("STOP");
        // SIGSTOP takes effect asynchronously: wait until every thread is stopped, so that no
        // command sent after `pause` returns can still be answered.
        let pid = self.pid().unwrap_or_default();
        let stopped = wait_until_blocking(Duration::from_secs(2), || all_threads_stopped(pid));
        assert!(stopped, "redis-server (pid {pid}) did not stop");
    }

    /// Continues a server stopped by [`pause`](Self::pause) (`SIGCONT`).
    ///
    /// # Panics
    ///
    /// If the server is not running or the signal cannot be sent.
    pub fn resume(&self) {
        self.signal("CONT");
    }

    fn signal(&self, name: &str) {
        let pid = self
            .pid()
            .unwrap_or_else(|| panic!("cannot send SIG{name}: redis-server is not running"));
        if let Err(err) = send_signal(pid, name) {
            panic!("failed to send SIG{name} to redis-server (pid {pid}): {err}");
        }
    }

    /// A `redis` client for [`url`](Self::url) (no connection is opened yet):
    /// the default user, trusting the server's CA if it has TLS. Works for
    /// synchronous and tokio connections.
    ///
    /// # Panics
    ///
    /// If the CA certificate of a TLS server cannot be read.
    pub fn client(&self) -> redis::Client {
        self.client_for(&self.url())
    }

    /// A `redis` client for any `url` of this server, e.g. from
    /// [`url_as`](Self::url_as) or [`url_without_auth`](Self::url_without_auth).
    /// A `rediss://` URL trusts the server's CA if the server has TLS.
    ///
    /// # Panics
    ///
    /// If `url` is not a valid redis URL or the CA cannot be read.
    pub fn client_for(&self, url: &str) -> redis::Client {
        self.config
            .client(url)
            .unwrap_or_else(|err| panic!("cannot create a client for {url}: {err}"))
    }

    /// Runs one command (`args[0]` is the command name) on a fresh
    /// synchronous connection, with `timeout` for connecting (including the
    /// TLS and `AUTH` handshake), writing and reading. All failures,
    /// including error replies, are returned as `Err`.
    ///
    /// # Panics
    ///
    /// If `args` is empty.
    pub fn try_cli(&self, args: &[&str], timeout: Duration) -> RedisResult<Value> {
        self.try_query(args, timeout)
    }

    /// Like [`try_cli`](Self::try_cli) but converts the reply to `T`.
    ///
    /// # Panics
    ///
    /// If `args` is empty.
    pub fn try_query<T: FromRedisValue>(&self, args: &[&str], timeout: Duration) -> RedisResult<T> {
        let (name, rest) = args.split_first().expect("a command needs a name");
        let client = self.config.client(&self.url())?;
        let mut con = client.get_connection_with_timeout(timeout)?;
        con.set_read_timeout(Some(timeout))?;
        con.set_write_timeout(Some(timeout))?;
        let mut cmd = redis::cmd(name);
        for arg in rest {
            cmd.arg(*arg);
        }
        cmd.query(&mut con)
    }

    /// Runs one command on a fresh connection (5 s timeout) and returns the
    /// raw reply, e.g. `server.cli(&["SET", "k", "v"])`.
    ///
    /// # Panics
    ///
    /// On any error, including connection failures and error replies.
    pub fn cli(&self, args: &[&str]) -> Value {
        self.query(args)
    }

    /// Like [`cli`](Self::cli) but converts the reply, e.g.
    /// `server.query::<Option<String>>(&["GET", "k"])`.
    ///
    /// # Panics
    ///
    /// On any error, including a reply that does not convert to `T`.
    pub fn query<T: FromRedisValue>(&self, args: &[&str]) -> T {
        self.try_query(args, CLI_TIMEOUT).unwrap_or_else(|err| {
            panic!("redis command {args:?} on port {} failed: {err}", self.port)
        })
    }

    /// The raw text of `INFO <section>`.
    ///
    /// # Panics
    ///
    /// Like [`cli`](Self::cli).
    pub fn info(&self, section: &str) -> String {
        self.query(&["INFO", section])
    }

    /// The value of field `name` in `INFO <section>`, if present.
    ///
    /// # Panics
    ///
    /// Like [`cli`](Self::cli).
    pub fn info_field(&self, section: &str, name: &str) -> Option<String> {
        info_field(&self.info(section), name).map(str::to_owned)
    }

    /// A numeric field of `INFO stats`, e.g. `total_connections_received`
    /// or `keyspace_hits`.
    ///
    /// # Panics
    ///
    /// If the field is absent or not an unsigned integer.
    pub fn info_stat(&self, name: &str) -> u64 {
        let info = self.info("stats");
        let value = info_field(&info, name)
            .unwrap_or_else(|| panic!("INFO stats has no field {name:?}:\n{info}"));
        value
            .parse()
            .unwrap_or_else(|err| panic!("INFO stats field {name}={value:?} is not a u64: {err}"))
    }

    /// How often `cmd` (case-insensitive; subcommands as `config|get`) has
    /// been executed since start or the last [`reset_stats`](Self::reset_stats),
    /// read from `INFO commandstats`. Returns 0 if it was never called.
    ///
    /// # Panics
    ///
    /// Like [`cli`](Self::cli).
    pub fn command_calls(&self, cmd: &str) -> u64 {
        command_calls(&self.info("commandstats"), cmd)
    }

    /// Resets the server statistics (`CONFIG RESETSTAT`). Note that every
    /// [`cli`](Self::cli) call itself opens a connection and runs commands
    /// (including a `CLIENT SETINFO` handshake), which shows up in the stats.
    ///
    /// # Panics
    ///
    /// Like [`cli`](Self::cli).
    pub fn reset_stats(&self) {
        self.cli(&["CONFIG", "RESETSTAT"]);
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(pid) = self.pid() {
            // A stopped process is only continued by SIGCONT; SIGKILL would
            // work anyway, but resume first so nothing is left stopped.
            let _ = send_signal(pid, "CONT");
        }
        self.kill();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Finds the value of `name` in `INFO` output (`name:value` lines).
fn info_field<'a>(info: &'a str, name: &str) -> Option<&'a str> {
    info.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key == name).then(|| value.trim())
    })
}

/// Extracts `calls=N` for `cmd` from `INFO commandstats` output.
fn command_calls(info: &str, cmd: &str) -> u64 {
    let key = format!("cmdstat_{}", cmd.to_ascii_lowercase());
    info_field(info, &key)
        .and_then(|stats| {
            stats
                .split(',')
                .find_map(|part| part.strip_prefix("calls="))
        })
        .and_then(|calls| calls.parse().ok())
        .unwrap_or(0)
}

/// Sends a signal by name (`STOP`, `CONT`, ...) using the `kill` utility.
fn send_signal(pid: u32, name: &str) -> io::Result<()> {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?;
    if status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "`kill -{name} {pid}` exited with {status}"
        )))
    }
}

/// Asks the OS for a currently free loopback port.
fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .expect("failed to bind a loopback port")
        .port()
}

/// A free loopback port at most 55535 whose cluster bus port (+10000) is free too.
fn free_cluster_port() -> u16 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    // Start somewhere different in each process, then walk: concurrent test binaries rarely
    // collide, and a collision only costs a retry.
    let seed = u64::from(std::process::id()).wrapping_mul(7919) % 20_000;
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = 30_000 + u16::try_from((seed + n * 7) % 25_000).unwrap_or(0);
        let free = |p: u16| TcpListener::bind((Ipv4Addr::LOCALHOST, p)).is_ok();
        if free(port) && free(port + 10_000) {
            return port;
        }
    }
}

/// Creates a fresh, empty directory under the system temp dir.
fn make_temp_dir() -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    loop {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!(
            "integration-tests-redis-{}-{n}",
            std::process::id()
        ));
        match fs::create_dir(&dir) {
            Ok(()) => return dir,
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(err) => panic!("failed to create {}: {err}", dir.display()),
        }
    }
}

/// The last lines of the server's log and output files, for panic messages.
fn log_tail(dir: &Path) -> String {
    let mut out = String::new();
    for name in [OUTPUT_FILE, LOG_FILE] {
        if let Ok(bytes) = fs::read(dir.join(name)) {
            let text = String::from_utf8_lossy(&bytes);
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(15)..];
            out.push_str(&format!("[{name}]\n{}\n", tail.join("\n")));
        }
    }
    out
}

/// Absolute path of the `redis-server` binary found on `PATH`.
///
/// # Panics
///
/// With an install hint if there is none.
fn redis_server_binary() -> &'static Path {
    static BINARY: OnceLock<Option<PathBuf>> = OnceLock::new();
    BINARY
        .get_or_init(|| {
            let path = std::env::var_os("PATH")?;
            std::env::split_paths(&path)
                .map(|dir| dir.join("redis-server"))
                .find(|candidate| candidate.is_file())
        })
        .as_deref()
        .unwrap_or_else(|| panic!("{NOT_FOUND}"))
}

/// Builds the command line of a server on `port` living in `dir`.
fn server_command(port: u16, dir: &Path, config: &ServerConfig) -> io::Result<Command> {
    let mut cmd = crate::process::tied_command(redis_server_binary());
    match &config.tls {
        None => {
            cmd.arg("--port").arg(port.to_string());
        }
        Some(files) => {
            cmd.args(["--port", "0"])
                .arg("--tls-port")
                .arg(port.to_string())
                .arg("--tls-cert-file")
                .arg(&files.cert)
                .arg("--tls-key-file")
                .arg(&files.key)
                .arg("--tls-ca-cert-file")
                .arg(&files.ca_cert)
                .args(["--tls-auth-clients", "no"]);
        }
    }
    cmd.args(["--bind", "127.0.0.1"])
        .args(["--daemonize", "no"])
        .args(["--protected-mode", "no"])
        .args(["--save", ""])
        .arg("--dir")
        .arg(dir)
        .arg("--logfile")
        .arg(dir.join(LOG_FILE));
    if config.persistent {
        cmd.args(["--appendonly", "yes", "--appendfsync", "always"]);
    } else {
        cmd.args(["--appendonly", "no"]);
    }
    if let Some(password) = &config.requirepass {
        cmd.arg("--requirepass").arg(password);
    }
    if let Some(node) = &config.cluster {
        cmd.args(["--cluster-enabled", "yes"])
            .args(["--cluster-config-file", "nodes.conf"])
            .arg("--cluster-node-timeout")
            .arg(node.node_timeout_ms.to_string());
        if let Some(password) = &config.requirepass {
            cmd.arg("--masterauth").arg(password);
        }
        if config.tls.is_some() {
            cmd.args(["--tls-cluster", "yes", "--tls-replication", "yes"]);
        }
    }
    for user in &config.acl_users {
        // One argument per token: redis-server quotes each argument, so a password with spaces
        // stays one token, and the rules become separate ones.
        cmd.arg("--user")
            .arg(&user.name)
            .arg(format!(">{}", user.password))
            .args(user.rules.split_whitespace());
    }
    if let Some((bytes, policy)) = &config.maxmemory {
        cmd.arg("--maxmemory")
            .arg(bytes.to_string())
            .arg("--maxmemory-policy")
            .arg(policy);
    }
    for (name, value) in &config.args {
        cmd.arg(format!("--{name}")).arg(value);
    }
    let output: File = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(OUTPUT_FILE))?;
    cmd.stdin(Stdio::null())
        .stdout(output.try_clone()?)
        .stderr(output);
    Ok(cmd)
}

/// Spawns a server on `port` and waits until *it* (not some other process
/// that grabbed the port) answers `PING`. On failure the child is reaped and
/// a description of the failure is returned.
fn spawn_ready(port: u16, dir: &Path, config: &ServerConfig) -> Result<Child, String> {
    let cmd = server_command(port, dir, config)
        .map_err(|err| format!("cannot prepare {}: {err}", dir.display()))?;
    let mut child = match crate::process::spawn_tied(cmd) {
        Ok(child) => child,
        Err(err) if err.kind() == io::ErrorKind::NotFound => panic!("{NOT_FOUND} ({err})"),
        Err(err) => panic!("failed to spawn redis-server: {err}"),
    };
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Err(format!("redis-server exited early with {status}")),
            Ok(None) => {}
            Err(err) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("cannot query redis-server status: {err}"));
            }
        }
        let last_error = match probe(port, config) {
            Ok(Some(pid)) if pid == child.id() => return Ok(child),
            Ok(Some(pid)) => format!("PING answered by another process ({pid})"),
            Ok(None) => String::from("PING not answered with PONG"),
            Err(err) => err,
        };
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "redis-server did not answer PING within {READY_TIMEOUT:?} (last probe: {last_error})"
            ));
        }
        std::thread::sleep(PROBE_INTERVAL);
    }
}

/// Sends `PING` and, if it is answered with `PONG` (not e.g. `-LOADING`),
/// returns the `process_id` reported by `INFO server`.
///
/// Plain servers are probed over a raw socket (authenticating first if a
/// password is required); TLS servers with the redis-rs TLS client.
fn probe(port: u16, config: &ServerConfig) -> Result<Option<u32>, String> {
    if config.tls.is_some() {
        probe_tls(port, config).map_err(|err| err.to_string())
    } else {
        probe_plain(port, config.requirepass.as_deref()).map_err(|err| err.to_string())
    }
}

/// [`probe`] with redis-rs over TLS, as the default user.
fn probe_tls(port: u16, config: &ServerConfig) -> RedisResult<Option<u32>> {
    let client = config.client(&config.default_url(port))?;
    let mut con = client.get_connection_with_timeout(PROBE_TIMEOUT)?;
    con.set_read_timeout(Some(PROBE_TIMEOUT))?;
    con.set_write_timeout(Some(PROBE_TIMEOUT))?;
    let pong: String = redis::cmd("PING").query(&mut con)?;
    if pong != "PONG" {
        return Ok(None);
    }
    let info: String = redis::cmd("INFO").arg("server").query(&mut con)?;
    Ok(info_field(&info, "process_id").and_then(|pid| pid.parse().ok()))
}

/// [`probe`] over a raw TCP socket; sends `AUTH <password>` first if given.
fn probe_plain(port: u16, password: Option<&str>) -> io::Result<Option<u32>> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&addr, PROBE_TIMEOUT)?;
    stream.set_read_timeout(Some(PROBE_TIMEOUT))?;
    stream.set_write_timeout(Some(PROBE_TIMEOUT))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();

    if let Some(password) = password {
        // RESP array, so that any password bytes are sent verbatim.
        let mut auth = format!("*2\r\n$4\r\nAUTH\r\n${}\r\n", password.len()).into_bytes();
        auth.extend_from_slice(password.as_bytes());
        auth.extend_from_slice(b"\r\n");
        stream.write_all(&auth)?;
        reader.read_line(&mut line)?;
        if line.trim_end() != "+OK" {
            return Err(io::Error::other(format!(
                "AUTH answered {:?}",
                line.trim_end()
            )));
        }
        line.clear();
    }

    stream.write_all(b"PING\r\n")?;
    reader.read_line(&mut line)?;
    if line.trim_end() != "+PONG" {
        return Ok(None);
    }

    stream.write_all(b"INFO server\r\n")?;
    line.clear();
    reader.read_line(&mut line)?;
    let Some(len) = line
        .trim_end()
        .strip_prefix('$')
        .and_then(|len| len.parse::<usize>().ok())
    else {
        return Ok(None);
    };
    let mut body = vec![0; len];
    reader.read_exact(&mut body)?;
    let body = String::from_utf8_lossy(&body);
    Ok(info_field(&body, "process_id").and_then(|pid| pid.parse().ok()))
}

/// Percent-encodes everything but RFC 3986 unreserved characters, for the
/// user and password parts of a URL.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Whether every thread of `pid` is in the stopped state (`T` in `/proc/<pid>/task/*/stat`).
fn all_threads_stopped(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.flatten().all(|task| {
        std::fs::read_to_string(task.path().join("stat")).is_ok_and(|stat| {
            // The state follows the parenthesised command name.
            stat.rsplit_once(") ")
                .is_some_and(|(_, rest)| rest.starts_with(['T', 't']))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::{command_calls, info_field, percent_encode};

    const COMMANDSTATS: &str = "# Commandstats\r\n\
        cmdstat_keys:calls=3,usec=10,usec_per_call=3.33,rejected_calls=0,failed_calls=0\r\n\
        cmdstat_config|resetstat:calls=1,usec=5,usec_per_call=5.00,rejected_calls=0,failed_calls=0\r\n";

    #[test]
    fn parses_info_fields() {
        let info = "# Stats\r\ntotal_connections_received:42\r\nkeyspace_hits:0\r\n";
        assert_eq!(info_field(info, "total_connections_received"), Some("42"));
        assert_eq!(info_field(info, "keyspace_hits"), Some("0"));
        assert_eq!(info_field(info, "keyspace"), None);
    }

    #[test]
    fn percent_encodes_credentials() {
        assert_eq!(percent_encode("s3cret-._~"), "s3cret-._~");
        assert_eq!(percent_encode("p@ss word:/%"), "p%40ss%20word%3A%2F%25");
        assert_eq!(percent_encode("é"), "%C3%A9");
        assert_eq!(percent_encode(""), "");
    }

    #[test]
    fn parses_command_calls() {
        assert_eq!(command_calls(COMMANDSTATS, "keys"), 3);
        assert_eq!(command_calls(COMMANDSTATS, "KEYS"), 3);
        assert_eq!(command_calls(COMMANDSTATS, "config|resetstat"), 1);
        assert_eq!(command_calls(COMMANDSTATS, "get"), 0);
    }
}
