//! A throw-away `redis-server` process bound to a free loopback port.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{OnceLock, mpsc};
use std::time::{Duration, Instant};

use redis::{FromRedisValue, RedisResult, Value};

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
/// Dropping the handle resumes (`SIGCONT`), kills (`SIGKILL`) and reaps the
/// process and removes the directory, so no server outlives its test even if
/// the test panics.
///
/// All methods are blocking; they are cheap enough to call from async tests.
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    dir: PathBuf,
    persistent: bool,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a non-persistent server (`--save "" --appendonly no`) on a free
    /// loopback port and waits until it answers `PING`.
    ///
    /// # Panics
    ///
    /// If `redis-server` is not installed (the message contains an install
    /// hint) or the server cannot be started after a few attempts.
    pub fn start() -> Self {
        Self::launch(false)
    }

    /// Starts a server with `--appendonly yes --appendfsync always`, so every
    /// acknowledged write survives [`kill`](Self::kill) followed by
    /// [`restart`](Self::restart).
    ///
    /// # Panics
    ///
    /// Like [`RedisServer::start`].
    pub fn start_persistent() -> Self {
        Self::launch(true)
    }

    fn launch(persistent: bool) -> Self {
        // Fail with the install hint before creating anything.
        redis_server_binary();
        let dir = make_temp_dir();
        let mut errors = Vec::new();
        for _ in 0..START_ATTEMPTS {
            let port = free_port();
            match spawn_ready(port, &dir, persistent) {
                Ok(child) => {
                    let server = Self {
                        port,
                        dir,
                        persistent,
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

    /// The TCP port the server listens on (stable across restarts).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Connection URL of the server, `redis://127.0.0.1:<port>/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// The server's private temporary directory (working dir, logs, AOF).
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
    /// (a persistent server reloads its AOF) and waits until it answers
    /// `PING`. Kills the current process first if it is still running.
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
            match spawn_ready(self.port, &self.dir, self.persistent) {
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

    /// A `redis` client for this server (no connection is opened yet).
    pub fn client(&self) -> redis::Client {
        redis::Client::open(self.url()).expect("valid redis URL")
    }

    /// Runs one command (`args[0]` is the command name) on a fresh
    /// synchronous connection, with `timeout` for connecting (including the
    /// handshake), writing and reading. All failures, including error
    /// replies, are returned as `Err`.
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
        let mut con = self.client().get_connection_with_timeout(timeout)?;
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

/// Whether `setpriv --pdeathsig` works here (Linux, util-linux installed).
fn pdeathsig_supported() -> bool {
    static SUPPORTED: OnceLock<bool> = OnceLock::new();
    *SUPPORTED.get_or_init(|| {
        cfg!(target_os = "linux")
            && Command::new("setpriv")
                .args(["--pdeathsig", "KILL", "true"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|status| status.success())
    })
}

/// Builds the command line of a server on `port` living in `dir`.
fn server_command(port: u16, dir: &Path, persistent: bool) -> io::Result<Command> {
    let binary = redis_server_binary();
    let mut cmd = if pdeathsig_supported() {
        // The kernel kills the server when the spawning thread exits; see
        // `spawn` for why that thread lives as long as the process.
        let mut cmd = Command::new("setpriv");
        cmd.args(["--pdeathsig", "KILL"]).arg(binary);
        cmd
    } else {
        Command::new(binary)
    };
    cmd.arg("--port")
        .arg(port.to_string())
        .args(["--bind", "127.0.0.1"])
        .args(["--daemonize", "no"])
        .args(["--protected-mode", "no"])
        .args(["--save", ""])
        .arg("--dir")
        .arg(dir)
        .arg("--logfile")
        .arg(dir.join(LOG_FILE));
    if persistent {
        cmd.args(["--appendonly", "yes", "--appendfsync", "always"]);
    } else {
        cmd.args(["--appendonly", "no"]);
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

/// A request to the spawner thread and the channel for its answer.
type SpawnRequest = (Command, mpsc::Sender<io::Result<Child>>);

/// Spawns `cmd` from a dedicated thread that lives as long as the process.
///
/// `PR_SET_PDEATHSIG` fires when the *thread* that forked the child exits.
/// Test threads end after each test, which would kill servers shared between
/// tests, so children are forked from this long-lived thread instead; its
/// death (at process exit, even by `SIGKILL`) then takes the servers down.
fn spawn(cmd: Command) -> io::Result<Child> {
    static SPAWNER: OnceLock<Option<mpsc::Sender<SpawnRequest>>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("redis-server-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            })
            .ok()
            .map(|_| tx)
    });
    let Some(spawner) = spawner else {
        let mut cmd = cmd;
        return cmd.spawn();
    };
    let (reply_tx, reply_rx) = mpsc::channel();
    spawner
        .send((cmd, reply_tx))
        .map_err(|_| io::Error::other("redis-server spawner thread is gone"))?;
    reply_rx
        .recv()
        .map_err(|_| io::Error::other("redis-server spawner thread is gone"))?
}

/// Spawns a server on `port` and waits until *it* (not some other process
/// that grabbed the port) answers `PING`. On failure the child is reaped and
/// a description of the failure is returned.
fn spawn_ready(port: u16, dir: &Path, persistent: bool) -> Result<Child, String> {
    let cmd = server_command(port, dir, persistent)
        .map_err(|err| format!("cannot prepare {}: {err}", dir.display()))?;
    let mut child = match spawn(cmd) {
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
        if probe(port).is_ok_and(|pid| pid == Some(child.id())) {
            return Ok(child);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "redis-server did not answer PING within {READY_TIMEOUT:?}"
            ));
        }
        std::thread::sleep(PROBE_INTERVAL);
    }
}

/// Sends `PING` and, if it is answered with `PONG` (not e.g. `-LOADING`),
/// returns the `process_id` reported by `INFO server`.
fn probe(port: u16) -> io::Result<Option<u32>> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&addr, PROBE_TIMEOUT)?;
    stream.set_read_timeout(Some(PROBE_TIMEOUT))?;
    stream.set_write_timeout(Some(PROBE_TIMEOUT))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();

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
    use super::{command_calls, info_field};

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
    fn parses_command_calls() {
        assert_eq!(command_calls(COMMANDSTATS, "keys"), 3);
        assert_eq!(command_calls(COMMANDSTATS, "KEYS"), 3);
        assert_eq!(command_calls(COMMANDSTATS, "config|resetstat"), 1);
        assert_eq!(command_calls(COMMANDSTATS, "get"), 0);
    }
}
