//! The OpenAPI document at `GET /openapi.json`: a 3.1 document that covers every route of the
//! router, with its methods, and whose 4xx answers use the error schema.

mod common;

use std::collections::BTreeSet;

use axum::http::{Method, StatusCode};
use common::{Db, Kind, TestApp};
use serde_json::Value;

/// Every route of `routes::router()`, with its methods.
const ROUTES: &[(&str, &[&str])] = &[
    ("/users", &["get", "post"]),
    ("/users/filter", &["post"]),
    ("/users/filter-paginated", &["post"]),
    ("/users/{id}", &["get", "put", "delete"]),
    ("/users/{id}/tasks", &["get", "post"]),
    ("/users/{id}/tasks/import", &["post"]),
    ("/tasks/{id}", &["get", "put", "delete"]),
    ("/events", &["get"]),
    ("/auth/login", &["post"]),
    ("/auth/token", &["post"]),
    ("/auth/logout", &["post"]),
    ("/auth/logout-all", &["post"]),
    ("/auth/sessions", &["get"]),
    ("/cache/session/info", &["get"]),
    ("/cache/session/update", &["post"]),
    ("/cache/session", &["delete"]),
    ("/cache/stats", &["get"]),
    ("/cache/clear", &["post"]),
    ("/cache/invalidate/user/{id}", &["post"]),
    ("/health", &["get"]),
    ("/metrics", &["get"]),
    ("/openapi.json", &["get"]),
];

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

