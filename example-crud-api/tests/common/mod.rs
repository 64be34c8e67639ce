//! Test harness: an app on a throw-away database (SQLite file or PostgreSQL database) with a
//! cache of the chosen kind, driven through `app(..).oneshot(..)`; and ([`instances`]) real
//! example processes sharing a database and a Redis, driven over HTTP.
#![allow(
    dead_code,
    unreachable_pub,
    reason = "each test binary uses a different part"
)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use cache_runtime::{Cache, Fallback};
use example_crud_api::{AppState, app, connect_db};
use http_body_util::BodyExt;
use integration_tests::{RedisCluster, RedisServer};
use sea_orm::{ConnectionTrait, Database};
use serde_json::Value;
use tower::ServiceExt;

pub mod instances;

/// The server every PostgreSQL test database is created on (`TEST_POSTGRES_URL` overrides).
pub fn postgres_admin_url() -> String {
    std::env::var("TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// Which database backs the app.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

/// Which cache the app uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A real redis-server of its own.
    Redis,
    /// A Redis Cluster of its own (3 masters, no replicas).
    Cluster,
    /// Redis disabled: the in-process store.
    Memory,
    /// No cache at all (`Fallback::None`).
    None,
}

impl Kind {
    /// The `mode` `/cache/stats` and `/health` report.
    pub fn mode(self) -> &'static str {
        match self {
            Self::Redis | Self::Cluster => "redis",
            Self::Memory => "memory",
            Self::None => "disabled",
        }
    }
}

/// A unique name part: pid, time and a counter.
fn unique() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "{}_{}_{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Removes the test database when dropped, also when the test panics.
#[derive(Debug)]
pub enum DbGuard {
    Sqlite(PathBuf),
    Postgres(String),
}

impl DbGuard {
    /// A fresh empty database; returns its URL and its guard.
    pub async fn create(db: Db) -> (String, Self) {
        match db {
            Db::Sqlite => {
                let path = std::env::temp_dir().join(format!("example-crud-api-{}.db", unique()));
                let url = format!("sqlite://{}?mode=rwc", path.display());
                (url, Self::Sqlite(path))
            }
            Db::Postgres => {
                let admin_url = postgres_admin_url();
                let name = format!("t_{}", unique());
                let admin = Database::connect(&admin_url)
                    .await
                    .unwrap_or_else(|e| panic!("cannot reach PostgreSQL at {admin_url}: {e}"));
                admin
                    .execute_unprepared(&format!("CREATE DATABASE {name}"))
                    .await
                    .expect("create test database");
                admin.close().await.ok();
                let base = admin_url
                    .rsplit_once('/')
                    .map_or(admin_url.as_str(), |(base, _)| base);
                (format!("{base}/{name}"), Self::Postgres(name))
            }
        }
    }
}

impl Drop for DbGuard {
    fn drop(&mut self) {
        match self {
            Self::Sqlite(path) => {
                for suffix in ["", "-wal", "-shm", "-journal"] {
                    let mut file = path.clone().into_os_string();
                    file.push(suffix);
                    let _ = std::fs::remove_file(file);
                }
            }
            Self::Postgres(name) => {
                // Drop runs inside the test's runtime: use a thread with its own.
                let name = name.clone();
                let dropped = std::thread::spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()?;
                    rt.block_on(async {
                        let admin = Database::connect(postgres_admin_url()).await?;
                        admin
                            .execute_unprepared(&format!(
                                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                            ))
                            .await?;
                        admin.close().await
                    })
                    .map_err(std::io::Error::other)
                })
                .join();
                if !matches!(dropped, Ok(Ok(()))) {
                    eprintln!("could not drop test database: {dropped:?}");
                }
            }
        }
    }
}

/// An app under test.
#[derive(Debug)]
pub struct TestApp {
    pub router: Router,
    pub state: AppState,
    pub kind: Kind,
    pub db_kind: Db,
    /// The app's own redis-server (for [`Kind::Redis`]).
    pub redis: Option<RedisServer>,
    /// The app's own Redis Cluster (for [`Kind::Cluster`]).
    pub cluster: Option<RedisCluster>,
    // Last: the pool closes before the database is dropped.
    _guard: DbGuard,
}

