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
//! checked on Redis for every request). Redis is a `redis-server` the harness starts. Writes
//! `tests/benches/results/http.md` and `http.svg`. `BENCH_QUICK=1` makes a short, rougher run.

#![allow(clippy::print_stdout, reason = "a benchmark reports on stdout")]

mod support;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use integration_tests::RedisServer;
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
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    println!("building example-crud-api (cargo build --release -p example-crud-api)...");
    let out = Command::new(cargo)
        .args(["build", "--release", "-p", "example-crud-api"])
        .arg("--message-format=json-render-diagnostics")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stderr(Stdio::inherit())
        .output()
        .expect("cannot run cargo");
    assert!(
        out.status.success(),
        "cargo build --release -p example-crud-api failed"
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|m| m["target"]["name"] == "example-crud-api")
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .expect("cargo reported no example-crud-api executable")
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
        let mut cmd = Command::new(binary);
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
        let child = cmd
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("cannot start example-crud-api");
        let mut api = Self { child, port };
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            if let Ok((200, _)) = http_get(port, "/health") {
                break;
            }
            if let Ok(Some(status)) = api.child.try_wait() {
                panic!("example-crud-api exited with {status} before answering");
            }
            assert!(Instant::now() < deadline, "example-crud-api did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        for id in [1, USERS] {
            let (status, _) = http_get(port, &format!("/users/{id}")).expect("GET a user");
            assert_eq!(status, 200, "user {id} was seeded");
        }
        if redis.is_some() {
            let mode = api.stats()["mode"].clone();
            assert_eq!(mode, "redis", "the API caches in Redis");
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
    api: u32,
    redis: Option<u32>,
    at: Instant,
    /// API, wrk, Redis, the whole machine (busy), the whole machine (stolen).
    ticks: [u64; 5],
    postgres: HashMap<u32, u64>,
}

impl CpuMeter {
    fn start(api: &Api, redis: Option<u32>) -> Self {
        Self {
            api: api.child.id(),
            redis,
            at: Instant::now(),
            ticks: Self::ticks(api.child.id(), redis),
            postgres: postgres_ticks(),
        }
    }

    fn ticks(api: u32, redis: Option<u32>) -> [u64; 5] {
        let (busy, stolen) = machine_ticks();
        [
            proc_ticks(api),
            children_ticks(),
            redis.map_or(0, proc_ticks),
            busy,
            stolen,
        ]
    }

    /// Processes that exited during the run (e.g. autovacuum workers) count as "other", and so
    /// does CPU time the hypervisor stole.
    fn stop(self) -> Cpu {
        let now = Self::ticks(self.api, self.redis);
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
                    let meter = CpuMeter::start(api, (k == 0).then(|| redis.pid()).flatten());
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
    drop(pg);
    let _ = std::fs::remove_dir_all(&dir);

    let report = Report {
        workloads,
        results,
        limited,
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

impl Measured {
    fn rps(&self) -> Spread {
        Spread::of(self.runs.iter().map(|r| r.rps))
    }
    fn p50(&self) -> Spread {
        Spread::of(self.runs.iter().map(|r| r.p50_us))
    }
    fn p99(&self) -> Spread {
        Spread::of(self.runs.iter().map(|r| r.p99_us))
    }
}

struct Report<'a> {
    workloads: &'a [Workload],
    results: Vec<Measured>,
    /// Cached GET by id on SQLite with `API_RATE_LIMIT` on, then off, round by round.
    limited: Vec<(Run, Run)>,
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
             time the hypervisor stole.\n\n\
             ### Against the goals\n\n",
        );
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
        md.push_str(&goals.render());
        md
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
            title: "example-crud-api over HTTP: cache off vs Redis cache on".to_owned(),
            series: vec!["cache off".to_owned(), "Redis cache on".to_owned()],
            panels: vec![panel("SQLite"), panel("PostgreSQL")],
        }
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