async fn document(app: &TestApp) -> Value {
    let r = app.get("/openapi.json").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(r.body.is_object(), "not JSON: {}", r.text);
    r.body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_covers_every_route() {
    let app = TestApp::new(Db::Sqlite, Kind::Memory).await;
    let doc = document(&app).await;
    let version = doc["openapi"].as_str().expect("openapi");
    assert!(version.starts_with("3.1"), "{version}");
    assert_eq!(doc["info"]["title"], "example-crud-api");

    let paths = doc["paths"].as_object().expect("paths");
    let documented: BTreeSet<&str> = paths.keys().map(String::as_str).collect();
    let routed: BTreeSet<&str> = ROUTES.iter().map(|(path, _)| *path).collect();
    assert_eq!(documented, routed);
    for (path, methods) in ROUTES {
        let item = &paths[*path];
        let have: BTreeSet<&str> = METHODS
            .into_iter()
            .filter(|m| item.get(*m).is_some())
            .collect();
        assert_eq!(have, methods.iter().copied().collect(), "{path}");
        for method in *methods {
            let operation = &item[*method];
            let tags = operation["tags"].as_array().expect("tags");
            assert!(!tags.is_empty(), "{method} {path} has no tag");
            let parameters = operation["parameters"].as_array();
            if path.contains("{id}") {
                let names: Vec<&str> = parameters
                    .expect("parameters")
                    .iter()
                    .filter(|p| p["in"] == "path")
                    .filter_map(|p| p["name"].as_str())
                    .collect();
                assert_eq!(names, ["id"], "{method} {path}");
            }
            let bodiless = [
                "/cache/invalidate/user/{id}",
                "/auth/logout",
                "/auth/logout-all",
            ];
            if matches!(*method, "post" | "put") && !bodiless.contains(path) {
                assert!(
                    operation["requestBody"]["content"]["application/json"]["schema"].is_object(),
                    "{method} {path} has no request body"
                );
            }
            let responses = operation["responses"].as_object().expect("responses");
            assert!(
                responses.keys().any(|status| status.starts_with('2')),
                "{method} {path} has no success response"
            );
            assert!(responses.contains_key("500"), "{method} {path}");
        }
    }
    let operation_ids: Vec<&str> = paths
        .values()
        .flat_map(|item| METHODS.into_iter().filter_map(|m| item.get(m)))
        .map(|operation| operation["operationId"].as_str().expect("operationId"))
        .collect();
    let unique: BTreeSet<&str> = operation_ids.iter().copied().collect();
    assert_eq!(unique.len(), operation_ids.len(), "{operation_ids:?}");
    // The list's query parameters.
    let list: Vec<&str> = paths["/users"]["get"]["parameters"]
        .as_array()
        .expect("parameters")
        .iter()
        .filter(|p| p["in"] == "query")
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(list, ["skip", "limit"]);
    let tags: BTreeSet<&str> = doc["tags"]
        .as_array()
        .expect("tags")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert_eq!(
        tags,
        BTreeSet::from(["auth", "cache", "events", "ops", "tasks", "users"])
    );
}

/// The list above is the router's: each of its routes and methods reaches a handler (not the
/// 404 or 405 fallback).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listed_routes_are_routed() {
    let app = TestApp::new(Db::Sqlite, Kind::Memory).await;
    for (path, methods) in ROUTES {
        let mut path = path.replace("{id}", "1");
        if path == "/events" {
            // An endless stream otherwise; a bad topic still reaches the handler.
            path.push_str("?topics=none");
        }
        for method in *methods {
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let r = app.request(method.clone(), &path, None).await;
            assert_ne!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
            if r.status == StatusCode::NOT_FOUND {
                assert!(!r.error().starts_with("no route"), "{method} {path}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_use_the_error_schema() {
    let app = TestApp::new(Db::Sqlite, Kind::Memory).await;
    let doc = document(&app).await;
    let error = &doc["components"]["schemas"]["ErrorBody"];
    assert_eq!(error["type"], "object", "{error}");
    assert_eq!(error["required"], serde_json::json!(["error"]));
    assert_eq!(error["properties"]["error"]["type"], "string");

    let mut client_errors = 0;
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("path item") {
            for (status, response) in operation["responses"].as_object().expect("responses") {
                if !status.starts_with('4') && status != "500" {
                    continue;
                }
                let schema = &response["content"]["application/json"]["schema"];
                assert_eq!(
                    schema["$ref"], "#/components/schemas/ErrorBody",
                    "{method} {path} {status}"
                );
                client_errors += usize::from(status.starts_with('4'));
            }
        }
    }
    assert!(client_errors > 20, "{client_errors} 4xx responses");
    // Every schema a response or a body refers to exists.
    let text = doc.to_string();
    let schemas = doc["components"]["schemas"].as_object().expect("schemas");
    for reference in text.split(r##""$ref":"#/components/schemas/"##).skip(1) {
        let name = reference.split('"').next().unwrap_or_default();
        assert!(schemas.contains_key(name), "dangling reference to {name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_describes_the_bodies() {
    let app = TestApp::new(Db::Sqlite, Kind::Memory).await;
    let doc = document(&app).await;
    let schemas = &doc["components"]["schemas"];
    // Timestamps are RFC 3339 strings.
    for model in ["User", "Task"] {
        let created_at = &schemas[model]["properties"]["created_at"];
        assert_eq!(created_at["type"], "string", "{model}: {created_at}");
        assert_eq!(created_at["format"], "date-time", "{model}: {created_at}");
    }
    // Only `age` may be null in a user update; neither task field may.
    let nullable = |schema: &Value, field: &str| {
        let property = &schema["properties"][field];
        assert!(property.is_object(), "no {field} in {schema}");
        property.to_string().contains(r#""null""#)
    };
    assert!(nullable(&schemas["UserPatch"], "age"));
    for field in ["name", "email", "is_active"] {
        assert!(!nullable(&schemas["UserPatch"], field), "UserPatch.{field}");
    }
    for field in ["title", "done"] {
        assert!(!nullable(&schemas["TaskPatch"], field), "TaskPatch.{field}");
    }
    // The filter language's enums.
    let ops: BTreeSet<&str> = schemas["Op"]["enum"]
        .as_array()
        .expect("Op enum")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(
        ops,
        BTreeSet::from(["eq", "ne", "gt", "gte", "lt", "lte", "contains", "in"])
    );
    // The document is what `openapi()` builds.
    let built = serde_json::to_value(example_crud_api::openapi()).expect("serialize");
    assert_eq!(built, doc);
    assert_eq!(
        app.request(Method::POST, "/openapi.json", None)
            .await
            .status,
        StatusCode::METHOD_NOT_ALLOWED
    );
}

/// The three ways to present a session (cookie, `Authorization: Session`, `X-Session-ID`) and
/// bearer tokens are security schemes; every route that needs a caller names them, and the
/// admin routes say 401 and 403.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_describes_authentication() {
    let app = TestApp::new(Db::Sqlite, Kind::Memory).await;
    let doc = document(&app).await;
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["session_cookie"]["in"], "cookie");
    assert_eq!(schemes["session_cookie"]["name"], "session_id");
    assert_eq!(schemes["session_authorization"]["name"], "Authorization");
    assert_eq!(schemes["session_header"]["name"], "X-Session-ID");
    assert_eq!(schemes["bearer"]["scheme"], "bearer");
    let needs_caller = [
        ("/auth/logout", "post"),
        ("/auth/logout-all", "post"),
        ("/auth/sessions", "get"),
        ("/cache/session/info", "get"),
        ("/cache/session/update", "post"),
        ("/cache/session", "delete"),
        ("/cache/stats", "get"),
        ("/cache/clear", "post"),
        ("/cache/invalidate/user/{id}", "post"),
    ];
    for (path, method) in needs_caller {
        let operation = &doc["paths"][path][method];
        let security = operation["security"]
            .as_array()
            .unwrap_or_else(|| panic!("{path}"));
        assert!(
            security.iter().any(|s| s.get("session_cookie").is_some()),
            "{path}"
        );
        assert!(operation["responses"]["401"].is_object(), "{path}: no 401");
    }
    for path in [
        "/cache/stats",
        "/cache/clear",
        "/cache/invalidate/user/{id}",
    ] {
        let operation = doc["paths"][path]
            .as_object()
            .unwrap()
            .values()
            .next()
            .unwrap();
        assert!(operation["responses"]["403"].is_object(), "{path}: no 403");
        assert!(
            operation["security"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s.get("bearer").is_some())
        );
    }
    let login = &doc["paths"]["/auth/login"]["post"]["responses"]["200"];
    assert!(login["headers"]["Set-Cookie"].is_object(), "{login}");
}