/// A response: status, body (JSON when it parses, else `Value::Null`) and headers.
#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub body: Value,
    pub text: String,
    pub headers: axum::http::HeaderMap,
}

/// The `JWT_SECRET` of the processes [`instances::Fleet`] starts.
pub const TEST_JWT_SECRET: &str = "a test secret of at least thirty-two bytes";

/// A token signer with [`TEST_JWT_SECRET`].
pub fn test_jwt() -> cache_runtime::session::Jwt {
    cache_runtime::session::Jwt::hs256(TEST_JWT_SECRET.as_bytes(), Duration::from_secs(3600))
        .expect("a valid secret")
}

/// A token for an admin (user id 0, who need not exist: tokens are checked, not looked up).
pub fn admin_token(jwt: &cache_runtime::session::Jwt) -> String {
    jwt.issue("0", "test admin", "admin").expect("a token").0
}

impl Resp {
    /// The `error` message of an error body (panics if the body has another shape).
    pub fn error(&self) -> &str {
        let obj = self
            .body
            .as_object()
            .unwrap_or_else(|| panic!("not an error body: {}", self.text));
        assert_eq!(obj.len(), 1, "error body has extra fields: {}", self.text);
        obj["error"]
            .as_str()
            .unwrap_or_else(|| panic!("`error` is not a string: {}", self.text))
    }
}

/// Builds a cache for the app: `Kind::Redis` needs its server (`Kind::Cluster`: see
/// [`cluster_cache`]).
pub async fn cache_for(kind: Kind, redis: Option<&RedisServer>) -> Cache {
    let builder = match kind {
        Kind::Redis => Cache::builder().redis_url(redis.expect("redis server").url()),
        Kind::Cluster => panic!("a cluster cache needs its cluster: use `cluster_cache`"),
        Kind::Memory => Cache::builder(),
        Kind::None => Cache::builder().fallback(Fallback::None),
    };
    builder.build().await.expect("cache")
}

/// A cache on `cluster`, seeded with every node (as `REDIS_CLUSTER_NODES` would be).
pub async fn cluster_cache(cluster: &RedisCluster) -> Cache {
    Cache::builder()
        .redis_cluster(cluster.urls())
        .build()
        .await
        .expect("cluster cache")
}

impl TestApp {
    pub async fn new(db: Db, kind: Kind) -> Self {
        let redis = (kind == Kind::Redis).then(RedisServer::start);
        let cluster = (kind == Kind::Cluster).then(RedisCluster::start);
        let cache = match &cluster {
            Some(cluster) => cluster_cache(cluster).await,
            None => cache_for(kind, redis.as_ref()).await,
        };
        let (url, guard) = DbGuard::create(db).await;
        let conn = connect_db(&url).await.expect("connect and migrate");
        let mut app = Self::with(AppState::new(conn, cache), kind, db, redis, guard);
        app.cluster = cluster;
        app
    }

    /// An app around an existing state (e.g. a second app sharing a database or a Redis).
    pub fn with(
        state: AppState,
        kind: Kind,
        db_kind: Db,
        redis: Option<RedisServer>,
        guard: DbGuard,
    ) -> Self {
        Self {
            router: app(state.clone()),
            state,
            kind,
            db_kind,
            redis,
            cluster: None,
            _guard: guard,
        }
    }

    pub fn redis(&self) -> &RedisServer {
        self.redis.as_ref().expect("this app has no redis-server")
    }

    pub fn redis_mut(&mut self) -> &mut RedisServer {
        self.redis.as_mut().expect("this app has no redis-server")
    }

    pub fn cluster(&self) -> &RedisCluster {
        self.cluster
            .as_ref()
            .expect("this app has no Redis Cluster")
    }

