//! `/health` and `/metrics`.

use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use sea_orm::DbBackend;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::AppState;
use crate::extract::Json;

/// Bound on the database ping, so that a hung database still gets a prompt 503.
const PING_TIMEOUT: Duration = Duration::from_secs(2);

/// The body of `GET /health`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct HealthReport {
    /// `ok`, or `unavailable` when the database does not answer.
    #[schema(example = "ok")]
    status: &'static str,
    /// The database's answer to a ping.
    database: DatabaseHealth,
    /// The cache's `mode` (`redis`, `memory` or `disabled`) and, with Redis enabled, whether
    /// Redis answers. Never makes the service unhealthy.
    cache: Value,
}

/// The database part of the health report.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DatabaseHealth {
    /// `ok` or `error`.
    status: &'static str,
    /// `sqlite` or `postgres`.
    backend: &'static str,
    /// Ping round trip, when it answered.
    latency_ms: Option<f64>,
    /// Why the ping failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// 200 when the database answers, 503 when it does not. The cache's state is reported but never
/// makes the service unhealthy: requests work without it.
#[utoipa::path(
    get,
    path = "/health",
    operation_id = "health",
    tag = "ops",
    responses(
        (status = 200, description = "The database answers", body = HealthReport),
        (
            status = 503,
            description = "The database does not answer (never because of Redis)",
            body = HealthReport
        ),
    )
)]
pub(crate) async fn health(State(state): State<AppState>) -> (StatusCode, Json<HealthReport>) {
    let (database, cache) = tokio::join!(ping(&state), state.cache.health());
    let (status, word) = if database.error.is_none() {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
    };
    let body = HealthReport {
        status: word,
        database,
        cache: serde_json::to_value(cache).unwrap_or_default(),
    };
    (status, Json(body))
}

async fn ping(state: &AppState) -> DatabaseHealth {
    let backend = match state.db.get_database_backend() {
        DbBackend::Sqlite => "sqlite",
        DbBackend::Postgres => "postgres",
        _ => "other",
    };
    let started = Instant::now();
    let error = match tokio::time::timeout(PING_TIMEOUT, state.db.ping()).await {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e.to_string()),
        Err(_) => Some(format!("no answer within {PING_TIMEOUT:?}")),
    };
    DatabaseHealth {
        status: if error.is_none() { "ok" } else { "error" },
        backend,
        latency_ms: error
            .is_none()
            .then(|| started.elapsed().as_secs_f64() * 1000.0),
        error,
    }
}

/// Request and cache metrics.
#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "metrics",
    tag = "ops",
    responses(
        (
            status = 200,
            description = "Prometheus text exposition",
            body = String,
            content_type = "text/plain; version=0.0.4"
        ),
    )
)]
pub(crate) async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(&state.cache, &state.limits),
    )
}
