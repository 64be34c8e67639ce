//! Real example API processes (the `example-crud-api` binary) sharing one database and one
//! Redis or Redis Cluster, each on a free loopback port, driven over HTTP/1.1.
//!
//! The crate has no HTTP client among its dependencies, so [`Instance::request`] is a minimal
//! blocking HTTP/1.1 client over `std::net::TcpStream` (one connection per request,
//! `Connection: close`, every wait bounded).

use std::collections::HashSet;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use integration_tests::{RedisCluster, RedisServer};
use serde_json::Value;

use super::{Db, DbGuard, Resp};

/// How long a process may take to answer `/health` after it was spawned.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on connecting, sending and receiving one request.
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// Attempts at starting one process (another process may take its port in between).
const START_ATTEMPTS: usize = 5;

/// The Redis the processes share.
#[derive(Debug)]
pub enum SharedRedis {
    /// One redis-server.
    Server(RedisServer),
    /// A 3-master Redis Cluster.
    Cluster(RedisCluster),
}

impl SharedRedis {
    /// Starts a redis-server (`cluster == false`) or a Redis Cluster.
    pub fn start(cluster: bool) -> Self {
        if cluster {
            Self::Cluster(RedisCluster::start())
        } else {
            Self::Server(RedisServer::start())
        }
    }

    /// The variables that point a process at it.
    fn env(&self) -> Vec<(&'static str, String)> {
        match self {
            Self::Server(server) => vec![("REDIS_URL", server.url())],
            Self::Cluster(cluster) => vec![("REDIS_CLUSTER_NODES", cluster.nodes_var())],
        }
    }
}

