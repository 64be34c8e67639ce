//! An axum + sea-orm CRUD/filter API whose service layer is cached with `#[cached]` and
//! `#[invalidates]` from `cache-runtime`. The HTTP contract is the OpenAPI 3.1 document the app
//! serves at `GET /openapi.json` (also [`openapi()`]), generated from the handlers.
//!
//! - [`entities`]: the `users` and `tasks` tables;
//! - [`service`]: every database access, annotated with its cache keys;
//! - routes (private): thin handlers;
//! - [`filter`]: the filter language of `/users/filter`;
//! - [`JsonText`]: a value serialized once, cached and answered as is;
//! - [`error`] and [`extract`]: every failure answers `{"error": "<message>"}`, a panic
//!   included;
//! - [`events`]: the change feed of `GET /events` (Server-Sent Events over pub/sub);
//! - [`metrics`]: Prometheus text at `/metrics`;
//! - [`seed`]: demo data.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use example_crud_api::{AppState, app, connect_db};
//!
//! let db = connect_db("sqlite://data/app.db?mode=rwc").await?;
//! let cache = cache_runtime::Cache::from_env().await?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8000").await?;
//! axum::serve(listener, app(AppState::new(db, cache))).await?;
//! # Ok(())
//! # }
//! ```

use std::time::Instant;

use axum::Router;
use axum::extract::{FromRef, MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use cache_runtime::Cache;
use cache_runtime::axum::CacheLayer;
use cache_runtime::axum::auth::Auth;
use cache_runtime::lock::Locks;
use cache_runtime::pubsub::PubSub;
use cache_runtime::session::{Jwt, SessionConfig, SessionStore};
use sea_orm::DatabaseConnection;

mod db;
pub mod entities;
pub mod error;
pub mod events;
pub mod extract;
pub mod filter;
mod json_text;
pub mod metrics;
mod migration;
mod rate_limits;
mod routes;
pub mod seed;
pub mod service;

pub use db::{DEFAULT_DATABASE_URL, connect_db};
pub use error::catch_panic_layer;
pub use json_text::JsonText;
pub use rate_limits::{DEFAULT_LOGIN_LIMIT, RateLimits};
pub use routes::openapi::openapi;

use crate::events::Events;
use crate::metrics::Metrics;

/// What every handler gets: the database, the cache, sessions and tokens, the rate limits,
/// the metrics registry. Cheap to clone.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct AppState {
    /// Connection pool.
    pub db: DatabaseConnection,
    /// The cache the service layer's annotated functions use for this app's requests.
    pub cache: Cache,
    /// Sessions (on the cache's Redis client, or in process) and bearer tokens.
    pub auth: Auth,
    /// The login and API rate limits.
    pub limits: RateLimits,
    /// Request and cache metrics.
    pub metrics: Metrics,
    /// The change feed of `GET /events`.
    pub events: Events,
    /// Distributed locks (the task import's), on the cache's Redis client.
    pub locks: Locks,
}

impl AppState {
    /// A state with a fresh metrics registry; sessions with the default lifetimes, events and
    /// locks, all on the cache's Redis client (in process without one); tokens signed with a
    /// random per-process secret (see [`AppState::with_auth`] for configured ones); and no
    /// rate limits ([`AppState::with_rate_limits`]; the binary reads them from the
    /// environment).
    ///
    /// # Panics
    /// If the OS has no random source.
    pub fn new(db: DatabaseConnection, cache: Cache) -> Self {
        let sessions = SessionStore::for_cache(&cache, SessionConfig::default());
        let auth = Auth::new(sessions).with_jwt(random_jwt());
        Self {
            events: Events::new(PubSub::for_cache(&cache)),
            locks: Locks::for_cache(&cache),
            db,
            cache,
            auth,
            limits: RateLimits::default(),
            metrics: Metrics::new(),
        }
    }

    /// The same state with `limits` instead.
    #[must_use]
    pub fn with_rate_limits(mut self, limits: RateLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The same state with `auth` instead.
    #[must_use]
    pub fn with_auth(mut self, auth: Auth) -> Self {
        self.auth = auth;
        self
    }
}

/// A token signer with a random secret: tokens then die with the process and one instance's
/// are not valid at another. Set `JWT_SECRET` to share them.
pub fn random_jwt() -> Jwt {
    let secret = cache_runtime::session::SessionId::generate().expect("an OS random source");
    Jwt::hs256(
        secret.expose().as_bytes(),
        std::time::Duration::from_secs(3600),
    )
    .expect("64 bytes is a valid HS256 secret")
}

impl FromRef<AppState> for Auth {
    fn from_ref(state: &AppState) -> Self {
        state.auth.clone()
    }
}

impl FromRef<AppState> for DatabaseConnection {
    fn from_ref(state: &AppState) -> Self {
        state.db.clone()
    }
}

/// The API's router.
///
/// Each request runs inside [`cache_runtime::scope`] with `state.cache` ([`CacheLayer`]), so
/// the annotated service functions use this app's cache even when a process runs several apps
/// (as the tests do) or has none installed globally; and is counted and timed in
/// `state.metrics`. A panic
/// anywhere inside answers 500 `{"error": "internal error"}` ([`catch_panic_layer`],
/// outermost).
pub fn app(state: AppState) -> Router {
    let metrics = state.metrics.clone();
    routes::router(&state)
        .layer(middleware::from_fn_with_state(metrics, record_metrics))
        .layer(CacheLayer::new(state.cache.clone()))
        .with_state(state)
        .layer(catch_panic_layer())
}

/// Counts and times the request, under its route template (`/users/{id}`), so that label
/// values stay few.
async fn record_metrics(State(metrics): State<Metrics>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let route = request.extensions().get::<MatchedPath>().cloned();
    let response = next.run(request).await;
    metrics.record_request(
        method.as_str(),
        route.as_ref().map_or("unmatched", MatchedPath::as_str),
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}
