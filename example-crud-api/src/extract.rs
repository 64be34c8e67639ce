//! Extractors wrapping axum's, so that every rejection answers `{"error": ..}` with a message
//! naming the field or parameter at fault.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, RawPathParams, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::Error;

/// A JSON body (`axum::Json`) whose rejections are [`Error`]s; also a JSON response.
///
/// Malformed JSON and wrong types or unknown fields are 422 (axum says 400 for syntax errors;
/// the API contract has one status for "the body is wrong").
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(json_rejection(&rejection)),
        }
    }
}

fn json_rejection(rejection: &JsonRejection) -> Error {
    let status = match rejection {
        JsonRejection::JsonDataError(_) | JsonRejection::JsonSyntaxError(_) => {
            StatusCode::UNPROCESSABLE_ENTITY
        }
        // Missing content type (415), body too large (413), ...: axum's status is right.
        other => other.status(),
    };
    Error::Rejected {
        status,
        message: rejection.body_text(),
    }
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// A query string (`axum::extract::Query`) whose rejections are 422 [`Error`]s.
#[derive(Debug, Clone, Copy, Default)]
pub struct Query<T>(pub T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Self(value)),
            Err(rejection) => Err(query_rejection(&rejection)),
        }
    }
}

fn query_rejection(rejection: &QueryRejection) -> Error {
    Error::Invalid(rejection.body_text())
}

/// The route's single integer path parameter (`/users/{id}`, `/cache/invalidate/user/{id}`).
/// A value that is not an `i32` is a 422 naming the parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Id(pub i32);

impl<S: Send + Sync> FromRequestParts<S> for Id {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let params = RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(|rejection| Error::Rejected {
                status: rejection.status(),
                message: rejection.body_text(),
            })?;
        let Some((name, value)) = params.iter().next() else {
            return Err(Error::Invalid("missing path parameter".to_owned()));
        };
        value.parse().map(Self).map_err(|_| {
            Error::Invalid(format!(
                "path parameter `{name}` must be an integer, got `{value}`"
            ))
        })
    }
}

/// The caller, who must be an admin (session or token): 401 without credentials, 403 for
/// anyone else.
#[derive(Debug, Clone)]
pub struct Admin(pub cache_runtime::axum::auth::Principal);

impl FromRequestParts<crate::AppState> for Admin {
    type Rejection = Error;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &crate::AppState,
    ) -> Result<Self, Self::Rejection> {
        let principal =
            cache_runtime::axum::auth::Principal::from_request_parts(parts, state).await?;
        principal.require_admin()?;
        Ok(Self(principal))
    }
}