    pub fn cluster_mut(&mut self) -> &mut RedisCluster {
        self.cluster
            .as_mut()
            .expect("this app has no Redis Cluster")
    }

    pub async fn request(&self, method: Method, path: &str, body: Option<(&str, &str)>) -> Resp {
        send(&self.router, method, path, body).await
    }

    /// A request with extra headers.
    pub async fn request_with(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Resp {
        let body = body.map(|b| b.to_string());
        let body = body.as_deref().map(|b| ("application/json", b));
        send_with(&self.router, method, path, body, headers).await
    }

    /// The `Authorization` value of an admin token this app accepts.
    pub fn admin_bearer(&self) -> String {
        let jwt = self.state.auth.jwt().expect("tokens enabled");
        format!("Bearer {}", admin_token(jwt))
    }

    /// A request as the admin.
    pub async fn admin_request(&self, method: Method, path: &str, body: Option<Value>) -> Resp {
        let bearer = self.admin_bearer();
        self.request_with(method, path, body, &[("authorization", &bearer)])
            .await
    }

    pub async fn admin_get(&self, path: &str) -> Resp {
        self.admin_request(Method::GET, path, None).await
    }

    pub async fn admin_post(&self, path: &str, body: Value) -> Resp {
        self.admin_request(Method::POST, path, Some(body)).await
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.request(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Resp {
        let body = body.to_string();
        self.request(Method::POST, path, Some(("application/json", &body)))
            .await
    }

    pub async fn put(&self, path: &str, body: Value) -> Resp {
        let body = body.to_string();
        self.request(Method::PUT, path, Some(("application/json", &body)))
            .await
    }

    pub async fn delete(&self, path: &str) -> Resp {
        self.request(Method::DELETE, path, None).await
    }

    /// Creates a user and returns it (asserting 201).
    pub async fn user(&self, name: &str, email: &str, age: Option<i64>) -> Value {
        let r = self
            .post(
                "/users",
                serde_json::json!({"name": name, "email": email, "age": age}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        r.body
    }

    /// Creates a task and returns it (asserting 201).
    pub async fn task(&self, user_id: i64, title: &str) -> Value {
        let r = self
            .post(
                &format!("/users/{user_id}/tasks"),
                serde_json::json!({ "title": title }),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        r.body
    }

    /// `/cache/stats` as JSON.
    pub async fn stats(&self) -> Value {
        let r = self.admin_get("/cache/stats").await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        r.body
    }

    /// Total cache hits so far.
    pub async fn hits(&self) -> u64 {
        self.stats().await["hits"].as_u64().expect("hits")
    }

    /// Polls `/cache/stats` until `mode` is `mode`; panics after `timeout`.
    pub async fn wait_for_mode(&self, mode: &str, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let stats = self.stats().await;
            if stats["mode"] == mode {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "mode still {} after {timeout:?}",
                stats["mode"]
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Sends one request through `router`.
pub async fn send(router: &Router, method: Method, path: &str, body: Option<(&str, &str)>) -> Resp {
    send_with(router, method, path, body, &[]).await
}

/// [`send`] with extra headers.
pub async fn send_with(
    router: &Router,
    method: Method,
    path: &str,
    body: Option<(&str, &str)>,
    headers: &[(&str, &str)],
) -> Resp {
    let mut builder = Request::builder().method(method).uri(path);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let body = match body {
        Some((content_type, body)) => {
            if !content_type.is_empty() {
                builder = builder.header(header::CONTENT_TYPE, content_type);
            }
            Body::from(body.to_owned())
        }
        None => Body::empty(),
    };
    let response = router
        .clone()
        .oneshot(builder.body(body).expect("request"))
        .await
        .expect("infallible");
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Resp {
        status,
        body,
        text,
        headers,
    }
}

/// The `id` of a JSON row.
pub fn id(v: &Value) -> i64 {
    v["id"].as_i64().unwrap_or_else(|| panic!("no id in {v}"))
}

/// The `id`s of a JSON list of rows.
pub fn ids(v: &Value) -> Vec<i64> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(id)
        .collect()
}
