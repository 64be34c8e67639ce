//! The API's contract as an OpenAPI 3.1 document, generated from the handlers'
//! `#[utoipa::path]` attributes and the bodies' `ToSchema` derives, and served at
//! `GET /openapi.json`.

use std::sync::LazyLock;

use axum::http::header;
use axum::response::IntoResponse;
use std::collections::BTreeMap;

use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, Response, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use super::{auth, cache, events, ops, tasks, users};
use crate::error::ErrorBody;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "example-crud-api",
        description = "An axum + sea-orm CRUD/filter API whose reads are cached with \
            `cache-runtime`. Every error answers `{\"error\": \"<message>\"}` (`ErrorBody`); \
            a message names the field or parameter at fault.",
    ),
    paths(
        users::list, users::create, users::filter, users::filter_paginated,
        users::get, users::update, users::delete,
        tasks::list, tasks::create, tasks::import, tasks::get, tasks::update, tasks::delete,
        events::stream,
        auth::login, auth::token, auth::logout, auth::logout_all, auth::sessions,
        auth::session_info, auth::update_session, auth::end_session,
        cache::stats, cache::clear, cache::invalidate_user,
        ops::health, ops::metrics, document,
    ),
    components(schemas(ErrorBody)),
    tags(
        (name = "users", description = "Users, their lists and the filter language (cached)"),
        (name = "tasks", description = "A user's tasks (cached), and their import under a distributed lock"),
        (name = "events", description = "Every completed write, as Server-Sent Events"),
        (name = "auth", description = "Logins, sessions and tokens"),
        (name = "cache", description = "Cache administration (admins only)"),
        (name = "ops", description = "Health, metrics and this document"),
    ),
    modifiers(&CommonResponses, &SecuritySchemes),
)]
struct ApiDoc;

/// The API's OpenAPI 3.1 document, as served at `GET /openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// This document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    operation_id = "openapi",
    tag = "ops",
    responses(
        (status = 200, description = "The OpenAPI 3.1 document of this API", body = serde_json::Value),
    ),
)]
pub(crate) async fn document() -> impl IntoResponse {
    // Built once: the document is a constant of the binary.
    static JSON: LazyLock<String> = LazyLock::new(|| {
        openapi().to_json().unwrap_or_else(|e| {
            format!(r#"{{"error": "cannot render the OpenAPI document: {e}"}}"#)
        })
    });
    ([(header::CONTENT_TYPE, "application/json")], JSON.as_str())
}

/// Adds the answers every operation may give to every operation, rather than to each
/// `#[utoipa::path]`: 500 (a panic or a database error), 503 (the database is unreachable) for
/// the database's routes, 413/415 for a JSON body that is too large or not JSON, and the
/// rate limits' 429 and headers.
struct CommonResponses;

impl Modify for CommonResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ];
            for operation in operations.into_iter().flatten() {
                let login = operation
                    .operation_id
                    .as_deref()
                    .is_some_and(|id| id == "login" || id == "token");
                let responses = &mut operation.responses.responses;
                rate_limited(responses, login);
                let mut add = |status: &str, description: &str| {
                    responses
                        .entry(status.to_owned())
                        .or_insert_with(|| error_response(description).into());
                };
                if operation.request_body.is_some() {
                    add("413", "The body is larger than 2 MiB");
                    add("415", "The body is not `application/json`");
                }
                let database = operation
                    .tags
                    .iter()
                    .flatten()
                    .any(|tag| tag == "users" || tag == "tasks");
                if database {
                    add("503", "`database unavailable`: no connection could be had");
                    add(
                        "500",
                        "`internal database error`, or `internal error` after a panic (the \
                         details are logged, never sent)",
                    );
                } else {
                    add(
                        "500",
                        "`internal error` after a panic (the details are logged, never sent)",
                    );
                }
            }
        }
    }
}

/// A limited route's answers (API.md, "Rate limits"): the `RateLimit-Policy` and `RateLimit`
/// fields on its successes, 429 with `Retry-After` over the limit. The login routes are
/// always limited (`LOGIN_RATE_LIMIT`), the others when `API_RATE_LIMIT` is set.
fn rate_limited(responses: &mut BTreeMap<String, RefOr<Response>>, login: bool) {
    let text = |description: &str| {
        HeaderBuilder::new()
            .schema(ObjectBuilder::new().schema_type(Type::String))
            .description(Some(description))
            .build()
    };
    let policy = text("`\"<limiter>\";q=<limit>;w=<window seconds>` (`login` or `api`)");
    let state = text("`\"<limiter>\";r=<remaining>;t=<seconds until the quota is full again>`");
    for (status, response) in responses.iter_mut() {
        if let (true, RefOr::T(response)) = (status.starts_with('2'), response) {
            response
                .headers
                .insert("RateLimit-Policy".into(), policy.clone());
            response.headers.insert("RateLimit".into(), state.clone());
        }
    }
    let (description, when) = if login {
        (
            "Too many attempts from this client IP (`LOGIN_RATE_LIMIT`, default 5/60s)",
            "",
        )
    } else {
        (
            "Over `API_RATE_LIMIT` for this caller",
            " (only when `API_RATE_LIMIT` is set)",
        )
    };
    let mut response = error_response(&format!("{description}{when}"));
    let retry = HeaderBuilder::new()
        .schema(
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(1)),
        )
        .description(Some("Seconds to wait before the same request can succeed"))
        .build();
    response.headers.insert("Retry-After".into(), retry);
    response.headers.insert("RateLimit-Policy".into(), policy);
    response.headers.insert("RateLimit".into(), state);
    responses.insert("429".into(), response.into());
}

/// The four ways to send a credential (API.md): a session id in the `session_id` cookie, in
/// `Authorization: Session <id>` or in `X-Session-ID`, or a JWT in `Authorization: Bearer`.
/// Two different ones in one request answer 400.
struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{
            ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme,
        };
        let components = openapi.components.get_or_insert_with(Default::default);
        let schemes = [
            (
                "session_cookie",
                SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                    "session_id",
                    "The session id from `POST /auth/login` (`HttpOnly`, `SameSite=Lax`)",
                ))),
            ),
            (
                "session_authorization",
                SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                    "Authorization",
                    "`Session <id>`: the session id from `POST /auth/login`",
                ))),
            ),
            (
                "session_header",
                SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                    "X-Session-ID",
                    "The session id from `POST /auth/login`",
                ))),
            ),
            (
                "bearer",
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .bearer_format("JWT")
                        .description(Some("A token from `POST /auth/token` (HS256)"))
                        .build(),
                ),
            ),
        ];
        for (name, scheme) in schemes {
            components.add_security_scheme(name, scheme);
        }
    }
}

/// A response with an [`ErrorBody`].
fn error_response(description: &str) -> Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorBody")))
                .build(),
        )
        .build()
}