/// One running example process.
#[derive(Debug)]
pub struct Instance {
    /// Index in its [`Fleet`].
    pub index: usize,
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Instance {
    /// Spawns the binary with `env` on a free port and waits until it answers `/health`.
    ///
    /// # Panics
    /// If it does not come up (with the end of its log).
    fn start(index: usize, dir: &Path, env: &[(&'static str, String)]) -> Self {
        let log = dir.join(format!("instance-{index}.log"));
        let mut failures = Vec::new();
        for _ in 0..START_ATTEMPTS {
            let port = free_port();
            let child = integration_tests::spawn_tied(command(dir, &log, port, env))
                .unwrap_or_else(|e| panic!("cannot spawn the example binary: {e}"));
            let mut instance = Self {
                index,
                child,
                port,
                log: log.clone(),
            };
            match instance.wait_healthy() {
                Ok(()) => return instance,
                // Dropping it kills it; the next attempt takes another port.
                Err(e) => failures.push(format!("port {port}: {e}\n{}", instance.log_tail())),
            }
        }
        panic!(
            "instance {index} did not start:\n{}",
            failures.join("\n---\n")
        );
    }

    /// Polls `/health` until it answers 200 while the child is still running (a child that
    /// could not bind its port exits, so an answer is then this process's).
    fn wait_healthy(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().map_err(|e| e.to_string())? {
                return Err(format!("exited with {status}"));
            }
            match self.try_request("GET", "/health", None, &[]) {
                Ok(r) if r.status == StatusCode::OK => return Ok(()),
                Ok(r) => return Err(format!("/health answered {}: {}", r.status, r.text)),
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Err(e) => return Err(format!("no answer within {START_TIMEOUT:?}: {e}")),
            }
        }
    }

    /// The last lines of its output.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Sends one request; panics when there is no well-formed answer.
    pub fn request(&self, method: &str, path: &str, body: Option<&Value>) -> Resp {
        self.request_with(method, path, body, &[])
    }

    /// [`Instance::request`] with extra header lines (`("Cookie", "session_id=…")`).
    pub fn request_with(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Resp {
        self.try_request(method, path, body, headers)
            .unwrap_or_else(|e| {
                panic!(
                    "instance {} (port {}): {method} {path}: {e}\n{}",
                    self.index,
                    self.port,
                    self.log_tail()
                )
            })
    }

    pub fn get(&self, path: &str) -> Resp {
        self.request("GET", path, None)
    }

    pub fn post(&self, path: &str, body: &Value) -> Resp {
        self.request("POST", path, Some(body))
    }

    pub fn put(&self, path: &str, body: &Value) -> Resp {
        self.request("PUT", path, Some(body))
    }

    pub fn delete(&self, path: &str) -> Resp {
        self.request("DELETE", path, None)
    }

    /// A GET as the admin (a token signed with the fleet's `JWT_SECRET`).
    pub fn admin_get(&self, path: &str) -> Resp {
        let bearer = format!("Bearer {}", super::admin_token(&super::test_jwt()));
        self.request_with("GET", path, None, &[("Authorization", &bearer)])
    }

    fn try_request(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> io::Result<Resp> {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let mut stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        let body = body.map(Value::to_string).unwrap_or_default();
        let content_type = if body.is_empty() {
            ""
        } else {
            "Content-Type: application/json\r\n"
        };
        let extra: String = headers
            .iter()
            .map(|(name, value)| format!("{name}: {value}\r\n"))
            .collect();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\
             {content_type}{extra}Content-Length: {}\r\n\r\n",
            self.port,
            body.len()
        );
        stream.write_all(head.as_bytes())?;
        stream.write_all(body.as_bytes())?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw)?;
        parse_response(&raw).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }
}

impl Instance {
    /// Opens `GET path` (an event stream) and returns once the response head arrived, which
    /// the server sends after subscribing.
    pub fn events(&self, path: &str) -> EventStream {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let mut stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT).expect("connect");
        stream.set_write_timeout(Some(IO_TIMEOUT)).expect("timeout");
        let head = format!(
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nAccept: text/event-stream\r\n\r\n",
            self.port
        );
        stream.write_all(head.as_bytes()).expect("send");
        let mut events = EventStream {
            stream,
            raw: Vec::new(),
            text: String::new(),
            status: StatusCode::OK,
        };
        let deadline = Instant::now() + IO_TIMEOUT;
        let split = loop {
            if let Some(i) = events.raw.windows(4).position(|w| w == b"\r\n\r\n") {
                break i;
            }
            assert!(events.fill(deadline), "no response head for {path}");
        };
        let head = String::from_utf8_lossy(&events.raw[..split]).into_owned();
        events.raw.drain(..split + 4);
        let code = head.split_whitespace().nth(1).and_then(|c| c.parse().ok());
        events.status = code
            .and_then(|c| StatusCode::from_u16(c).ok())
            .expect("a status");
        if events.status == StatusCode::OK {
            let head = head.to_ascii_lowercase();
            assert!(head.contains("content-type: text/event-stream"), "{head}");
            assert!(head.contains("transfer-encoding: chunked"), "{head}");
        }
        events
    }
}

/// An open `text/event-stream` response (chunked), read as it arrives.
#[derive(Debug)]
pub struct EventStream {
    stream: TcpStream,
    /// Bytes received and not yet de-chunked.
    raw: Vec<u8>,
    /// De-chunked text not yet parsed into events.
    text: String,
    pub status: StatusCode,
}

/// One server-sent event: its `event:` and `data:` fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sse {
    pub event: String,
    pub data: String,
}

