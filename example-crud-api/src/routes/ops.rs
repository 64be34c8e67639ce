//! `/health` and `/metrics`.

use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use sea_orm::DbBackend;
use serde::Serialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::extract::Json;

/// Bound on the database ping, so that a hung database still gets a prompt 503.
const PING_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, Serialize)]
struct DatabaseHealth {
    status: &'static str,
    backend: &'static str,
    latency_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// 200 when the database answers, 503 when it does not. The cache's state is reported but never
/// makes the service unhealthy: requests work without it.
pub(crate) async fn health(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let (database, cache) = tokio::join!(ping(&state), state.cache.health());
    let (status, word) = if database.error.is_none() {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
    };
    let body = json!({ "status": word, "database": database, "cache": cache });
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

pub(crate) async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(&state.cache),
    )
}
