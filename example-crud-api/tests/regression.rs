//! One regression test (or a few) per finding of the review's "Example API" section (E1-E9),
//! named after it. Each failed before its fix. They run against real SQLite files, the local
//! PostgreSQL and real redis-servers, like the contract suite in `api.rs`.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use common::{Db, DbGuard, Kind, Resp, TestApp, id, ids};
use example_crud_api::connect_db;
use sea_orm::{ConnectionTrait, DbBackend, Statement};
use serde_json::{Value, json};

/// Generates one `#[tokio::test]` per database for each `async fn(Db)` named.
macro_rules! on_both_databases {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Db::Sqlite).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Db::Postgres).await;
                }
            )*
        }
    };
}

on_both_databases! {
    e1_huge_skip_is_a_422,
    e2_too_many_bind_values_is_a_422,
    e5_contains_finds_non_ascii_text,
    e7_count_and_page_agree_under_concurrent_writes,
    e8_concurrent_migrations_all_succeed,
    e9_null_for_a_non_nullable_field_is_a_422,
}

/// Asserts a 422 whose message mentions every `needle`.
#[track_caller]
fn assert_422(r: &Resp, needles: &[&str]) {
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    let message = r.error();
    for needle in needles {
        assert!(
            message.contains(needle),
            "error {message:?} does not mention {needle:?}"
        );
    }
}

// E1 ----------------------------------------------------------------------------------------

