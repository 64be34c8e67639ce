//! A database made by the version before accounts (schema version 1, users without `role` and
//! `password_hash`) is upgraded in place at start-up: its rows keep their data, become users
//! without a password (who cannot log in until one is set), and the API works on it.

mod common;

use axum::http::StatusCode;
use cache_runtime::Cache;
use common::{Db, DbGuard, Kind, TestApp};
use example_crud_api::{AppState, connect_db};
use sea_orm::{ConnectionTrait, Database, DbBackend};
use serde_json::json;

/// The DDL version 1 ran (as sea-orm generated it from the entities of the time).
const V1: &[&str] = &[
    "CREATE TABLE schema_migrations (version bigint NOT NULL PRIMARY KEY, description varchar NOT NULL, applied_at timestamp_with_timezone_text NOT NULL)",
    "CREATE TABLE users (id integer NOT NULL PRIMARY KEY AUTOINCREMENT, name varchar NOT NULL, email varchar NOT NULL UNIQUE, age integer, is_active boolean NOT NULL, created_at timestamp_with_timezone_text NOT NULL)",
    "CREATE TABLE tasks (id integer NOT NULL PRIMARY KEY AUTOINCREMENT, user_id integer NOT NULL, title varchar NOT NULL, done boolean NOT NULL, created_at timestamp_with_timezone_text NOT NULL, FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE)",
    "INSERT INTO schema_migrations VALUES (1, 'create users and tasks', '2026-01-01T00:00:00Z')",
    "INSERT INTO users (name, email, age, is_active, created_at) VALUES ('Ada', 'ada@example.com', 36, 1, '2026-01-01T00:00:00Z')",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_1_database_is_upgraded_in_place() {
    let (url, guard) = DbGuard::create(Db::Sqlite).await;
    let old = Database::connect(&url).await.expect("sqlite");
    assert_eq!(old.get_database_backend(), DbBackend::Sqlite);
    for statement in V1 {
        old.execute_unprepared(statement).await.expect(statement);
    }
    old.close().await.expect("close");

    let db = connect_db(&url).await.expect("the upgrade");
    let cache = Cache::builder().build().await.expect("cache");
    let app = TestApp::with(
        AppState::new(db, cache),
        Kind::Memory,
        Db::Sqlite,
        None,
        guard,
    );
    let r = app.get("/users/1").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["name"], "Ada");
    assert_eq!(r.body["role"], "user");
    let login = json!({"email": "ada@example.com", "password": "any password"});
    assert_eq!(
        app.post("/auth/login", login).await.status,
        StatusCode::UNAUTHORIZED
    );
    let r = app
        .put("/users/1", json!({"password": "a real password"}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let login = json!({"email": "ada@example.com", "password": "a real password"});
    assert_eq!(app.post("/auth/login", login).await.status, StatusCode::OK);
}
