//! The HTTP floor of the HTTP benchmark (`tests/benches/http.rs`): the example API's
//! `GET /users/{id}` route in a bare axum app that answers one fixed user row, with no cache,
//! no database and no middleware. What axum, hyper and tokio cost for that route on this
//! machine, and so the most a cached `GET /users/{id}` of the API can hope for.
//!
//! ```sh
//! cargo run --release -p integration-tests --features bench --bin http_floor -- \
//!     --port 8001 [--body '{"id":1,...}']
//! ```
//!
//! The port comes from `--port` (or `PORT`, default 8001) and the row from `--body` (or
//! `HTTP_FLOOR_BODY`; by default one the example API answered). The runtime is the one the
//! example API gets from `#[tokio::main]`: multi-threaded, a worker per core. `GET /health`
//! answers `ok`. The process exits when its parent does (the bench kills it by its pid; if the
//! bench itself is killed, the floor sees its parent change and exits within half a second).

use std::process::ExitCode;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// The example API's answer to `GET /users/5000` on its seeded data (140 bytes).
const ROW: &str = concat!(
    r#"{"id":5000,"name":"John Allen","email":"user5000@example.com","age":null,"#,
    r#""is_active":true,"role":"user","created_at":"2024-01-01T01:23:20Z"}"#
);

/// `GET /users/{id}`: the id parsed as the API parses it, then the fixed row, with the
/// content type the API answers with.
async fn user(Path(_id): Path<i32>, State(row): State<Bytes>) -> Response {
    let json = HeaderValue::from_static("application/json");
    ([(header::CONTENT_TYPE, json)], row).into_response()
}

/// `--name value`, `--name=value`, or the environment variable `env`.
fn option(name: &str, env: &str) -> Option<String> {
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == name {
            return args.next();
        }
        if let Some(v) = arg.strip_prefix(name).and_then(|r| r.strip_prefix('=')) {
            return Some(v.to_owned());
        }
    }
    std::env::var(env).ok()
}

/// Exits the process once its parent is gone (it is then reparented).
async fn exit_with_parent() {
    let parent = std::os::unix::process::parent_id();
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if std::os::unix::process::parent_id() != parent {
            std::process::exit(0);
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let port = option("--port", "PORT").unwrap_or_else(|| "8001".to_owned());
    let Ok(port) = port.parse::<u16>() else {
        eprintln!("http_floor: the port must be a number, got `{port}`");
        return ExitCode::FAILURE;
    };
    let row = option("--body", "HTTP_FLOOR_BODY").unwrap_or_else(|| ROW.to_owned());
    let app = Router::new()
        .route("/users/{id}", get(user))
        .route("/health", get(|| async { "ok" }))
        .with_state(Bytes::from(row));
    let listener = match tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("http_floor: cannot listen on 127.0.0.1:{port}: {e}");
            return ExitCode::FAILURE;
        }
    };
    tokio::spawn(exit_with_parent());
    match axum::serve(listener, app).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("http_floor: {e}");
            ExitCode::FAILURE
        }
    }
}