impl EventStream {
    /// Reads more bytes, waiting until `deadline`; false when none came (or the stream ended).
    fn fill(&mut self, deadline: Instant) -> bool {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        self.stream.set_read_timeout(Some(left)).expect("timeout");
        let mut buf = [0u8; 8192];
        match self.stream.read(&mut buf) {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.raw.extend_from_slice(&buf[..n]);
                true
            }
        }
    }

    /// Moves every complete chunk from `raw` to `text`.
    fn dechunk(&mut self) {
        loop {
            let Some(end) = self.raw.windows(2).position(|w| w == b"\r\n") else {
                return;
            };
            let size = std::str::from_utf8(&self.raw[..end]).unwrap_or("");
            let size = usize::from_str_radix(size.trim(), 16).expect("a chunk size");
            if self.raw.len() < end + 2 + size + 2 {
                return;
            }
            let chunk = String::from_utf8_lossy(&self.raw[end + 2..end + 2 + size]).into_owned();
            self.text.push_str(&chunk);
            self.raw.drain(..end + 2 + size + 2);
        }
    }

    /// The next event (comments skipped) within `timeout`, or `None`.
    pub fn next(&mut self, timeout: Duration) -> Option<Sse> {
        let deadline = Instant::now() + timeout;
        loop {
            self.dechunk();
            while let Some(end) = self.text.find("\n\n") {
                let block: String = self.text.drain(..end + 2).collect();
                let mut event = Sse {
                    event: "message".to_owned(),
                    data: String::new(),
                };
                let mut fields = false;
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        event.event = v.trim().to_owned();
                        fields = true;
                    } else if let Some(v) = line.strip_prefix("data:") {
                        event.data.push_str(v.trim_start());
                        fields = true;
                    }
                }
                if fields {
                    return Some(event);
                }
            }
            if !self.fill(deadline) {
                return None;
            }
        }
    }

    /// Events until one satisfies `want` (returned with those before it), within `timeout`.
    pub fn until(
        &mut self,
        timeout: Duration,
        want: impl Fn(&Sse) -> bool,
    ) -> (Vec<Sse>, Option<Sse>) {
        let deadline = Instant::now() + timeout;
        let mut before = Vec::new();
        while let Some(event) = self.next(deadline.saturating_duration_since(Instant::now())) {
            if want(&event) {
                return (before, Some(event));
            }
            before.push(event);
        }
        (before, None)
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        // `Child::kill` signals this child's pid only.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Parses an HTTP/1.1 response read to the end (`Content-Length` or chunked body).
fn parse_response(raw: &[u8]) -> Result<Resp, String> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no end of headers")?;
    let head = std::str::from_utf8(&raw[..split]).map_err(|e| e.to_string())?;
    let mut payload = &raw[split + 4..];
    let status_line = head.split("\r\n").next().unwrap_or_default();
    let code: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let status = StatusCode::from_u16(code).map_err(|e| e.to_string())?;
    let header = |name: &str| {
        head.split("\r\n").skip(1).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    };
    let bytes = if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        let mut out = Vec::new();
        loop {
            let end = payload
                .windows(2)
                .position(|w| w == b"\r\n")
                .ok_or("truncated chunk size")?;
            let size = std::str::from_utf8(&payload[..end]).map_err(|e| e.to_string())?;
            let size = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|e| format!("bad chunk size {size:?}: {e}"))?;
            payload = &payload[end + 2..];
            if size == 0 {
                break;
            }
            let chunk = payload.get(..size).ok_or("truncated chunk")?;
            out.extend_from_slice(chunk);
            payload = payload.get(size + 2..).ok_or("truncated chunk end")?;
        }
        out
    } else {
        let len = match header("content-length") {
            Some(v) => v.parse().map_err(|_| format!("bad content-length {v:?}"))?,
            None => payload.len(),
        };
        payload.get(..len).ok_or("truncated body")?.to_vec()
    };
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    let mut headers = axum::http::HeaderMap::new();
    for line in head.split("\r\n").skip(1) {
        if let Some((name, value)) = line.split_once(':')
            && let (Ok(name), Ok(value)) = (
                axum::http::HeaderName::from_bytes(name.trim().as_bytes()),
                axum::http::HeaderValue::from_str(value.trim()),
            )
        {
            headers.append(name, value);
        }
    }
    Ok(Resp {
        status,
        body,
        text,
        headers,
    })
}

/// `n` example processes on one fresh database and one Redis; every process is killed when
/// this is dropped (before the Redis and the database go).
#[derive(Debug)]
pub struct Fleet {
    pub instances: Vec<Instance>,
    pub redis: SharedRedis,
    dir: PathBuf,
    _db: DbGuard,
}

impl Fleet {
    /// `n` processes on `db` and `redis`, configured alike.
    pub fn start(n: usize, db: Db, redis: SharedRedis) -> Self {
        Self::start_with(n, db, redis, |_| Vec::new())
    }

