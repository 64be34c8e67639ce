//! HTTP handlers: extract, call the service layer, answer. No cache calls here, except in the
//! cache administration endpoints, whose job it is.

use axum::Router;
use axum::http::{Method, Uri};
use axum::routing::{delete, get, post};

use crate::AppState;
use crate::error::Error;

mod auth;
mod cache;
mod events;
pub(crate) mod openapi;
mod ops;
mod tasks;
mod users;

/// Every route of the API, each documented in [`openapi`] (`GET /openapi.json`), under
/// `state`'s rate limits: the login routes under the login limit, the others under the API
/// limit (only matched routes: an unknown path answers 404 without counting).
pub(crate) fn router(state: &AppState) -> Router<AppState> {
    let mut login = Router::new()
        .route("/auth/login", post(auth::login))
        .route("/auth/token", post(auth::token));
    if let Some(layer) = state.limits.login_layer() {
        login = login.route_layer(layer);
    }
    let mut api = Router::new()
        .route("/users", get(users::list).post(users::create))
        .route("/users/filter", post(users::filter))
        .route("/users/filter-paginated", post(users::filter_paginated))
        .route(
            "/users/{id}",
            get(users::get).put(users::update).delete(users::delete),
        )
        .route("/users/{id}/tasks", get(tasks::list).post(tasks::create))
        .route("/users/{id}/tasks/import", post(tasks::import))
        .route(
            "/tasks/{id}",
            get(tasks::get).put(tasks::update).delete(tasks::delete),
        )
        .route("/auth/logout", post(auth::logout))
        .route("/auth/logout-all", post(auth::logout_all))
        .route("/auth/sessions", get(auth::sessions))
        .route("/cache/session/info", get(auth::session_info))
        .route("/cache/session/update", post(auth::update_session))
        .route("/cache/session", delete(auth::end_session))
        .route("/cache/stats", get(cache::stats))
        .route("/cache/clear", post(cache::clear))
        .route("/cache/invalidate/user/{id}", post(cache::invalidate_user))
        .route("/events", get(events::stream))
        .route("/health", get(ops::health))
        .route("/metrics", get(ops::metrics))
        .route("/openapi.json", get(openapi::document));
    if let Some(layer) = state.limits.api_layer(&state.auth) {
        api = api.route_layer(layer);
    }
    api.merge(login)
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
}

async fn no_route(method: Method, uri: Uri) -> Error {
    Error::NotFound(format!("no route for {method} {}", uri.path()))
}

async fn method_not_allowed(method: Method, uri: Uri) -> Error {
    Error::Rejected {
        status: axum::http::StatusCode::METHOD_NOT_ALLOWED,
        message: format!("method {method} not allowed on {}", uri.path()),
    }
}
