//! An axum + sea-orm CRUD/filter API whose service layer is cached with `#[cached]` and
//! `#[invalidates]` from `cache-runtime`. The HTTP contract is in `API.md`.
//!
//! - [`entities`]: the `users` and `tasks` tables;
//! - [`service`]: every database access, annotated with its cache keys;
//! - routes (private): thin handlers;
//! - [`filter`]: the filter language of `/users/filter`;
//! - [`error`] and [`extract`]: every failure answers `{"error": "<message>"}`;
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

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use cache_runtime::Cache;
use sea_orm::DatabaseConnection;

mod db;
pub mod entities;
pub mod error;
pub mod extract;
pub mod filter;
pub mod metrics;
mod migration;
mod routes;
pub mod seed;
pub mod service;

pub use db::{DEFAULT_DATABASE_URL, connect_db};

use crate::metrics::Metrics;

/// What every handler gets: the database, the cache, the metrics registry. Cheap to clone.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct AppState {
    /// Connection pool.
    pub db: DatabaseConnection,
    /// The cache the service layer's annotated functions use for this app's requests.
    pub cache: Cache,
    /// Request and cache metrics.
    pub metrics: Metrics,
}

impl AppState {
    /// A state with a fresh metrics registry.
    pub fn new(db: DatabaseConnection, cache: Cache) -> Self {
        Self {
            db,
            cache,
            metrics: Metrics::new(),
        }
    }
}

/// The API's router.
///
/// Each request runs inside [`cache_runtime::scope`] with `state.cache`, so the annotated
/// service functions use this app's cache even when a process runs several apps (as the tests
/// do) or has none installed globally.
pub fn app(state: AppState) -> Router {
    routes::router()
        .layer(middleware::from_fn_with_state(
            state.metrics.clone(),
            metrics::track,
        ))
        .layer(middleware::from_fn_with_state(
            state.cache.clone(),
            scope_cache,
        ))
        .with_state(state)
}

async fn scope_cache(State(cache): State<Cache>, request: Request, next: Next) -> Response {
    cache_runtime::scope(cache, next.run(request)).await
}