    /// Like [`Fleet::start`], with `extra(i)` added to (or overriding) process `i`'s variables.
    pub fn start_with(
        n: usize,
        db: Db,
        redis: SharedRedis,
        extra: impl Fn(usize) -> Vec<(&'static str, String)>,
    ) -> Self {
        let dir = std::env::temp_dir().join(format!("example-crud-api-fleet-{}", super::unique()));
        std::fs::create_dir_all(&dir).expect("fleet directory");
        // An empty `.env` where the processes run: they read it instead of looking for one in
        // the ancestors of the directory.
        std::fs::write(dir.join(".env"), "").expect("empty .env");
        // The schema is created once here, not by n processes racing to migrate.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let (url, db_guard) = runtime.block_on(async {
            let (url, guard) = DbGuard::create(db).await;
            let conn = example_crud_api::connect_db(&url)
                .await
                .expect("connect and migrate");
            conn.close().await.expect("close");
            (url, guard)
        });
        let mut fleet = Self {
            instances: Vec::new(),
            redis,
            dir,
            _db: db_guard,
        };
        let mut base = vec![
            ("DATABASE_URL", url),
            ("REDIS_ENABLED", "true".to_owned()),
            // A debug build on a busy machine can take longer than the 50 ms default; an
            // instance whose breaker opens may then serve its in-process entries (the
            // documented `CACHE_FALLBACK_TTL` bound), which is not what these tests check.
            ("REDIS_TIMEOUT_MS", "2000".to_owned()),
            ("REDIS_CONNECT_TIMEOUT_MS", "5000".to_owned()),
            ("RUST_LOG", "warn".to_owned()),
            ("JWT_SECRET", super::TEST_JWT_SECRET.to_owned()),
        ];
        base.extend(fleet.redis.env());
        for i in 0..n {
            let mut env = base.clone();
            for (name, value) in extra(i) {
                env.retain(|(n, _)| *n != name);
                env.push((name, value));
            }
            let instance = Instance::start(i, &fleet.dir, &env);
            fleet.instances.push(instance);
        }
        fleet
    }

    /// Each instance's `/cache/stats`, for failure messages.
    pub fn stats(&self) -> String {
        self.instances
            .iter()
            .map(|i| format!("instance {}: {}", i.index, i.admin_get("/cache/stats").text))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.instances.clear();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The command line of one process: only the variables given (every inherited `REDIS_*`,
/// `CACHE_*`, rate-limit and server variable removed), run in `dir`.
fn command(dir: &Path, log: &Path, port: u16, env: &[(&'static str, String)]) -> Command {
    // Killed with the test binary, even by SIGKILL: no example process outlives a test.
    let mut cmd = integration_tests::tied_command(env!("CARGO_BIN_EXE_example-crud-api"));
    let ours: HashSet<&str> = env.iter().map(|(n, _)| *n).collect();
    for (name, _) in std::env::vars_os() {
        let Some(name) = name.to_str() else { continue };
        let app_var = name.starts_with("REDIS_")
            || name.starts_with("CACHE_")
            || name.ends_with("RATE_LIMIT")
            || matches!(
                name,
                "DATABASE_URL"
                    | "HOST"
                    | "PORT"
                    | "SEED_USERS"
                    | "RUST_LOG"
                    | "JWT_SECRET"
                    | "TRUSTED_PROXIES"
                    | "RATE_LIMIT_ON_FAILURE"
            );
        if app_var && !ours.contains(name) {
            cmd.env_remove(name);
        }
    }
    let output = std::fs::File::create(log).expect("log file");
    let errors = output.try_clone().expect("log file");
    cmd.current_dir(dir)
        .envs(env.iter().map(|(n, v)| (n, v)))
        .env("HOST", "127.0.0.1")
        .env("PORT", port.to_string())
        .stdin(Stdio::null())
        .stdout(output)
        .stderr(errors);
    cmd
}

/// A currently free loopback port (taken again by the process, which may lose it to another:
/// [`Instance::start`] retries).
fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}
