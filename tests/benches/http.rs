//! HTTP benchmark: the example API, release build, on SQLite and on PostgreSQL, with Redis
//! caching on and with the cache disabled, driven by `wrk` over loopback.
//!
//! ```sh
//! apt-get install -y wrk     # if missing
//! cargo bench -p integration-tests --features bench --bench http
//! ```
//!
//! Builds `example-crud-api` with `cargo build --release`, seeds 10,000 users into a temporary
//! SQLite file and into a PostgreSQL database of its own (created on `BENCH_PG`, default
//! `postgres://postgres@127.0.0.1:5432`, and dropped afterwards), starts the API as a separate
//! process on a free port for each database and cache setting, and runs `wrk` against it:
//! GET /users/{random id}, GET /users?limit=100, POST /users/filter-paginated with a fixed body,
//! two 90% read / 10% write mixes, and a name search (filter-paginated with `contains`, 30
//! distinct bodies); and cached GET by id with and without `API_RATE_LIMIT` (a token bucket
//! checked on Redis for every request). Redis is a `redis-server` the harness starts.
//!
//! Then the L1 rows ([`l1_rows`]): GET by id and the two mixes on SQLite with Redis caching,
//! the in-process L1 off and on (`CACHE_L1=true`), on one instance and on three behind one
//! wrk, beside the HTTP floor: the same route in a bare axum app answering a fixed row
//! (`tests/src/bin/http_floor.rs`, built in release too). Writes
//! `tests/benches/results/http.md` and `http.svg`. `BENCH_QUICK=1` makes a short, rougher run.

#![allow(clippy::print_stdout, reason = "a benchmark reports on stdout")]

mod support;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use integration_tests::{RedisServer, spawn_tied, tied_command};
use serde_json::Value;
use support::{
    Bar, Chart, Panel, Row, Spread, Table, children_ticks, machine_ticks, nanos, proc_ticks, rate,
    ratio,
};

/// wrk's threads (`-t`).
const THREADS: u32 = 2;
/// Users seeded (ids 1..=USERS in a fresh database).
const USERS: u32 = 10_000;
/// The fixed body of the filter-paginated workload: active users of 30 and over, by name.
const FILTER: &str = concat!(
    r#"{"conditions":[{"field":"age","op":"gte","value":30},"#,
    r#"{"field":"is_active","op":"eq","value":true}],"#,
    r#""order_by":[{"field":"name","direction":"asc"}],"skip":0,"limit":20}"#
);
/// The Python stack's cached GET /users/{id} on this machine (from the issue), req/s.
const PYTHON_CACHED_GET: (f64, f64) = (1_000.0, 1_750.0);

/// Lua shared by every script: a per-thread random seed, the requests the workloads combine
/// (`FILTER` and `USERS` are substituted), and a machine-readable summary.
const LUA_COMMON: &str = r#"
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("thread_no", threads)
end
function init(args)
  math.randomseed(os.time() * 1000 + (thread_no or 0))