/// A `skip` beyond `i64::MAX` used to panic in sea-query-sqlx's bind (a reset connection);
/// anything above 1,000,000 is now a 422 naming `skip`.
async fn e1_huge_skip_is_a_422(db: Db) {
    let app = TestApp::new(db, Kind::Memory).await;
    app.user("Ada", "ada@example.com", None).await;
    for skip in ["9223372036854775808", "18446744073709551615", "1000001"] {
        assert_422(&app.get(&format!("/users?skip={skip}")).await, &["skip"]);
        for path in ["/users/filter", "/users/filter-paginated"] {
            let body: Value = serde_json::from_str(&format!(r#"{{"skip": {skip}}}"#)).unwrap();
            assert_422(&app.post(path, body).await, &["skip"]);
        }
    }
    // Beyond `u64`: a parse error, also naming `skip`.
    assert_422(
        &app.get("/users?skip=99999999999999999999").await,
        &["skip"],
    );
    let body: Value = serde_json::from_str(r#"{"skip": 99999999999999999999}"#).unwrap();
    assert_422(&app.post("/users/filter", body).await, &["skip"]);
    // The bound itself is allowed.
    let r = app.get("/users?skip=1000000").await;
    assert_eq!((r.status, r.body.clone()), (StatusCode::OK, json!([])));
    let r = app
        .post("/users/filter-paginated", json!({"skip": 1_000_000}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["total"], 1);
}

// E2 ----------------------------------------------------------------------------------------

/// 100 conditions x 1,000 `in` values is 100k bind parameters, above what SQLite and
/// PostgreSQL accept: it was a 500; the filter's values are now bounded (1,000 in all).
async fn e2_too_many_bind_values_is_a_422(db: Db) {
    let app = TestApp::new(db, Kind::None).await;
    let ada = id(&app.user("Ada", "ada@example.com", None).await);
    let in_list = |n: i64| json!({"field": "id", "op": "in", "value": (1..=n).collect::<Vec<_>>()});
    let huge = json!({"conditions": vec![in_list(1000); 100]});
    for path in ["/users/filter", "/users/filter-paginated"] {
        assert_422(&app.post(path, huge.clone()).await, &["1000", "values"]);
    }
    // One scalar condition counts as one value: 999 + 2 is over.
    let over = json!({"conditions": [
        in_list(999),
        {"field": "age", "op": "eq", "value": null},
        {"field": "name", "op": "contains", "value": "a"},
        {"field": "id", "op": "gt", "value": 0},
    ]});
    assert_422(&app.post("/users/filter", over).await, &["1000"]);
    // Exactly 1,000 values (and a null test, which binds none) is fine.
    let at_limit = json!({"conditions": [
        in_list(998),
        {"field": "age", "op": "eq", "value": null},
        {"field": "name", "op": "contains", "value": "a"},
        {"field": "id", "op": "gt", "value": 0},
    ]});
    let r = app.post("/users/filter", at_limit).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(ids(&r.body), vec![ada]);
    let ten_by_hundred = json!({"conditions": vec![in_list(100); 10]});
    let r = app.post("/users/filter-paginated", ten_by_hundred).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["total"], 1);
}

// E3 ----------------------------------------------------------------------------------------

/// The standard methods, which the metrics label keeps; any other becomes `other`.
const STANDARD_METHODS: [&str; 9] = [
    "GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "CONNECT", "TRACE",
];

/// Every value of the `method` label in a Prometheus exposition.
fn method_labels(exposition: &str) -> BTreeSet<String> {
    exposition
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.split_once("method=\"")?.1.split_once('"'))
        .map(|(method, _)| method.to_owned())
        .collect()
}

/// Extension methods made one series each, without bound; they now share `other`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e3_extension_methods_share_one_metrics_series() {
    let app = TestApp::new(Db::Sqlite, Kind::Memory).await;
    // 50 random 12-letter method names (a xorshift seeded from the clock).
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut state = seed | 1;
    let mut methods = BTreeSet::new();
    while methods.len() < 50 {
        let name: String = (0..12)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                char::from(b'A' + (state % 26) as u8)
            })
            .collect();
        methods.insert(format!("X{name}"));
    }
    for method in &methods {
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let r = app.request(method, "/users", None).await;
        assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{}", r.text);
    }
    assert_eq!(app.get("/users").await.status, StatusCode::OK);
    let metrics = app.get("/metrics").await;
    assert_eq!(metrics.status, StatusCode::OK);
    let labels = method_labels(&metrics.text);
    let unknown: Vec<_> = labels
        .iter()
        .filter(|m| *m != "other" && !STANDARD_METHODS.contains(&m.as_str()))
        .collect();
    assert!(
        unknown.is_empty(),
        "non-standard method labels: {unknown:?}"
    );
    let other_series = metrics
        .text
        .lines()
        .filter(|l| l.starts_with("http_requests_total{") && l.contains(r#"method="other""#))
        .count();
    assert_eq!(other_series, 1, "{}", metrics.text);
    assert!(labels.contains("GET"), "{labels:?}");
}

// E4 ----------------------------------------------------------------------------------------

/// The cache entries in the app's Redis (invalidation markers left out).
fn redis_entries(app: &TestApp) -> BTreeSet<String> {
    let keys: Vec<String> = app.redis().query(&["KEYS", "*"]);
    keys.into_iter()
        .filter(|k| !k.starts_with("__inv:"))
        .collect()
}

/// Every distinct deep `skip` was a new cache entry (client-controlled cache growth); pages
/// beyond `skip` 10,000 are now read uncached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e4_deep_pages_leave_no_cache_entry() {
    let app = TestApp::new(Db::Sqlite, Kind::Redis).await;
    app.user("Ada", "ada@example.com", None).await;
    let before = redis_entries(&app);
    for skip in [10_001, 50_000, 1_000_000] {
        let r = app.get(&format!("/users?skip={skip}")).await;
        assert_eq!((r.status, r.body), (StatusCode::OK, json!([])));
        let r = app.post("/users/filter", json!({"skip": skip})).await;
        assert_eq!((r.status, r.body), (StatusCode::OK, json!([])));
        let r = app
            .post("/users/filter-paginated", json!({"skip": skip}))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(
            (r.body["total"].clone(), r.body["skip"].clone()),
            (json!(1), json!(skip))
        );
    }
    assert_eq!(redis_entries(&app), before, "deep pages were cached");
    // Up to the bound, pages are cached as before: one entry per view.
    assert_eq!(app.get("/users?skip=10000").await.status, StatusCode::OK);
    let body = json!({"skip": 10_000});
    assert_eq!(
        app.post("/users/filter", body.clone()).await.status,
        StatusCode::OK
    );
    assert_eq!(
        app.post("/users/filter-paginated", body).await.status,
        StatusCode::OK
    );
    let added: Vec<String> = redis_entries(&app).difference(&before).cloned().collect();
    assert_eq!(added.len(), 3, "{added:?}");
    for prefix in ["users:list:", "users:filter:", "users:filter:paginated:"] {
        assert!(added.iter().any(|k| k.starts_with(prefix)), "{added:?}");
    }
}

// E5 ----------------------------------------------------------------------------------------

