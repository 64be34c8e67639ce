//! The API's error type: every failure becomes `{"error": "<message>"}` with a status, a
//! panicking handler included ([`catch_panic_layer`]).

use std::any::Any;

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use sea_orm::{DbErr, SqlErr};
use serde::{Deserialize, Serialize};
use tower_http::catch_panic::CatchPanicLayer;
use utoipa::ToSchema;

/// The body of every error response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"error": "user 42 not found"}))]
pub struct ErrorBody {
    /// What went wrong, naming the field or parameter at fault.
    pub error: String,
}

/// Everything a handler or a service function can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// 404: the resource does not exist.
    #[error("{0}")]
    NotFound(String),
    /// 409: the write conflicts with existing data (a taken email).
    #[error("{0}")]
    Conflict(String),
    /// 422: the request is well-formed HTTP but its content is invalid.
    #[error("{0}")]
    Invalid(String),
    /// A request the extractors rejected, with the status they chose (e.g. 415).
    #[error("{message}")]
    Rejected {
        /// Status to answer with.
        status: StatusCode,
        /// What was wrong.
        message: String,
    },
    /// 400 / 401 / 403 / 503 from authentication (503 with `Retry-After`).
    #[error("{0}")]
    Auth(#[from] cache_runtime::axum::auth::AuthRejection),
    /// 503 with `Retry-After: 1`: a service the request needs is down (Redis, for a lock).
    #[error("{0}")]
    Unavailable(String),
    /// 500: something that should not fail did (no OS random source); logged, not returned.
    #[error("{0}")]
    Internal(String),
    /// 503 when no connection could be had, else 500; details are logged, not returned.
    #[error("database error: {0}")]
    Database(#[from] DbErr),
}

impl Error {
    /// A 404 naming the missing resource: `user 42 not found`.
    pub fn not_found(what: &str, id: i32) -> Self {
        Self::NotFound(format!("{what} {id} not found"))
    }

    /// Maps a unique-constraint violation to 409 with `message`; anything else stays a
    /// database error.
    pub(crate) fn conflict_on_unique(err: DbErr, message: impl FnOnce() -> String) -> Self {
        match err.sql_err() {
            Some(SqlErr::UniqueConstraintViolation(_)) => Self::Conflict(message()),
            _ => Self::Database(err),
        }
    }

    /// The HTTP status this error answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Rejected { status, .. } => *status,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Auth(rejection) => rejection.status(),
            Self::Database(DbErr::ConnectionAcquire(_) | DbErr::Conn(_)) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::Database(_) | Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        if let Self::Auth(rejection) = self {
            // Same `{"error": ..}` shape, plus `Retry-After` on 503.
            return rejection.into_response();
        }
        let status = self.status();
        let message = match &self {
            Self::Database(err) => {
                // Log the cause; clients get a generic message, not SQL.
                tracing::error!(error = %err, "database error");
                if status == StatusCode::SERVICE_UNAVAILABLE {
                    "database unavailable".to_owned()
                } else {
                    "internal database error".to_owned()
                }
            }
            Self::Internal(cause) => {
                tracing::error!(cause, "internal error");
                "internal error".to_owned()
            }
            other => other.to_string(),
        };
        let body = Json(ErrorBody { error: message });
        if matches!(self, Self::Unavailable(_)) {
            return (status, [(axum::http::header::RETRY_AFTER, "1")], body).into_response();
        }
        (status, body).into_response()
    }
}

/// What [`catch_panic_layer`] answers a panic with.
pub type PanicHandler = fn(Box<dyn Any + Send + 'static>) -> Response;

/// The last line of defence, outermost in [`app`](crate::app): a handler or middleware that
/// panics answers 500 `{"error": "internal error"}` (see [`panic_response`]) instead of
/// dropping the connection.
pub fn catch_panic_layer() -> CatchPanicLayer<PanicHandler> {
    CatchPanicLayer::custom(panic_response as PanicHandler)
}

/// The response to a panic: 500 `{"error": "internal error"}`. The panic's message is logged,
/// never sent: it may hold anything (a query, a value of another user).
pub fn panic_response(payload: Box<dyn Any + Send + 'static>) -> Response {
    let message = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(not a string)");
    tracing::error!(panic = message, "request handler panicked");
    let body = ErrorBody {
        error: "internal error".to_owned(),
    };
    (StatusCode::INTERNAL_SERVER_ERROR, Json(body)).into_response()
}