end
local json = {["Content-Type"] = "application/json"}
function random_id() return math.random(1, USERS) end
function get_user(id) return wrk.format("GET", "/users/" .. id) end
function list() return wrk.format("GET", "/users?limit=100") end
function filter() return wrk.format("POST", "/users/filter-paginated", json, 'FILTER') end
function put_age(id)
  local body = string.format('{"age":%d}', math.random(18, 90))
  return wrk.format("PUT", "/users/" .. id, json, body)
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH {"requests":%d,"duration_us":%d,"non2xx":%d,"socket_errors":%d,' ..
    '"p50_us":%d,"p99_us":%d}\n',
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"#;

/// One workload: a name, the path wrk is pointed at, and the Lua that makes its requests.
struct Workload {
    name: &'static str,
    slug: &'static str,
    path: &'static str,
    lua: &'static str,
    /// Lua for the warm-up, when it differs (GET by id walks every id, so the cache is full).
    warm: Option<&'static str>,
}

const WORKLOADS: [Workload; 6] = [
    Workload {
        name: "GET /users/{random id}",
        slug: "get_by_id",
        path: "/users/1",
        lua: "function request() return get_user(random_id()) end",
        warm: Some(
            "local n = 0
function request()
  n = n + 1
  return get_user((n * THREADS + (thread_no or 0)) % USERS + 1)
end",
        ),
    },
    Workload {
        name: "GET /users?limit=100",
        slug: "list",
        path: "/users?limit=100",
        lua: "function request() return list() end",
        warm: None,
    },
    Workload {
        name: "POST /users/filter-paginated",
        slug: "filter_paginated",
        path: "/users/filter-paginated",
        lua: "function request() return filter() end",
        warm: None,
    },
    Workload {
        name: "90/10 mix, reads over the 3 above",
        slug: "mix",
        path: "/",
        lua: "function request()
  local r = math.random()
  if r < 0.1 then return put_age(random_id())
  elseif r < 0.4 then return get_user(random_id())
  elseif r < 0.7 then return list()
  else return filter() end
end",
        warm: None,
    },
    Workload {
        name: "90/10 mix, reads by id",
        slug: "mix_by_id",
        path: "/",
        lua: "function request()
  if math.random() < 0.1 then return put_age(random_id()) end
  return get_user(random_id())
end",
        warm: None,
    },
    // A costlier filter than `FILTER`, and not one fixed body: what a search box sends.
    // `contains` is a case-insensitive substring test, so the database scans every row for the
    // count and for the page; 10 terms x 3 pages = 30 distinct bodies (30 cache keys).
    Workload {
        name: "name search: contains + count",
        slug: "search",
        path: "/users/filter-paginated",
        lua: r#"local terms = {"lace", "turing", "ada", "grace", "knuth", "hopper", "lamp", "dijk",
  "bar", "shan"}
function request()
  local body = string.format(
    '{"conditions":[{"field":"name","op":"contains","value":"%s"}],' ..
    '"order_by":[{"field":"created_at","direction":"desc"}],"skip":%d,"limit":20}',
    terms[math.random(#terms)], 20 * math.random(0, 2))
  return wrk.format("POST", "/users/filter-paginated", json, body)
end"#,
        warm: None,
    },
];

/// A workload's Lua (or its warm-up's) with the shared functions, written to `dir`.
fn script(dir: &Path, name: &str, lua: &str) -> PathBuf {
    let common = LUA_COMMON
        .replace("FILTER", FILTER)
        .replace("USERS", &USERS.to_string());
    let lua = lua
        .replace("THREADS", &THREADS.to_string())
        .replace("USERS", &USERS.to_string());
    let path = dir.join(name);
    std::fs::write(&path, format!("{common}\n{lua}\n")).expect("write a wrk script");
    path
}

#[derive(Debug, Clone, Copy)]
struct Settings {
    warmup: Duration,
    duration: Duration,
    rounds: usize,
    connections: u32,
    threads: u32,
}

fn settings() -> Settings {
    let quick = std::env::var_os("BENCH_QUICK").is_some_and(|v| v != "0");
    Settings {
        warmup: Duration::from_secs(if quick { 2 } else { 3 }),
        duration: Duration::from_secs(if quick { 1 } else { 3 }),
        rounds: if quick { 1 } else { 3 },
        connections: 64,
        threads: THREADS,
    }
}

/// What one wrk run reported.
#[derive(Debug, Clone, Copy)]
struct Run {
    rps: f64,
    p50_us: f64,
    p99_us: f64,
}

/// Runs wrk once; panics when more than 1% of the answers were not 2xx/3xx or sockets failed.
fn wrk(settings: &Settings, base: &str, w: &Workload, script: &Path, dur: Duration) -> Run {
    let out = Command::new("wrk")
        .arg(format!("-t{}", settings.threads))
        .arg(format!("-c{}", settings.connections))
        .arg(format!("-d{}s", dur.as_secs()))
        .arg("-s")
        .arg(script)
        .arg(format!("{base}{}", w.path))
        .output()
        .expect("cannot run wrk: install it with `apt-get install -y wrk`");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let json = stdout
        .lines()
        .find_map(|l| l.strip_prefix("BENCH "))
        .unwrap_or_else(|| {
            panic!(
                "wrk printed no summary for {}:\n{stdout}\n{}",
                w.name,
                String::from_utf8_lossy(&out.stderr)
            )
        });
    let v: Value = serde_json::from_str(json).expect("wrk summary is JSON");
    let n = |k: &str| v[k].as_f64().unwrap_or(0.0);
    let bad = n("non2xx") + n("socket_errors");
    assert!(
        n("requests") > 0.0 && bad <= n("requests") / 100.0,
        "{}: {} of {} requests failed (non-2xx/3xx: {}, socket errors: {})",
        w.name,
        bad,
        n("requests"),
        n("non2xx"),
        n("socket_errors")
    );
    Run {
        rps: n("requests") / (n("duration_us") / 1e6),
        p50_us: n("p50_us"),
        p99_us: n("p99_us"),
    }
}

/// Builds the example API in release mode and returns its executable.
fn build_api() -> PathBuf {
    build_release(&["-p", "example-crud-api"], "example-crud-api")
}

/// Builds the HTTP floor (`tests/src/bin/http_floor.rs`) in release mode.
fn build_floor() -> PathBuf {
    build_release(
        &[
            "-p",
            "integration-tests",
            "--features",
            "bench",
            "--bin",
            "http_floor",
        ],
        "http_floor",
    )
}

/// `cargo build --release <args>`; returns the executable of the binary target `name`.
fn build_release(args: &[&str], name: &str) -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let command = format!("cargo build --release {}", args.join(" "));
    println!("building {name} ({command})...");
    let mut cmd = Command::new(cargo);
    // Not the variables cargo set for this bench's own run: build scripts that watch them
    // (ring's watches CARGO_MANIFEST_DIR, CARGO_PKG_NAME, OUT_DIR, ...) would see them change,
    // and rebuild here and again at the next `cargo bench`.
    for (name, _) in std::env::vars_os() {
        let Some(name) = name.to_str() else { continue };
        if name.starts_with("CARGO_PKG_")
            || matches!(
                name,
                "CARGO_MANIFEST_DIR"
                    | "CARGO_MANIFEST_PATH"
                    | "CARGO_MANIFEST_LINKS"
                    | "CARGO_CRATE_NAME"
                    | "CARGO_BIN_NAME"
                    | "CARGO_PRIMARY_PACKAGE"
                    | "CARGO_TARGET_TMPDIR"
                    | "CARGO_RUSTC_CURRENT_DIR"
                    | "OUT_DIR"
            )
        {
            cmd.env_remove(name);
        }
    }
    let out = cmd
        .arg("build")
        .arg("--release")
        .args(args)
        .arg("--message-format=json-render-diagnostics")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stderr(Stdio::inherit())
        .output()
        .expect("cannot run cargo");
    assert!(out.status.success(), "{command} failed");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|m| m["target"]["name"] == name)
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .unwrap_or_else(|| panic!("cargo reported no {name} executable"))
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// A blocking `GET` over a fresh connection: (status, body).
fn http_get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    http_get_with(port, path, "")
}

/// [`http_get`] with extra header lines (each ending in `\r\n`).
fn http_get_with(port: u16, path: &str, headers: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{headers}\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    Ok((status, body))
}

/// The API's token secret here, so that the bench can read `/cache/stats` as an admin.
const JWT_SECRET: &str = "the http bench's secret, 32 bytes or more";

/// The example API running as a child process; killed on drop.
struct Api {
    child: Child,
    port: u16,
}

impl Api {
    fn start(
        binary: &Path,
        dir: &Path,
        database_url: &str,
        redis: Option<&str>,
        extra: &[(&str, &str)],
    ) -> Self {
        let port = free_port();
        // Killed by the kernel if the bench dies without dropping it.
        let mut cmd = tied_command(binary);
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("DATABASE_URL", database_url)
            .env("HOST", "127.0.0.1")
            .env("PORT", port.to_string())
            .env("SEED_USERS", USERS.to_string())
            .env("RUST_LOG", "warn")
            .env("JWT_SECRET", JWT_SECRET)
            .envs(extra.iter().copied());
        match redis {
            Some(url) => cmd.env("REDIS_ENABLED", "true").env("REDIS_URL", url),
            // Off entirely, single flight included: the API as if nothing were annotated.
            None => cmd.env("CACHE_ENABLED", "false"),
        };
        cmd.current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        let child = spawn_tied(cmd).expect("cannot start example-crud-api");
        let mut api = Self { child, port };
        wait_ready(&mut api.child, port, "example-crud-api");
        for id in [1, USERS] {
            let (status, _) = http_get(port, &format!("/users/{id}")).expect("GET a user");
            assert_eq!(status, 200, "user {id} was seeded");
        }
        if redis.is_some() {
            let mode = api.stats()["mode"].clone();
            if extra.iter().any(|(k, _)| *k == "CACHE_L1") {
                // The two-level cache may report its mode under another name.
                assert!(
                    mode != "memory" && mode != "disabled",
                    "mode {mode} with Redis"
                );
            } else {
                assert_eq!(mode, "redis", "the API caches in Redis");
            }
        }
        api
    }

    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn stats(&self) -> Value {
        let jwt =
            cache_runtime::session::Jwt::hs256(JWT_SECRET.as_bytes(), Duration::from_secs(60))
                .expect("a valid secret");
        let (token, _) = jwt.issue("0", "bench", "admin").expect("a token");
        let auth = format!("Authorization: Bearer {token}\r\n");
        let (_, body) = http_get_with(self.port, "/cache/stats", &auth).expect("GET /cache/stats");
        serde_json::from_str(&body).expect("stats are JSON")
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Api {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Waits until `child` answers `GET /health` with a 200 on `port`.
fn wait_ready(child: &mut Child, port: u16, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        if let Ok((200, _)) = http_get(port, "/health") {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{name} exited with {status} before answering");
        }
        assert!(Instant::now() < deadline, "{name} did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The HTTP floor (`tests/src/bin/http_floor.rs`) running as a child process; killed on drop.
struct Floor {
    child: Child,
    port: u16,
}

impl Floor {
    /// Starts the floor answering `row` to every `GET /users/{id}`.
    fn start(binary: &Path, row: &str) -> Self {
        let port = free_port();
        let mut cmd = tied_command(binary);
        cmd.arg("--port")
            .arg(port.to_string())
            .arg("--body")
            .arg(row)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        let child = spawn_tied(cmd).expect("cannot start http_floor");
        let mut floor = Self { child, port };
        wait_ready(&mut floor.child, port, "http_floor");
        let (status, body) = http_get(port, "/users/1").expect("GET /users/1 of the floor");
        assert_eq!(
            (status, body.as_str()),
            (200, row),
            "the floor answers the row"
        );
        floor
    }
}

impl Drop for Floor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A PostgreSQL database created for the run and dropped afterwards.
struct PgDatabase {
    server: String,
    name: String,
}

impl PgDatabase {
    fn create(suffix: &str) -> Self {
        let server = std::env::var("BENCH_PG")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned());
        let db = Self {
            server,
            name: format!("cache_bench_{}_{suffix}", std::process::id()),
        };
        for sql in [
            format!("DROP DATABASE IF EXISTS {}", db.name),
            format!("CREATE DATABASE {}", db.name),
        ] {
            db.psql(&sql).unwrap_or_else(|e| panic!("{e}"));
        }
        db
    }

    fn url(&self) -> String {
        format!("{}/{}", self.server, self.name)
    }

    fn psql(&self, sql: &str) -> Result<(), String> {
        let out = Command::new("psql")
            .arg(format!("{}/postgres", self.server))
            .args(["-v", "ON_ERROR_STOP=1", "-q", "-c", sql])
            .output()
            .map_err(|e| format!("cannot run psql (install postgresql-client): {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "psql `{sql}` failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        if let Err(e) = self.psql(&sql) {
            eprintln!("warning: {e}");
        }
    }
}

/// CPU ticks of every `postgres` process, by pid (backends come and go).
fn postgres_ticks() -> HashMap<u32, u64> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            std::fs::read_to_string(e.path().join("comm")).is_ok_and(|c| c.trim() == "postgres")
        })
        .filter_map(|e| {
            let pid = e.file_name().to_str()?.parse().ok()?;
            Some((
                pid,
                support::ticks(&std::fs::read_to_string(e.path().join("stat")).ok()?),
            ))
        })
        .collect()
}

/// Cores used during a run by the API, wrk, Redis, PostgreSQL, and anything else.
#[derive(Debug, Clone, Copy, Default)]
struct Cpu([f64; 5]);

/// Snapshot of the CPU counters of the processes sharing the machine.
struct CpuMeter {
    /// The API's processes (or the floor's).
    api: Vec<u32>,
    redis: Option<u32>,
    at: Instant,
    /// API, wrk, Redis, the whole machine (busy), the whole machine (stolen).
    ticks: [u64; 5],
    postgres: HashMap<u32, u64>,
}

impl CpuMeter {
    fn start(api: &[u32], redis: Option<u32>) -> Self {
        Self {
            api: api.to_vec(),
            redis,
            at: Instant::now(),
            ticks: Self::ticks(api, redis),
            postgres: postgres_ticks(),
        }
    }

    fn ticks(api: &[u32], redis: Option<u32>) -> [u64; 5] {
        let (busy, stolen) = machine_ticks();
        [
            api.iter().copied().map(proc_ticks).sum(),
            children_ticks(),
            redis.map_or(0, proc_ticks),
            busy,
            stolen,
        ]
    }

    /// Processes that exited during the run (e.g. autovacuum workers) count as "other", and so
    /// does CPU time the hypervisor stole.
    fn stop(self) -> Cpu {
        let now = Self::ticks(&self.api, self.redis);
        let postgres: u64 = postgres_ticks()
            .into_iter()
            .map(|(pid, t)| t.saturating_sub(self.postgres.get(&pid).copied().unwrap_or(0)))
            .sum();
        // USER_HZ is 100 on Linux.
        let secs = self.at.elapsed().as_secs_f64();
        let cores = |ticks: u64| ticks as f64 / 100.0 / secs;
        let delta = |i: usize| cores(now[i].saturating_sub(self.ticks[i]));
        let ours = [delta(0), delta(1), delta(2), cores(postgres)];
        let other = (delta(3) - ours.iter().sum::<f64>()).max(0.0) + delta(4);
        Cpu([ours[0], ours[1], ours[2], ours[3], other])
    }
}

/// The measurements of one workload on one database with one cache setting.
struct Measured {
    db: &'static str,
    workload: usize,
    cached: bool,
    runs: Vec<Run>,
    cpu: Vec<Cpu>,
    /// Hits / (hits + misses) during the measured runs, with the cache on.
    hit_ratio: Option<f64>,
}

fn main() {
    let settings = settings();
    let started = Instant::now();
    let check = Command::new("wrk").arg("--version").output();
    assert!(
        check.is_ok(),
        "wrk not found: install it with `apt-get install -y wrk`"
    );
    let binary = build_api();
    let floor = build_floor();
    let workloads = &WORKLOADS;
    let dir = std::env::temp_dir().join(format!("cache-bench-http-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let scripts: Vec<(PathBuf, PathBuf)> = workloads
        .iter()
        .map(|w| {
            let run = script(&dir, &format!("{}.lua", w.slug), w.lua);
            let warm = w.warm.map_or_else(
                || run.clone(),
                |lua| script(&dir, &format!("{}-warm.lua", w.slug), lua),
            );
            (run, warm)
        })
        .collect();
    let redis = RedisServer::start();
    // Each API instance gets a database of its own, so that writes through the uncached one
    // never leave the cached one serving rows it was not told about.
    let pg = [PgDatabase::create("on"), PgDatabase::create("off")];
    let sqlite = |name: &str| format!("sqlite://{}?mode=rwc", dir.join(name).display());
    let databases = [
        ("SQLite", [sqlite("on.db"), sqlite("off.db")]),
        ("PostgreSQL", [pg[0].url(), pg[1].url()]),
    ];
    println!(
        "http benchmark: wrk -t{} -c{}, {:?} warm-up then {} x {:?} per workload and setting, \
         cache on and off alternating; {USERS} users",
        settings.threads, settings.connections, settings.warmup, settings.rounds, settings.duration
    );

    let mut results = Vec::new();
    for (db, [url_on, url_off]) in &databases {
        let _: () = redis.query(&["FLUSHALL"]);
        let mut apis = [
            Api::start(&binary, &dir, url_on, Some(&redis.url()), &[]),
            Api::start(&binary, &dir, url_off, None, &[]),
        ];
        for (i, (w, (script, warm))) in workloads.iter().zip(&scripts).enumerate() {
            for api in &apis {
                wrk(&settings, &api.base(), w, warm, settings.warmup);
            }
            let before = apis[0].stats();
            let mut measured: Vec<Measured> = [true, false]
                .into_iter()
                .map(|cached| Measured {
                    db,
                    workload: i,
                    cached,
                    runs: Vec::new(),
                    cpu: Vec::new(),
                    hit_ratio: None,
                })
                .collect();
            for round in 0..settings.rounds {
                // Alternate which setting goes first.
                for k in [round % 2, 1 - round % 2] {
                    let api = &apis[k];
                    let meter =
                        CpuMeter::start(&[api.child.id()], (k == 0).then(|| redis.pid()).flatten());
                    let run = wrk(&settings, &api.base(), w, script, settings.duration);
                    measured[k].cpu.push(meter.stop());
                    measured[k].runs.push(run);
                }
            }
            let after = apis[0].stats();
            let d = |k: &str| after[k].as_f64().unwrap_or(0.0) - before[k].as_f64().unwrap_or(0.0);
            // Every cached call ends as a hit, a load, or a follower of another call's load
            // (`misses` can count one call twice: a miss is looked up again before loading).
            let calls = d("hits") + d("loads") + d("coalesced");
            measured[0].hit_ratio = Some(d("hits") / calls.max(1.0));
            for m in &measured {
                println!(
                    "{db:<10} cache {:<3} {:<34} {:>8} req/s  p50 {:>9}  p99 {:>9}  ({:.0?})",
                    if m.cached { "on" } else { "off" },
                    w.name,
                    rate(m.rps().median),
                    nanos(m.p50().median * 1e3),
                    nanos(m.p99().median * 1e3),
                    started.elapsed()
                );
            }
            results.extend(measured);
        }
        for api in &mut apis {
            api.stop();
        }
    }
    let limited = api_limit_cost(
        &settings,
        &binary,
        &dir,
        &databases[0].1[0],
        &redis,
        &scripts[0],
    );
    let l1 = l1_rows(&settings, &binary, &floor, &dir, &scripts, started);
    drop(pg);
    let _ = std::fs::remove_dir_all(&dir);

    let report = Report {
        workloads,
        results,
        limited,
        l1,
    };
    let markdown = report.markdown(&settings);
    println!("\n{markdown}");
    let out = support::results_dir();
    std::fs::write(out.join("http.md"), &markdown).expect("write http.md");
    report.chart().write_svg(&out.join("http.svg"));
    println!(
        "wrote {} and http.svg in {:.0?}",
        out.join("http.md").display(),
        started.elapsed()
    );
}

/// Rows measured over several wrk runs: their spreads.
trait Runs {
    fn runs(&self) -> &[Run];
    fn rps(&self) -> Spread {
        Spread::of(self.runs().iter().map(|r| r.rps))
    }
    fn p50(&self) -> Spread {
        Spread::of(self.runs().iter().map(|r| r.p50_us))
    }
    fn p99(&self) -> Spread {
        Spread::of(self.runs().iter().map(|r| r.p99_us))
    }
}

impl Runs for L1Measured {
    fn runs(&self) -> &[Run] {
        &self.runs
    }
}

impl Runs for Measured {
    fn runs(&self) -> &[Run] {
        &self.runs
    }
}

struct Report<'a> {
    workloads: &'a [Workload],
    results: Vec<Measured>,
    /// Cached GET by id on SQLite with `API_RATE_LIMIT` on, then off, round by round.
    limited: Vec<(Run, Run)>,
    /// The L1 rows (see [`l1_rows`]).
    l1: L1Rows,
}

/// The API limit's price: cached GET by id (SQLite, Redis) from two processes on the same
/// database and Redis, one with `API_RATE_LIMIT` (a token bucket no run reaches: a million
/// per second) and one without, alternating. Every wrk connection comes from 127.0.0.1: one
/// partition, the hottest key a limit can have.
fn api_limit_cost(
    settings: &Settings,
    binary: &Path,
    dir: &Path,
    database_url: &str,
    redis: &RedisServer,
    (script, warm): &(PathBuf, PathBuf),
) -> Vec<(Run, Run)> {
    let limit = [("API_RATE_LIMIT", "1000000/1s")];
    let mut apis = [
        Api::start(binary, dir, database_url, Some(&redis.url()), &limit),
        Api::start(binary, dir, database_url, Some(&redis.url()), &[]),
    ];
    let (status, _) = http_get(apis[0].port, "/users/1").expect("GET a user");
    assert_eq!(status, 200);
    let w = &WORKLOADS[0];
    for api in &apis {
        wrk(settings, &api.base(), w, warm, settings.warmup);
    }
    let mut runs = Vec::new();
    for round in 0..settings.rounds {
        let mut pair = [None, None];
        for k in [round % 2, 1 - round % 2] {
            pair[k] = Some(wrk(settings, &apis[k].base(), w, script, settings.duration));
        }
        let [Some(on), Some(off)] = pair else {
            unreachable!("both ran")
        };
        println!(
            "SQLite     API limit on {} req/s, off {} req/s",
            rate(on.rps),
            rate(off.rps)
        );
        runs.push((on, off));
    }
    let stats = apis[0].stats();
    let api = &stats["rate_limits"][1];
    assert_eq!(api["name"], "api", "{stats}");
    assert_eq!(api["limited"], 0, "no run reaches the limit: {stats}");
    for api in &mut apis {
        api.stop();
    }
    runs
}

/// One setup of the L1 rows: the HTTP floor, or the API on SQLite with Redis caching and the
/// L1 off or on, as one instance or several sharing one SQLite file and one Redis.
struct Setup {
    name: &'static str,
    /// `None`: the HTTP floor; otherwise whether `CACHE_L1=true`.
    l1: Option<bool>,
    instances: usize,
}

/// The L1 rows' setups, in the order of their table; an L1-on setup follows its L1-off one.
const SETUPS: [Setup; 5] = [
    Setup {
        name: "HTTP floor (bare axum)",
        l1: None,
        instances: 1,
    },
    Setup {
        name: "Redis, L1 off",
        l1: Some(false),
        instances: 1,
    },
    Setup {
        name: "Redis + L1",
        l1: Some(true),
        instances: 1,
    },
    Setup {
        name: "Redis, L1 off",
        l1: Some(false),
        instances: 3,
    },
    Setup {
        name: "Redis + L1",
        l1: Some(true),
        instances: 3,
    },
];

/// The L1 rows' workloads (indices into [`WORKLOADS`]): GET by id and the two 90/10 mixes.
const L1_WORKLOADS: [usize; 3] = [0, 3, 4];

/// The user whose row the HTTP floor answers (a typical size: 140 bytes).
const FLOOR_ROW_ID: u32 = 5_000;

/// Appended to a workload's Lua for several instances: wrk runs one thread per instance and
/// `setup` points each thread's connections at its instance (`thread.addr`).
const SPREAD: &str = r#"
local ports = {PORTS}
function setup(thread)
  threads = threads + 1
  thread:set("thread_no", threads)
  thread.addr = wrk.lookup("127.0.0.1", ports[(threads - 1) % #ports + 1])[1]
end"#;

impl Setup {
    /// wrk's threads and connections for this setup: the run's for one instance; for several,
    /// a thread per instance and the connections split evenly (wrk gives each thread
    /// connections / threads).
    fn load(&self, settings: &Settings) -> Settings {
        if self.instances == 1 {
            return *settings;
        }
        let threads = self.instances as u32;
        Settings {
            threads,
            connections: settings.connections / threads * threads,
            ..*settings
        }
    }

    fn label(&self) -> String {
        match self.l1 {
            None => self.name.to_owned(),
            Some(_) if self.instances == 1 => format!("{}, 1 instance", self.name),
            Some(_) => format!("{}, {} instances", self.name, self.instances),
        }
    }
}

/// A setup's processes: the floor, or the API instances and their Redis.
enum Target {
    Floor(Floor),
    Apis {
        apis: Vec<Api>,
        redis: Box<RedisServer>,
    },
}

impl Target {
    fn pids(&self) -> Vec<u32> {
        match self {
            Self::Floor(floor) => vec![floor.child.id()],
            Self::Apis { apis, .. } => apis.iter().map(|a| a.child.id()).collect(),
        }
    }

    fn redis_pid(&self) -> Option<u32> {
        match self {
            Self::Floor(_) => None,
            Self::Apis { redis, .. } => redis.pid(),
        }
    }

    fn ports(&self) -> Vec<u16> {
        match self {
            Self::Floor(floor) => vec![floor.port],
            Self::Apis { apis, .. } => apis.iter().map(|a| a.port).collect(),
        }
    }
}

/// What [`l1_rows`] measured, and the size of the floor's row.
struct L1Rows {
    measured: Vec<L1Measured>,
    row_bytes: usize,
}

/// The measurements of one workload in one setup of the L1 rows.
struct L1Measured {
    setup: usize,
    workload: usize,
    runs: Vec<Run>,
    cpu: Vec<Cpu>,
}

/// The L1 rows: GET by id and the 90/10 mixes on SQLite with Redis caching, L1 off and on,
/// on one instance and on three, and GET by id on the HTTP floor. Every setup has a SQLite
/// file and a `redis-server` of its own (three instances share theirs), so that no setup's
/// writes reach another's processes, and all stay up while each round runs every setup once,
/// in an order that rotates from round to round.
fn l1_rows(
    settings: &Settings,
    api: &Path,
    floor: &Path,
    dir: &Path,
    scripts: &[(PathBuf, PathBuf)],
    started: Instant,
) -> L1Rows {
    let mut targets: Vec<Option<Target>> = SETUPS
        .iter()
        .enumerate()
        .map(|(i, setup)| {
            let l1 = setup.l1?;
            let redis = RedisServer::start();
            let url = format!(
                "sqlite://{}?mode=rwc",
                dir.join(format!("l1-{i}.db")).display()
            );
            let extra: &[(&str, &str)] = if l1 { &[("CACHE_L1", "true")] } else { &[] };
            // One after the other: the first seeds the file, the others find the users.
            let apis = (0..setup.instances)
                .map(|_| Api::start(api, dir, &url, Some(&redis.url()), extra))
                .collect();
            Some(Target::Apis {
                apis,
                redis: Box::new(redis),
            })
        })
        .collect();
    let Some(Target::Apis { apis, .. }) = &targets[1] else {
        unreachable!("setup 1 is the API")
    };
    let (status, row) =
        http_get(apis[0].port, &format!("/users/{FLOOR_ROW_ID}")).expect("GET a user");
    assert_eq!(status, 200, "{row}");
    targets[0] = Some(Target::Floor(Floor::start(floor, &row)));
    let targets: Vec<Target> = targets.into_iter().map(|t| t.expect("started")).collect();

    let mut measured = Vec::new();
    for &wi in &L1_WORKLOADS {
        let w = &WORKLOADS[wi];
        // The floor only answers GET /users/{id}.
        let active: Vec<usize> = (0..SETUPS.len())
            .filter(|&s| wi == 0 || SETUPS[s].l1.is_some())
            .collect();
        // Per setup: base URL, load, (script, warm-up script).
        let plans: Vec<(String, Settings, (PathBuf, PathBuf))> = active
            .iter()
            .map(|&s| {
                let ports = targets[s].ports();
                let base = format!("http://127.0.0.1:{}", ports[0]);
                let load = SETUPS[s].load(settings);
                let paths = if ports.len() == 1 {
                    scripts[wi].clone()
                } else {
                    let ports = ports
                        .iter()
                        .map(|p| format!("\"{p}\""))
                        .collect::<Vec<_>>()
                        .join(", ");
                    let spread = SPREAD.replace("PORTS", &ports);
                    // Every thread walks every id in the warm-up, so that each instance's L1
                    // holds them all.
                    let warm = w.warm.unwrap_or(w.lua).replace("THREADS", "1");
                    (
                        script(
                            dir,
                            &format!("l1-{s}-{}.lua", w.slug),
                            &format!("{}\n{spread}", w.lua),
                        ),
                        script(
                            dir,
                            &format!("l1-{s}-{}-warm.lua", w.slug),
                            &format!("{warm}\n{spread}"),
                        ),
                    )
                };
                (base, load, paths)
            })
            .collect();
        // The mixes follow GET by id on the same processes, whose caches are warm by then.
        let warmup = if wi == 0 {
            settings.warmup
        } else {
            settings.warmup.min(Duration::from_secs(1))
        };
        for (base, load, (_, warm)) in &plans {
            wrk(load, base, w, warm, warmup);
        }
        let mut rows: Vec<L1Measured> = active
            .iter()
            .map(|&setup| L1Measured {
                setup,
                workload: wi,
                runs: Vec::new(),
                cpu: Vec::new(),
            })
            .collect();
        for round in 0..settings.rounds {
            for k in 0..active.len() {
                let k = (k + round) % active.len();
                let (base, load, (run, _)) = &plans[k];
                let target = &targets[active[k]];
                let meter = CpuMeter::start(&target.pids(), target.redis_pid());
                let result = wrk(load, base, w, run, settings.duration);
                rows[k].cpu.push(meter.stop());
                rows[k].runs.push(result);
            }
        }
        for m in &rows {
            println!(
                "SQLite     {:<34} {:<34} {:>8} req/s  p50 {:>9}  p99 {:>9}  ({:.0?})",
                SETUPS[m.setup].label(),
                w.name,
                rate(m.rps().median),
                nanos(m.p50().median * 1e3),
                nanos(m.p99().median * 1e3),
                started.elapsed()
            );
        }
        measured.extend(rows);
    }
    drop(targets);
    L1Rows {
        measured,
        row_bytes: row.len(),
    }
}

impl Report<'_> {
    fn find(&self, db: &str, workload: usize, cached: bool) -> &Measured {
        self.results
            .iter()
            .find(|m| m.db == db && m.workload == workload && m.cached == cached)
            .expect("measured")
    }

    /// Cached / uncached requests per second, round by round (the two ran back to back).
    fn speedup(&self, db: &str, workload: usize) -> Spread {
        let (on, off) = (
            self.find(db, workload, true),
            self.find(db, workload, false),
        );
        Spread::of(on.runs.iter().zip(&off.runs).map(|(a, b)| a.rps / b.rps))
    }

    fn markdown(&self, settings: &Settings) -> String {
        let mut md = format!(
            "## HTTP benchmark\n\n`cargo bench -p integration-tests --features bench --bench http` \
             on {}. The example API (release build, one process, tokio's default runtime), \
             `wrk -t{} -c{}`, the database, and Redis all share the machine's cores over \
             loopback. {USERS} seeded users (3 tasks each). Per workload: {:?} of warm-up, then \
             {} runs of {:?}; req/s is the median run with (min–max), latencies are the median \
             run's. Cache on: `REDIS_ENABLED=true` (a local `redis-server`); off: \
             `CACHE_ENABLED=false` (the functions run as if unannotated: no store, and no \
             single flight sharing one load among identical concurrent requests). Hit ratio: cached calls answered from \
             Redis (the rest loaded from the database, or waited for another call's load) during \
             the measured runs. Every run had under 1% non-2xx answers (checked).\n\n",
            support::machine(),
            settings.threads,
            settings.connections,
            settings.warmup,
            settings.rounds,
            settings.duration,
        );
        let mut table = Table::new(&[
            "database",
            "workload",
            "cache",
            "req/s",
            "p50",
            "p99",
            "on / off",
            "hit ratio",
            "cores: API / wrk / Redis / PG / other",
        ]);
        for db in ["SQLite", "PostgreSQL"] {
            for (i, w) in self.workloads.iter().enumerate() {
                for cached in [true, false] {
                    let m = self.find(db, i, cached);
                    table.row(vec![
                        db.to_owned(),
                        w.name.to_owned(),
                        if cached { "on" } else { "off" }.to_owned(),
                        m.rps().show(rate),
                        nanos(m.p50().median * 1e3),
                        nanos(m.p99().median * 1e3),
                        if cached {
                            self.speedup(db, i).show(ratio)
                        } else {
                            String::new()
                        },
                        m.hit_ratio
                            .map_or(String::new(), |h| format!("{:.0}%", h * 100.0)),
                        (0..5)
                            .map(|k| {
                                format!("{:.2}", Spread::of(m.cpu.iter().map(|c| c.0[k])).median)
                            })
                            .collect::<Vec<_>>()
                            .join(" / "),
                    ]);
                }
            }
        }
        md.push_str(&table.render());
        md.push_str(
            "\nThe mixes: 10% `PUT /users/{random id}` with a new age; the reads are either \
             spread evenly over the three read workloads, or all `GET /users/{random id}`. \
             Each write invalidates what the example's `#[invalidates]` names (the user's key \
             and the list and filter prefixes), so list and filter entries rarely survive long \
             enough to be hit in the first mix. The name search sends one of 30 bodies \
             (10 search terms, 3 pages): `{\"field\":\"name\",\"op\":\"contains\",..}` with \
             the total count, ordered by `created_at`; the fixed body of the other \
             filter-paginated workload selects active users of 30 and over, by name, 20 a \
             page. \"cores\": CPU time per second of the run \
             (median run), from `/proc`; \"other\" is everything else on the machine plus \
             time the hypervisor stole.\n\n",
        );
        md.push_str(&self.l1_markdown(settings));
        md.push_str("\n### Against the goals\n\n");
        let mut goals = Table::new(&["goal", "measured", "met"]);
        for db in ["SQLite", "PostgreSQL"] {
            let get = self.find(db, 0, true).rps().median;
            goals.row(vec![
                format!("{db}: cached GET by id >= 20x Python's 1,000–1,750 req/s"),
                format!(
                    "{} req/s = {} of 1,750, {} of 1,000",
                    rate(get),
                    ratio(get / PYTHON_CACHED_GET.1),
                    ratio(get / PYTHON_CACHED_GET.0)
                ),
                yes(
                    get >= 20.0 * PYTHON_CACHED_GET.1,
                    get >= 20.0 * PYTHON_CACHED_GET.0,
                ),
            ]);
        }
        let filter = self.speedup("PostgreSQL", 2).median;
        goals.row(vec![
            "PostgreSQL: cached filter-paginated >= 10x uncached".to_owned(),
            ratio(filter),
            yes(filter >= 10.0, filter >= 10.0),
        ]);
        for db in ["SQLite", "PostgreSQL"] {
            for mix in [3, 4] {
                let s = self.speedup(db, mix).median;
                goals.row(vec![
                    format!("{db}: {} clearly faster cached", self.workloads[mix].name),
                    format!("{} cached / uncached", ratio(s)),
                    yes(s >= 1.2, s > 1.0),
                ]);
            }
        }
        let cost = Spread::of(self.limited.iter().map(|(on, off)| on.rps / off.rps));
        let (on, off) = (
            Spread::of(self.limited.iter().map(|(on, _)| on.rps)),
            Spread::of(self.limited.iter().map(|(_, off)| off.rps)),
        );
        goals.row(vec![
            "SQLite: cached GET by id with `API_RATE_LIMIT` on >= 0.85x off (one partition)"
                .to_owned(),
            format!(
                "{} ({} vs {} req/s)",
                cost.show(ratio),
                rate(on.median),
                rate(off.median)
            ),
            yes(cost.median >= 0.85, cost.median >= 0.8),
        ]);
        for setup in [2, 4] {
            let (floor, off) = (self.vs_floor(setup), self.vs_floor(setup - 1));
            let (on_rps, floor_rps) = (
                self.l1_find(setup, 0).rps().median,
                self.l1_find(0, 0).rps().median,
            );
            goals.row(vec![
                format!(
                    "SQLite, {}: cached GET by id with L1 >= 0.8x the HTTP floor",
                    instances(SETUPS[setup].instances)
                ),
                format!(
                    "{} ({} vs {} req/s); L1 off {}",
                    floor.show(ratio),
                    rate(on_rps),
                    rate(floor_rps),
                    ratio(off.median)
                ),
                yes(floor.median >= 0.8, floor.max >= 0.8),
            ]);
        }
        md.push_str(&goals.render());
        md.push_str(
            "\n\"partly\": the weaker reading holds (for the L1 goals: only in the best round).\n",
        );
        md
    }

    fn l1_find(&self, setup: usize, workload: usize) -> &L1Measured {
        self.l1
            .measured
            .iter()
            .find(|m| m.setup == setup && m.workload == workload)
            .expect("measured")
    }

    /// `a`'s requests per second over `b`'s, round by round (each round ran both).
    fn l1_ratio(&self, (a, wa): (usize, usize), (b, wb): (usize, usize)) -> Spread {
        let (a, b) = (self.l1_find(a, wa), self.l1_find(b, wb));
        Spread::of(a.runs.iter().zip(&b.runs).map(|(a, b)| a.rps / b.rps))
    }

    /// A setup's GET by id over the HTTP floor's.
    fn vs_floor(&self, setup: usize) -> Spread {
        self.l1_ratio((setup, 0), (0, 0))
    }

    /// The section on the L1 rows: what they ran, and their table.
    fn l1_markdown(&self, settings: &Settings) -> String {
        let spread = SETUPS[3].load(settings);
        let mut md = format!(
            "### The two-level cache (L1) beside the HTTP floor\n\n\
             GET by id and the two 90/10 mixes on SQLite with Redis caching, the L1 off \
             (`REDIS_ENABLED=true`) and on (`REDIS_ENABLED=true CACHE_L1=true`), on one \
             instance and on three instances of the API sharing one SQLite file and one Redis; \
             and GET by id on the HTTP floor: the same route in a bare axum app \
             (`tests/src/bin/http_floor.rs`, release build; axum 0.8 on `#[tokio::main]` as \
             the API is, so multi-threaded with a worker per core) that parses the id and \
             answers a fixed row, the API's own answer for user {FLOOR_ROW_ID} ({} bytes), with \
             no cache, no database and no middleware. Each setup has a SQLite file and a \
             `redis-server` of its own, so that no setup's writes reach another's processes; \
             all setups stay up, and each round runs every setup once, in an order that \
             rotates from round to round. One instance: `wrk -t{} -c{}` as above. Three \
             instances, one load generator: a single wrk process, `wrk -t{} -c{}`, whose Lua \
             `setup` points each thread's connections at one instance (`thread.addr`), so \
             {} connections per instance; its req/s is the total over the three and its \
             p50 and p99 come from its one latency histogram of every request. \
             \"/ floor\" and \"L1 on / off\": ratios of the runs of the same round, median \
             (min–max). Warm-up: {:?} per setup for GET by id (every instance is sent every \
             id), {:?} for the mixes, which follow it on the same processes. \"cores\": as \
             above, the API's summed over its instances (the floor's process on its row).\n\n",
            self.l1.row_bytes,
            settings.threads,
            settings.connections,
            spread.threads,
            spread.connections,
            spread.connections / spread.threads,
            settings.warmup,
            settings.warmup.min(Duration::from_secs(1)),
        );
        let mut table = Table::new(&[
            "setup",
            "workload",
            "req/s",
            "p50",
            "p99",
            "/ floor",
            "L1 on / off",
            "cores: API / wrk / Redis / PG / other",
        ]);
        for &wi in &L1_WORKLOADS {
            for (s, setup) in SETUPS.iter().enumerate() {
                if wi != 0 && setup.l1.is_none() {
                    continue;
                }
                let m = self.l1_find(s, wi);
                table.row(vec![
                    setup.label(),
                    WORKLOADS[wi].name.to_owned(),
                    m.rps().show(rate),
                    nanos(m.p50().median * 1e3),
                    nanos(m.p99().median * 1e3),
                    if wi == 0 && s > 0 {
                        self.vs_floor(s).show(ratio)
                    } else {
                        String::new()
                    },
                    if setup.l1 == Some(true) {
                        self.l1_ratio((s, wi), (s - 1, wi)).show(ratio)
                    } else {
                        String::new()
                    },
                    (0..5)
                        .map(|k| format!("{:.2}", Spread::of(m.cpu.iter().map(|c| c.0[k])).median))
                        .collect::<Vec<_>>()
                        .join(" / "),
                ]);
            }
        }
        md.push_str(&table.render());
        md
    }

    /// The L1 rows of `instances` instances, with the floor's GET by id: L1 off (the Redis
    /// cache's color), L1 on, the floor.
    fn l1_panel(&self, instances: usize) -> Panel {
        Panel {
            title: format!(
                "SQLite, {}: Redis cache, L1 off and on, and the HTTP floor",
                self::instances(instances)
            ),
            axis: "requests per second, median run; whiskers min–max".to_owned(),
            reference: None,
            rows: L1_WORKLOADS
                .iter()
                .map(|&wi| Row {
                    label: WORKLOADS[wi].name.to_owned(),
                    bars: SETUPS
                        .iter()
                        .enumerate()
                        .filter(|(s, setup)| match setup.l1 {
                            None => wi == 0,
                            Some(_) => setup.instances == instances && *s > 0,
                        })
                        .map(|(s, setup)| {
                            let m = self.l1_find(s, wi);
                            let note = match setup.l1 {
                                Some(_) if wi == 0 => {
                                    format!(" · {} of floor", ratio(self.vs_floor(s).median))
                                }
                                Some(true) => format!(
                                    " · {} of L1 off",
                                    ratio(self.l1_ratio((s, wi), (s - 1, wi)).median)
                                ),
                                _ => String::new(),
                            };
                            Bar {
                                series: match setup.l1 {
                                    Some(false) => 1,
                                    Some(true) => 2,
                                    None => 3,
                                },
                                value: m.rps(),
                                label: format!("{}/s{note}", rate(m.rps().median)),
                            }
                        })
                        .collect(),
                })
                .collect(),
        }
    }

    fn chart(&self) -> Chart {
        let panel = |db: &str| Panel {
            title: format!("{db}: requests per second (wrk -c64, loopback)"),
            axis: "requests per second, median run; whiskers min–max".to_owned(),
            reference: None,
            rows: self
                .workloads
                .iter()
                .enumerate()
                .map(|(i, w)| Row {
                    label: w.name.to_owned(),
                    bars: [false, true]
                        .into_iter()
                        .map(|cached| {
                            let m = self.find(db, i, cached);
                            let speedup = if cached {
                                format!(" · {}", ratio(self.speedup(db, i).median))
                            } else {
                                String::new()
                            };
                            Bar {
                                series: usize::from(cached),
                                value: m.rps(),
                                label: format!("{}/s{speedup}", rate(m.rps().median)),
                            }
                        })
                        .collect(),
                })
                .collect(),
        };
        Chart {
            title: "example-crud-api over HTTP: cache off vs Redis cache on, L1, HTTP floor"
                .to_owned(),
            series: vec![
                "cache off".to_owned(),
                "Redis cache on".to_owned(),
                "Redis + L1 on".to_owned(),
                "HTTP floor (bare axum)".to_owned(),
            ],
            panels: vec![
                panel("SQLite"),
                panel("PostgreSQL"),
                self.l1_panel(1),
                self.l1_panel(3),
            ],
        }
    }
}

/// "one instance", "3 instances".
fn instances(n: usize) -> String {
    if n == 1 {
        "one instance".to_owned()
    } else {
        format!("{n} instances")
    }
}

/// "yes", "partly" (the weaker reading of the goal holds), or "no".
fn yes(strict: bool, loose: bool) -> String {
    match (strict, loose) {
        (true, _) => "yes",
        (false, true) => "partly",
        _ => "**no**",
    }
    .to_owned()
}