/// SQLite's `LOWER` folds ASCII only, so `contains` lowered the pattern (`émile`) but not the
/// column (`Émile`) and never matched, even spelled exactly.
async fn e5_contains_finds_non_ascii_text(db: Db) {
    let app = TestApp::new(db, Kind::None).await;
    let emile = id(&app.user("Émile Zola", "emile@example.com", None).await);
    app.user("Ada", "ada@example.com", None).await;
    let contains =
        |text: &str| json!({"conditions": [{"field": "name", "op": "contains", "value": text}]});
    let mut found_by = vec!["Émile", "ÉMILE", "Émile zola", "mile", "ZOLA", "É"];
    if db == Db::Postgres {
        // Unicode-aware case folding.
        found_by.extend(["émile", "éMILE", "é"]);
    }
    for text in found_by {
        let r = app.post("/users/filter", contains(text)).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(ids(&r.body), vec![emile], "contains {text:?}");
    }
    for text in ["Émilie", "Emile", "e\u{301}mile"] {
        let r = app.post("/users/filter", contains(text)).await;
        assert_eq!(ids(&r.body), Vec::<i64>::new(), "contains {text:?}");
    }
}

// E7 ----------------------------------------------------------------------------------------

/// Count and page were two statements outside a transaction: a write committed between them
/// made `total` disagree with `items`. They now read one snapshot.
async fn e7_count_and_page_agree_under_concurrent_writes(db: Db) {
    let app = TestApp::new(db, Kind::None).await;
    let writer = {
        let router = app.router.clone();
        tokio::spawn(async move {
            for i in 0..300 {
                let body = json!({"name": format!("u{i}"), "email": format!("u{i}@e.io")});
                let r = common::send(
                    &router,
                    Method::POST,
                    "/users",
                    Some(("application/json", &body.to_string())),
                )
                .await;
                assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
            }
        })
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut pages = 0;
    while !writer.is_finished() && Instant::now() < deadline {
        let r = app
            .post("/users/filter-paginated", json!({"limit": 1000}))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let items = r.body["items"].as_array().expect("items").len();
        let total = r.body["total"].as_u64().expect("total");
        assert_eq!(items as u64, total, "after {pages} pages");
        pages += 1;
    }
    writer.await.expect("writer");
    assert!(pages > 0);
}

// E8 ----------------------------------------------------------------------------------------

/// Two instances starting together both saw version 0 and both applied migration 1; the
/// second failed. Migrations now run under a lock: an advisory lock on PostgreSQL, the write lock
/// (`BEGIN IMMEDIATE`) on SQLite.
async fn e8_concurrent_migrations_all_succeed(db: Db) {
    let (url, _guard) = DbGuard::create(db).await;
    let starts: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { connect_db(&url).await })
        })
        .collect();
    let mut dbs = Vec::new();
    for start in starts {
        dbs.push(start.await.expect("task").expect("connect and migrate"));
    }
    let versions = dbs[0]
        .query_all_raw(Statement::from_string(
            dbs[0].get_database_backend(),
            "SELECT version FROM schema_migrations ORDER BY version",
        ))
        .await
        .expect("read versions");
    let versions: Vec<i64> = versions
        .iter()
        .map(|row| row.try_get("", "version").expect("version"))
        .collect();
    assert_eq!(versions, vec![1, 2, 3]);
    for db in dbs {
        db.close().await.expect("close");
    }
}

// E9 ----------------------------------------------------------------------------------------

/// `null` for a field that cannot be null meant "absent" (200); it is now a 422 naming it.
async fn e9_null_for_a_non_nullable_field_is_a_422(db: Db) {
    let app = TestApp::new(db, Kind::Memory).await;
    let ada = app.user("Ada", "ada@example.com", Some(36)).await;
    let path = format!("/users/{}", id(&ada));
    for field in ["name", "email", "is_active"] {
        assert_422(
            &app.put(&path, json!({ field: null })).await,
            &[field, "null"],
        );
    }
    let r = app.put(&path, json!({"age": null})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["age"], Value::Null, "age stays nullable");
    assert_eq!(r.body["name"], "Ada");

    let task = app.task(id(&ada), "Write").await;
    let path = format!("/tasks/{}", id(&task));
    for field in ["title", "done"] {
        assert_422(
            &app.put(&path, json!({ field: null })).await,
            &[field, "null"],
        );
    }
    let r = app.get(&path).await;
    assert_eq!(r.body, task, "the rejected writes changed nothing");
}

// SQLite settings -----------------------------------------------------------------------------

/// SQLite runs in WAL mode with `synchronous=NORMAL` and a 5 s busy timeout.
/// E9: clearing the tasks left every user's cached task list (`users:<id>:tasks`) in place,
/// so a list changed behind the cache's back stayed stale after the clear.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e9_clearing_tasks_clears_task_lists() {
    for kind in [Kind::Redis, Kind::Memory] {
        let app = TestApp::new(Db::Sqlite, kind).await;
        let user = id(&app.user("Ada", "ada@e.io", Some(36)).await);
        let task = id(&app.task(user, "Write").await);
        let path = format!("/users/{user}/tasks");
        assert_eq!(app.get(&path).await.body[0]["title"], "Write");
        // Another program changes the row; only a clear can tell the cache.
        app.state
            .db
            .execute_unprepared(&format!(
                "UPDATE tasks SET title = 'Edited' WHERE id = {task}"
            ))
            .await
            .unwrap();
        assert_eq!(app.get(&path).await.body[0]["title"], "Write", "cached");
        let r = app
            .admin_post("/cache/clear", json!({"cache_type": "tasks"}))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(app.get(&path).await.body[0]["title"], "Edited", "{kind:?}");
        assert_eq!(
            app.get(&format!("/tasks/{task}")).await.body["title"],
            "Edited"
        );
    }
}

/// E6: `JsonText` takes any JSON, so an entry another function wrote under `users:<id>`
/// (another type, marker generations current) was served verbatim. The envelope's type tag
/// makes it a miss.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e6_an_entry_of_another_type_is_not_served() {
    let app = TestApp::new(Db::Sqlite, Kind::Redis).await;
    let user = id(&app.user("Ada", "ada@e.io", Some(36)).await);
    let first = app.get(&format!("/users/{user}")).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text);
    let key = format!("users:{user}");
    let gens: Vec<Option<u64>> = app.redis().query(&[
        "MGET",
        "__inv:*",
        "__inv:users:*",
        &format!("__inv:{{{key}}}"),
    ]);
    let gens: Vec<u64> = gens.into_iter().map(Option::unwrap_or_default).collect();
    let foreign = json!({"v": 1, "t": 0, "s": 42, "g": gens, "d": {"not": "a user"}});
    app.redis().cli(&["SET", &key, &foreign.to_string()]);
    let second = app.get(&format!("/users/{user}")).await;
    assert_eq!(
        second.body, first.body,
        "the foreign entry was served: {}",
        second.text
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_opens_in_wal_mode() {
    let (url, _guard) = DbGuard::create(Db::Sqlite).await;
    let db = connect_db(&url).await.expect("connect");
    let pragma = |name: &str| Statement::from_string(DbBackend::Sqlite, format!("PRAGMA {name}"));
    let row = db
        .query_one_raw(pragma("journal_mode"))
        .await
        .expect("journal_mode")
        .expect("a row");
    let mode: String = row.try_get_by_index(0).expect("text");
    assert_eq!(mode, "wal");
    let row = db
        .query_one_raw(pragma("synchronous"))
        .await
        .unwrap()
        .unwrap();
    // 1 = NORMAL.
    assert_eq!(row.try_get_by_index::<i32>(0).unwrap(), 1);
    let row = db
        .query_one_raw(pragma("busy_timeout"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.try_get_by_index::<i32>(0).unwrap(), 5000);
    db.close().await.expect("close");
}

/// There was no `CatchPanicLayer`: a panic (E1's, or any other) reset the connection. The
/// layer `app()` puts outermost answers a JSON 500 instead, without the panic's message.
#[tokio::test]
async fn e1_a_panic_is_a_json_500() {
    let router = axum::Router::new()
        .route(
            "/boom",
            axum::routing::get(|| async {
                if std::hint::black_box(true) {
                    panic!("secret detail of the failure");
                }
            }),
        )
        .layer(example_crud_api::catch_panic_layer());
    let r = common::send(&router, Method::GET, "/boom", None).await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR, "{}", r.text);
    assert_eq!(r.error(), "internal error");
    assert!(!r.text.contains("secret"), "{}", r.text);
}

/// The tour's restart: `--seed` on a database seeded already inserts nothing and invalidates
/// nothing (it used to invalidate every user and task entry on every such start).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeding_a_seeded_database_invalidates_nothing() {
    let app = TestApp::new(Db::Sqlite, Kind::Memory).await;
    let seed = |n| {
        cache_runtime::scope(
            app.state.cache.clone(),
            example_crud_api::seed::seed(&app.state.db, n, "admin-password"),
        )
    };
    assert_eq!(seed(10).await.unwrap(), 11, "10 demo users and the admin");
    let after_first = app.state.cache.stats().totals.invalidations;
    assert_eq!(after_first, 2, "users:* and tasks:*");
    assert_eq!(seed(10).await.unwrap(), 0);
    assert_eq!(app.state.cache.stats().totals.invalidations, after_first);
}
