//! The whole API contract (documented at `GET /openapi.json`), run against every
//! configuration: SQLite and PostgreSQL, with Redis, with the in-process cache, and with no
//! cache; and SQLite with a Redis Cluster. Every suite function gets a fresh app, database and
//! (for Redis) redis-server or (for the cluster) 3-master Redis Cluster.

mod common;

use axum::http::{Method, StatusCode};
use common::{Db, Kind, TestApp, id, ids};
use serde_json::{Value, json};

/// Generates one `#[tokio::test]` per suite function in a module per configuration.
macro_rules! configurations {
    ($($config:ident => ($db:expr, $kind:expr);)*) => {$(
        mod $config {
            use super::*;
            configurations!(@tests $db, $kind;
                users_crud, user_errors, list_pagination, filter_ops, filter_errors,
                filter_paginated, tasks_crud, task_errors, deleting_user_deletes_tasks,
                cache_admin, health_and_metrics, health_503_when_database_down,
                unknown_routes, read_after_user_writes, read_after_task_writes,
                read_after_admin_invalidation, concurrent_requests);
        }
    )*};
    (@tests $db:expr, $kind:expr; $($name:ident),*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let app = TestApp::new($db, $kind).await;
            super::$name(&app).await;
        }
    )*};
}

configurations! {
    sqlite_redis => (Db::Sqlite, Kind::Redis);
    sqlite_memory => (Db::Sqlite, Kind::Memory);
    sqlite_no_cache => (Db::Sqlite, Kind::None);
    postgres_redis => (Db::Postgres, Kind::Redis);
    postgres_memory => (Db::Postgres, Kind::Memory);
    sqlite_cluster => (Db::Sqlite, Kind::Cluster);
}

/// Asserts a 4xx error status and that the message mentions every `needle`.
#[track_caller]
fn assert_error(r: &common::Resp, status: StatusCode, needles: &[&str]) {
    assert_eq!(r.status, status, "{}", r.text);
    let message = r.error();
    for needle in needles {
        assert!(
            message.contains(needle),
            "error {message:?} does not mention {needle:?}"
        );
    }
}

async fn users_crud(app: &TestApp) {
    let ada = app.user("Ada", "ada@example.com", Some(36)).await;
    assert_eq!(ada["name"], "Ada");
    assert_eq!(ada["email"], "ada@example.com");
    assert_eq!(ada["age"], 36);
    assert_eq!(ada["is_active"], true);
    assert_eq!(ada["role"], "user");
    let created_at = ada["created_at"].as_str().expect("created_at");
    chrono::DateTime::parse_from_rfc3339(created_at).expect("RFC 3339 created_at");
    let keys: Vec<&String> = ada.as_object().unwrap().keys().collect();
    assert_eq!(
        keys.len(),
        7,
        "User has exactly the contract's fields: {ada}"
    );

    let alan = app
        .post(
            "/users",
            json!({"name": "  Alan  ", "email": "alan@example.com", "is_active": false}),
        )
        .await;
    assert_eq!(alan.status, StatusCode::CREATED, "{}", alan.text);
    assert_eq!(alan.body["name"], "Alan", "names are trimmed");
    assert_eq!(alan.body["age"], Value::Null);
    assert_eq!(alan.body["is_active"], false);

    let path = format!("/users/{}", id(&ada));
    let got = app.get(&path).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.body, ada, "GET returns what POST returned");

    let list = app.get("/users").await;
    assert_eq!(list.status, StatusCode::OK);
    assert_eq!(ids(&list.body), vec![id(&ada), id(&alan.body)]);

    let updated = app.put(&path, json!({"name": "Ada L.", "age": 37})).await;
    assert_eq!(updated.status, StatusCode::OK, "{}", updated.text);
    assert_eq!(updated.body["name"], "Ada L.");
    assert_eq!(updated.body["age"], 37);
    assert_eq!(
        updated.body["email"], "ada@example.com",
        "absent fields unchanged"
    );
    assert_eq!(updated.body["created_at"], ada["created_at"]);

    let cleared = app
        .put(&path, json!({"age": null, "is_active": false}))
        .await;
    assert_eq!(cleared.status, StatusCode::OK, "{}", cleared.text);
    assert_eq!(cleared.body["age"], Value::Null);
    assert_eq!(cleared.body["is_active"], false);

    let unchanged = app.put(&path, json!({})).await;
    assert_eq!(unchanged.status, StatusCode::OK);
    assert_eq!(unchanged.body, cleared.body);

    // Changing the email to itself is not a conflict.
    let same = app.put(&path, json!({"email": "ada@example.com"})).await;
    assert_eq!(same.status, StatusCode::OK, "{}", same.text);

    let deleted = app.delete(&path).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert!(deleted.text.is_empty());
    assert_error(
        &app.get(&path).await,
        StatusCode::NOT_FOUND,
        &["user", "not found"],
    );
    assert_error(&app.delete(&path).await, StatusCode::NOT_FOUND, &["user"]);
    assert_error(
        &app.put(&path, json!({"name": "x"})).await,
        StatusCode::NOT_FOUND,
        &["user"],
    );
    assert_eq!(ids(&app.get("/users").await.body), vec![id(&alan.body)]);
}

async fn user_errors(app: &TestApp) {
    let ada = app.user("Ada", "ada@example.com", None).await;
    let path = format!("/users/{}", id(&ada));
    let long = "x".repeat(101);
    let long_email = format!("{}@example.com", "x".repeat(250));
    for (body, needles) in [
        (json!({"name": "", "email": "a@b"}), &["name"][..]),
        (json!({"name": "   ", "email": "a@b"}), &["name"]),
        (json!({"name": long, "email": "a@b"}), &["name", "100"]),
        (json!({"name": "A", "email": "nope"}), &["email", "@"]),
        (json!({"name": "A", "email": long_email}), &["email", "254"]),
        (json!({"name": "A", "email": "a@b", "age": -1}), &["age"]),
        (
            json!({"name": "A", "email": "a@b", "age": 151}),
            &["age", "150"],
        ),
        (json!({"name": "A", "email": "a@b", "age": "old"}), &["age"]),
        (json!({"name": 5, "email": "a@b"}), &["name"]),
        (json!({"name": "A"}), &["email"]),
        (
            json!({"name": "A", "email": "a@b", "role": "admin"}),
            &["role"],
        ),
        (
            json!({"name": "A", "email": "a@b", "is_active": "yes"}),
            &["is_active"],
        ),
    ] {
        let r = app.post("/users", body.clone()).await;
        assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, needles);
    }
    // Exactly at the limits is fine.
    let edge = app
        .post(
            "/users",
            json!({"name": "y".repeat(100), "email": format!("{}@e.io", "e".repeat(249)), "age": 150}),
        )
        .await;
    assert_eq!(edge.status, StatusCode::CREATED, "{}", edge.text);
    let zero = app
        .post("/users", json!({"name": "Z", "email": "z@e.io", "age": 0}))
        .await;
    assert_eq!(zero.status, StatusCode::CREATED, "{}", zero.text);

    // Malformed JSON and a missing content type are 4xx in the error shape too.
    let r = app
        .request(
            Method::POST,
            "/users",
            Some(("application/json", "{\"name\": ")),
        )
        .await;
    assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, &[]);
    let r = app
        .request(
            Method::POST,
            "/users",
            Some(("", r#"{"name":"A","email":"a@b"}"#)),
        )
        .await;
    assert!(r.status.is_client_error(), "{}", r.status);
    r.error();

    // Duplicate email: on create and on update.
    assert_error(
        &app.post(
            "/users",
            json!({"name": "Other", "email": "ada@example.com"}),
        )
        .await,
        StatusCode::CONFLICT,
        &["email", "ada@example.com"],
    );
    assert_error(
        &app.put(
            &format!("/users/{}", id(&zero.body)),
            json!({"email": "ada@example.com"}),
        )
        .await,
        StatusCode::CONFLICT,
        &["email"],
    );
    assert_eq!(
        app.get(&format!("/users/{}", id(&zero.body))).await.body,
        zero.body
    );

    // Invalid updates.
    assert_error(
        &app.put(&path, json!({"age": 200})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        &["age"],
    );
    assert_error(
        &app.put(&path, json!({"email": "x"})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        &["email"],
    );
    assert_error(
        &app.put(&path, json!({"name": ""})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        &["name"],
    );
    assert_error(
        &app.put(&path, json!({"nickname": "A"})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        &["nickname"],
    );
    assert_eq!(
        app.get(&path).await.body,
        ada,
        "failed updates change nothing"
    );

    // Non-integer ids are 422 naming the parameter; unknown ids 404.
    for bad in ["abc", "1.5", "99999999999", "%20"] {
        let p = format!("/users/{bad}");
        assert_error(
            &app.get(&p).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            &["`id`", "integer"],
        );
        assert_error(
            &app.put(&p, json!({})).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            &["`id`"],
        );
        assert_error(
            &app.delete(&p).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            &["`id`"],
        );
    }
    assert_error(
        &app.get("/users/0").await,
        StatusCode::NOT_FOUND,
        &["user 0"],
    );
    assert_error(
        &app.get("/users/-3").await,
        StatusCode::NOT_FOUND,
        &["user -3"],
    );
}

async fn list_pagination(app: &TestApp) {
    let mut all = Vec::new();
    for i in 0..5 {
        all.push(id(&app
            .user(&format!("U{i}"), &format!("u{i}@e.io"), Some(20 + i))
            .await));
    }
    assert_eq!(ids(&app.get("/users").await.body), all);
    assert_eq!(ids(&app.get("/users?skip=1&limit=2").await.body), all[1..3]);
    assert_eq!(ids(&app.get("/users?skip=4").await.body), all[4..]);
    assert_eq!(
        ids(&app.get("/users?skip=10").await.body),
        Vec::<i64>::new()
    );
    assert_eq!(ids(&app.get("/users?limit=1000").await.body), all);
    assert_eq!(ids(&app.get("/users?limit=1").await.body), all[..1]);
    for (query, needle) in [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=-1", "limit"),
        ("limit=abc", "limit"),
        ("skip=-1", "skip"),
        ("skip=x", "skip"),
    ] {
        let r = app.get(&format!("/users?{query}")).await;
        assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, &[needle]);
    }
}

/// Five users with distinct ages, names and flags; returns their ids in creation order.
async fn filter_fixture(app: &TestApp) -> Vec<i64> {
    let mut out = Vec::new();
    for (name, email, age, active) in [
        ("Ada Lovelace", "ada@math.org", Some(36), true),
        ("Alan Turing", "alan@cs.org", Some(41), true),
        ("Grace Hopper", "grace@navy.mil", Some(85), false),
        ("Edsger Dijkstra", "ewd@cs.org", None, true),
        ("50%_off Bot", "bot@shop.com", Some(1), false),
    ] {
        let r = app
            .post(
                "/users",
                json!({"name": name, "email": email, "age": age, "is_active": active}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        out.push(id(&r.body));
    }
    out
}

async fn filter_ops(app: &TestApp) {
    let u = filter_fixture(app).await;
    let q = |conditions: Value| json!({ "conditions": conditions });
    let cases: Vec<(Value, Vec<i64>)> = vec![
        (json!({}), u.clone()),
        (q(json!([])), u.clone()),
        (
            q(json!([{"field": "age", "op": "eq", "value": 41}])),
            vec![u[1]],
        ),
        (
            q(json!([{"field": "age", "op": "ne", "value": 41}])),
            vec![u[0], u[2], u[4]],
        ),
        (
            q(json!([{"field": "age", "op": "gt", "value": 36}])),
            vec![u[1], u[2]],
        ),
        (
            q(json!([{"field": "age", "op": "gte", "value": 36}])),
            vec![u[0], u[1], u[2]],
        ),
        (
            q(json!([{"field": "age", "op": "lt", "value": 36}])),
            vec![u[4]],
        ),
        (
            q(json!([{"field": "age", "op": "lte", "value": 36}])),
            vec![u[0], u[4]],
        ),
        (
            q(json!([{"field": "age", "op": "eq", "value": null}])),
            vec![u[3]],
        ),
        (
            q(json!([{"field": "age", "op": "ne", "value": null}])),
            vec![u[0], u[1], u[2], u[4]],
        ),
        (
            q(json!([{"field": "name", "op": "contains", "value": "LA"}])),
            vec![u[0], u[1]],
        ),
        (
            q(json!([{"field": "name", "op": "contains", "value": "TURING"}])),
            vec![u[1]],
        ),
        (
            q(json!([{"field": "name", "op": "contains", "value": "0%_"}])),
            vec![u[4]],
        ),
        (
            q(json!([{"field": "name", "op": "contains", "value": "%"}])),
            vec![u[4]],
        ),
        (
            q(json!([{"field": "email", "op": "contains", "value": "@cs."}])),
            vec![u[1], u[3]],
        ),
        (
            q(json!([{"field": "email", "op": "eq", "value": "grace@navy.mil"}])),
            vec![u[2]],
        ),
        (
            q(json!([{"field": "name", "op": "gt", "value": "E"}])),
            vec![u[2], u[3]],
        ),
        (
            q(json!([{"field": "id", "op": "in", "value": [u[0], u[3], 999_999]}])),
            vec![u[0], u[3]],
        ),
        (q(json!([{"field": "id", "op": "in", "value": []}])), vec![]),
        (
            q(json!([{"field": "email", "op": "in", "value": ["ewd@cs.org", "x@y"]}])),
            vec![u[3]],
        ),
        (
            q(json!([{"field": "is_active", "op": "eq", "value": false}])),
            vec![u[2], u[4]],
        ),
        (
            q(json!([{"field": "is_active", "op": "ne", "value": false}])),
            vec![u[0], u[1], u[3]],
        ),
        (
            q(json!([{"field": "id", "op": "gte", "value": u[3]}])),
            vec![u[3], u[4]],
        ),
        (
            q(json!([{"field": "created_at", "op": "lte", "value": "2999-01-01T00:00:00Z"}])),
            u.clone(),
        ),
        (
            q(json!([{"field": "created_at", "op": "gt", "value": "2999-01-01T00:00:00+02:00"}])),
            vec![],
        ),
        (
            q(json!([
                {"field": "is_active", "op": "eq", "value": true},
                {"field": "email", "op": "contains", "value": "cs.org"},
                {"field": "age", "op": "ne", "value": null}
            ])),
            vec![u[1]],
        ),
        (
            json!({"order_by": [{"field": "age", "direction": "desc"}],
                   "conditions": [{"field": "age", "op": "ne", "value": null}]}),
            vec![u[2], u[1], u[0], u[4]],
        ),
        (
            json!({"order_by": [{"field": "is_active"}, {"field": "name", "direction": "desc"}]}),
            vec![u[2], u[4], u[3], u[1], u[0]],
        ),
        (json!({"skip": 1, "limit": 2}), vec![u[1], u[2]]),
        (json!({"skip": 5}), vec![]),
    ];
    for (filter, expected) in cases {
        let r = app.post("/users/filter", filter.clone()).await;
        assert_eq!(r.status, StatusCode::OK, "{filter}: {}", r.text);
        assert_eq!(ids(&r.body), expected, "{filter}");
    }
    // The created_at of a user round-trips as a filter value.
    let ada = app.get(&format!("/users/{}", u[0])).await.body;
    let r = app
        .post(
            "/users/filter",
            q(json!([{"field": "created_at", "op": "eq", "value": ada["created_at"]}])),
        )
        .await;
    assert_eq!(ids(&r.body), vec![u[0]], "{}", r.text);
}

async fn filter_errors(app: &TestApp) {
    filter_fixture(app).await;
    let cond = |c: Value| json!({ "conditions": [c] });
    for (filter, needles) in [
        (
            cond(json!({"field": "nmae", "op": "eq", "value": 1})),
            &["nmae", "name"][..],
        ),
        (
            cond(json!({"field": "name", "op": "like", "value": "a"})),
            &["like", "contains"],
        ),
        (
            cond(json!({"field": "age", "op": "eq", "value": "36"})),
            &["conditions[0]", "age", "integer"],
        ),
        (
            cond(json!({"field": "age", "op": "gt", "value": 1.5})),
            &["age", "integer"],
        ),
        (
            cond(json!({"field": "is_active", "op": "eq", "value": 1})),
            &["is_active", "boolean"],
        ),
        (
            cond(json!({"field": "is_active", "op": "lt", "value": true})),
            &["is_active"],
        ),
        (
            cond(json!({"field": "name", "op": "eq", "value": 3})),
            &["name", "string"],
        ),
        (
            cond(json!({"field": "age", "op": "contains", "value": "3"})),
            &["contains", "age"],
        ),
        (
            cond(json!({"field": "name", "op": "contains", "value": 3})),
            &["contains", "string"],
        ),
        (
            cond(json!({"field": "id", "op": "in", "value": 3})),
            &["in", "list"],
        ),
        (
            cond(json!({"field": "id", "op": "in", "value": [1, "x"]})),
            &["id", "integer"],
        ),
        (
            cond(json!({"field": "created_at", "op": "gt", "value": "yesterday"})),
            &["created_at", "RFC 3339"],
        ),
        (
            cond(json!({"field": "name", "op": "eq", "value": null})),
            &["name", "null"],
        ),
        (
            cond(json!({"field": "age", "op": "gt", "value": null})),
            &["gt", "null"],
        ),
        (cond(json!({"field": "age", "op": "eq"})), &["value"]),
        (
            cond(json!({"field": "age", "op": "eq", "value": 1, "extra": 1})),
            &["extra"],
        ),
        (json!({"order_by": [{"field": "height"}]}), &["height"]),
        (
            json!({"order_by": [{"field": "age", "direction": "up"}]}),
            &["up", "asc"],
        ),
        (json!({"limit": 0}), &["limit"]),
        (json!({"limit": 1001}), &["limit"]),
        (json!({"skip": -1}), &["skip"]),
        (json!({"where": []}), &["where"]),
        (json!({"conditions": {}}), &["conditions"]),
    ] {
        for path in ["/users/filter", "/users/filter-paginated"] {
            let r = app.post(path, filter.clone()).await;
            assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, needles);
        }
    }
    let r = app
        .request(
            Method::POST,
            "/users/filter",
            Some(("application/json", "[")),
        )
        .await;
    assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, &[]);
}

async fn filter_paginated(app: &TestApp) {
    let u = filter_fixture(app).await;
    let r = app.post("/users/filter-paginated", json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["total"], 5);
    assert_eq!(r.body["skip"], 0);
    assert_eq!(r.body["limit"], 100);
    assert_eq!(ids(&r.body["items"]), u);
    assert_eq!(r.body.as_object().unwrap().len(), 4, "{}", r.text);

    let r = app
        .post(
            "/users/filter-paginated",
            json!({"conditions": [{"field": "is_active", "op": "eq", "value": true}],
                   "order_by": [{"field": "id", "direction": "desc"}],
                   "skip": 1, "limit": 1}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["total"], 3);
    assert_eq!(r.body["skip"], 1);
    assert_eq!(r.body["limit"], 1);
    assert_eq!(ids(&r.body["items"]), vec![u[1]]);

    let r = app
        .post("/users/filter-paginated", json!({"skip": 10}))
        .await;
    assert_eq!(
        (r.body["total"].as_i64(), ids(&r.body["items"]).len()),
        (Some(5), 0)
    );
}

async fn tasks_crud(app: &TestApp) {
    let ada = id(&app.user("Ada", "ada@e.io", None).await);
    let alan = id(&app.user("Alan", "alan@e.io", None).await);
    let tasks = format!("/users/{ada}/tasks");
    assert_eq!(app.get(&tasks).await.body, json!([]));

    let first = app.task(ada, "Write notes").await;
    assert_eq!(first["user_id"], ada);
    assert_eq!(first["title"], "Write notes");
    assert_eq!(first["done"], false);
    assert_eq!(first.as_object().unwrap().len(), 5, "{first}");
    chrono::DateTime::parse_from_rfc3339(first["created_at"].as_str().unwrap()).unwrap();
    let second = app
        .post(&tasks, json!({"title": "Publish", "done": true}))
        .await;
    assert_eq!(second.status, StatusCode::CREATED, "{}", second.text);
    assert_eq!(second.body["done"], true);
    app.task(alan, "Break codes").await;

    assert_eq!(
        ids(&app.get(&tasks).await.body),
        vec![id(&first), id(&second.body)]
    );
    let path = format!("/tasks/{}", id(&first));
    assert_eq!(app.get(&path).await.body, first);

    let updated = app.put(&path, json!({"done": true})).await;
    assert_eq!(updated.status, StatusCode::OK, "{}", updated.text);
    assert_eq!(updated.body["done"], true);
    assert_eq!(updated.body["title"], "Write notes");
    let renamed = app.put(&path, json!({"title": "Write more notes"})).await;
    assert_eq!(renamed.body["title"], "Write more notes");
    assert_eq!(renamed.body["done"], true);
    assert_eq!(app.put(&path, json!({})).await.body, renamed.body);

    assert_eq!(app.delete(&path).await.status, StatusCode::NO_CONTENT);
    assert_error(&app.get(&path).await, StatusCode::NOT_FOUND, &["task"]);
    assert_error(&app.delete(&path).await, StatusCode::NOT_FOUND, &["task"]);
    assert_error(
        &app.put(&path, json!({"done": false})).await,
        StatusCode::NOT_FOUND,
        &["task"],
    );
    assert_eq!(ids(&app.get(&tasks).await.body), vec![id(&second.body)]);
    assert_eq!(
        app.get(&format!("/users/{alan}/tasks"))
            .await
            .body
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

async fn task_errors(app: &TestApp) {
    let ada = id(&app.user("Ada", "ada@e.io", None).await);
    assert_error(
        &app.get("/users/999999/tasks").await,
        StatusCode::NOT_FOUND,
        &["user 999999"],
    );
    assert_error(
        &app.post("/users/999999/tasks", json!({"title": "x"})).await,
        StatusCode::NOT_FOUND,
        &["user 999999"],
    );
    let tasks = format!("/users/{ada}/tasks");
    for (body, needle) in [
        (json!({}), "title"),
        (json!({"title": ""}), "title"),
        (json!({"title": "x".repeat(201)}), "title"),
        (json!({"title": 1}), "title"),
        (json!({"title": "x", "done": "no"}), "done"),
        (json!({"title": "x", "priority": 1}), "priority"),
    ] {
        assert_error(
            &app.post(&tasks, body).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            &[needle],
        );
    }
    let task = app.task(ada, "Keep").await;
    let path = format!("/tasks/{}", id(&task));
    assert_error(
        &app.put(&path, json!({"title": " "})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        &["title"],
    );
    assert_error(
        &app.put(&path, json!({"user_id": 2})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        &["user_id"],
    );
    assert_eq!(app.get(&path).await.body, task);
    for p in ["/tasks/x", "/users/x/tasks"] {
        assert_error(
            &app.get(p).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            &["`id`"],
        );
    }
    assert_error(
        &app.delete("/tasks/x").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        &["`id`"],
    );
    assert_error(
        &app.put("/tasks/x", json!({})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        &["`id`"],
    );
    assert_error(
        &app.post("/users/x/tasks", json!({"title": "t"})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        &["`id`"],
    );
    assert_error(
        &app.get("/tasks/424242").await,
        StatusCode::NOT_FOUND,
        &["task 424242"],
    );
}

async fn deleting_user_deletes_tasks(app: &TestApp) {
    let ada = id(&app.user("Ada", "ada@e.io", None).await);
    let alan = id(&app.user("Alan", "alan@e.io", None).await);
    let a1 = id(&app.task(ada, "one").await);
    let a2 = id(&app.task(ada, "two").await);
    let b1 = id(&app.task(alan, "three").await);
    // Warm every cache that holds them.
    for p in [
        format!("/tasks/{a1}"),
        format!("/tasks/{a2}"),
        format!("/users/{ada}/tasks"),
    ] {
        assert_eq!(app.get(&p).await.status, StatusCode::OK);
    }
    assert_eq!(
        app.delete(&format!("/users/{ada}")).await.status,
        StatusCode::NO_CONTENT
    );
    for p in [
        format!("/tasks/{a1}"),
        format!("/tasks/{a2}"),
        format!("/users/{ada}/tasks"),
    ] {
        assert_eq!(app.get(&p).await.status, StatusCode::NOT_FOUND, "{p}");
    }
    assert_eq!(
        app.get(&format!("/tasks/{b1}")).await.status,
        StatusCode::OK
    );
    // The email is free again.
    app.user("Ada again", "ada@e.io", None).await;
}

async fn cache_admin(app: &TestApp) {
    let ada = id(&app.user("Ada", "ada@e.io", None).await);
    app.get(&format!("/users/{ada}")).await;
    let stats = app.stats().await;
    assert_eq!(stats["mode"], app.kind.mode(), "{stats}");
    for field in [
        "hits",
        "misses",
        "errors",
        "invalidations",
        "sets",
        "hit_ratio",
        "degraded",
        "prefixes",
    ] {
        assert!(stats.get(field).is_some(), "stats lack `{field}`: {stats}");
    }
    for kind in ["users", "tasks", "sessions", "all"] {
        let r = app
            .admin_post("/cache/clear", json!({ "cache_type": kind }))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(r.body, json!({ "cleared": kind }));
    }
    for body in [
        json!({"cache_type": "session"}),
        json!({}),
        json!({"cache_type": 1}),
    ] {
        let r = app.admin_post("/cache/clear", body).await;
        assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, &["cache_type"]);
    }
    let r = app
        .admin_post(&format!("/cache/invalidate/user/{ada}"), json!(null))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(
        r.body["invalidated"]
            .as_array()
            .is_some_and(|a| !a.is_empty()),
        "{}",
        r.text
    );
    let r = app
        .admin_request(Method::POST, "/cache/invalidate/user/424242", None)
        .await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "invalidating an unknown user is fine"
    );
    assert_error(
        &app.admin_request(Method::POST, "/cache/invalidate/user/abc", None)
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        &["`id`"],
    );
    assert_eq!(
        app.get(&format!("/users/{ada}")).await.status,
        StatusCode::OK
    );
}

async fn health_and_metrics(app: &TestApp) {
    let r = app.get("/health").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["status"], "ok");
    assert_eq!(r.body["database"]["status"], "ok");
    let backend = match app.db_kind {
        Db::Sqlite => "sqlite",
        Db::Postgres => "postgres",
    };
    assert_eq!(r.body["database"]["backend"], backend);
    assert_eq!(r.body["cache"]["mode"], app.kind.mode(), "{}", r.text);
    if matches!(app.kind, Kind::Redis | Kind::Cluster) {
        let redis = &r.body["cache"]["redis"];
        assert_eq!(redis["reachable"], true, "{}", r.text);
        assert_eq!(redis["circuit"], "closed", "{}", r.text);
        let nodes = redis["nodes"].as_array().expect("nodes");
        match &app.cluster {
            None => assert!(nodes.is_empty(), "one Redis lists no nodes: {}", r.text),
            Some(cluster) => {
                // Every master, each with its own answer to a PING.
                let mut listed: Vec<(u16, Value, Value, bool)> = nodes
                    .iter()
                    .map(|n| {
                        let address = n["address"].as_str().expect("address");
                        let port = address.rsplit_once(':').and_then(|(_, p)| p.parse().ok());
                        let port = port.unwrap_or_else(|| panic!("no port in {address}"));
                        let latency = n["latency_us"].is_u64();
                        (port, n["role"].clone(), n["reachable"].clone(), latency)
                    })
                    .collect();
                listed.sort_by_key(|n| n.0);
                let mut ports: Vec<u16> = cluster.nodes().iter().map(|n| n.port()).collect();
                ports.sort_unstable();
                let expected: Vec<(u16, Value, Value, bool)> = ports
                    .into_iter()
                    .map(|p| (p, json!("master"), json!(true), true))
                    .collect();
                assert_eq!(listed, expected, "{}", r.text);
            }
        }
    }

    let ada = id(&app.user("Ada", "ada@e.io", None).await);
    app.get(&format!("/users/{ada}")).await;
    app.get(&format!("/users/{ada}")).await;
    app.get("/users/abc").await;
    let r = app.get("/metrics").await;
    assert_eq!(r.status, StatusCode::OK);
    let text = &r.text;
    for needle in [
        "# TYPE http_requests_total counter",
        r#"http_requests_total{method="GET",route="/users/{id}",status="200"} 2"#,
        r#"http_requests_total{method="GET",route="/users/{id}",status="422"} 1"#,
        r#"http_requests_total{method="POST",route="/users",status="201"} 1"#,
        "# TYPE http_request_duration_seconds histogram",
        r#"http_request_duration_seconds_bucket{method="GET",route="/users/{id}""#,
        "cache_hit_ratio",
        &format!(r#"cache_mode{{mode="{}"}} 1"#, app.kind.mode()),
    ] {
        assert!(text.contains(needle), "metrics lack {needle:?}:\n{text}");
    }
    if app.kind != Kind::None {
        // Per-prefix counters, fed from the cache's stats at scrape time.
        assert!(
            text.contains(r#"cache_misses_total{prefix="users"}"#),
            "{text}"
        );
        assert!(
            text.contains(r#"cache_hits_total{prefix="users"} 1"#),
            "{text}"
        );
    }
}

async fn health_503_when_database_down(app: &TestApp) {
    app.user("Ada", "ada@e.io", None).await;
    // Closing the pool (shared by every clone of the connection) is a database that is gone.
    app.state.db.clone().close().await.expect("close");
    let r = app.get("/health").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text);
    assert_eq!(r.body["status"], "unavailable");
    assert_eq!(r.body["database"]["status"], "error");
    assert_eq!(
        r.body["cache"]["mode"],
        app.kind.mode(),
        "the cache is still reported"
    );
    // Other endpoints fail in the error shape, without details.
    let r = app
        .post("/users", json!({"name": "B", "email": "b@e.io"}))
        .await;
    assert!(r.status.is_server_error(), "{}", r.text);
    r.error();
}

async fn unknown_routes(app: &TestApp) {
    assert_error(&app.get("/nope").await, StatusCode::NOT_FOUND, &["/nope"]);
    assert_error(
        &app.delete("/users").await,
        StatusCode::METHOD_NOT_ALLOWED,
        &["DELETE"],
    );
    assert_error(
        &app.get("/users/filter").await,
        StatusCode::METHOD_NOT_ALLOWED,
        &["GET"],
    );
}

/// Every read whose answer a user write can change.
async fn user_views(app: &TestApp, user: i64) -> Vec<Value> {
    let mut views = Vec::new();
    for r in [
        app.get(&format!("/users/{user}")).await,
        app.get("/users").await,
        app.get("/users?skip=0&limit=10").await,
        app.post("/users/filter", json!({})).await,
        app.post(
            "/users/filter",
            json!({"conditions": [{"field": "name", "op": "contains", "value": "a"}]}),
        )
        .await,
        app.post("/users/filter-paginated", json!({"limit": 10}))
            .await,
        app.get(&format!("/users/{user}/tasks")).await,
    ] {
        views.push(json!({"status": r.status.as_u16(), "body": r.body}));
    }
    views
}

async fn read_after_user_writes(app: &TestApp) {
    let ada = id(&app.user("Ada", "ada@e.io", Some(30)).await);
    app.task(ada, "t").await;
    // Twice: the second round is served from the cache where there is one.
    user_views(app, ada).await;
    let before = user_views(app, ada).await;

    // Create: the lists and filters must show the new user.
    let alan = id(&app.user("Alan", "alan@e.io", None).await);
    let after = user_views(app, ada).await;
    assert_ne!(before, after);
    assert!(
        ids(&after[1]["body"]).contains(&alan),
        "list is stale: {}",
        after[1]
    );
    assert!(ids(&after[3]["body"]).contains(&alan), "filter is stale");
    assert!(
        ids(&after[4]["body"]).contains(&alan),
        "contains-filter is stale"
    );
    assert_eq!(after[5]["body"]["total"], 2, "paginated filter is stale");

    // Update: every view of Ada shows the new name.
    user_views(app, ada).await;
    let r = app
        .put(&format!("/users/{ada}"), json!({"name": "Zed", "age": 31}))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let after = user_views(app, ada).await;
    assert_eq!(after[0]["body"]["name"], "Zed", "get is stale");
    assert_eq!(after[1]["body"][0]["name"], "Zed", "list is stale");
    assert_eq!(after[2]["body"][0]["age"], 31, "paged list is stale");
    assert_eq!(after[3]["body"][0]["name"], "Zed", "filter is stale");
    assert!(
        !ids(&after[4]["body"]).contains(&ada),
        "contains-filter is stale"
    );
    assert_eq!(
        after[5]["body"]["items"][0]["name"], "Zed",
        "paginated filter is stale"
    );

    // Delete: Ada is gone everywhere, her tasks too.
    user_views(app, ada).await;
    assert_eq!(
        app.delete(&format!("/users/{ada}")).await.status,
        StatusCode::NO_CONTENT
    );
    let after = user_views(app, ada).await;
    assert_eq!(after[0]["status"], 404, "get is stale");
    assert_eq!(ids(&after[1]["body"]), vec![alan], "list is stale");
    assert_eq!(ids(&after[3]["body"]), vec![alan], "filter is stale");
    assert_eq!(after[5]["body"]["total"], 1, "paginated filter is stale");
    assert_eq!(after[6]["status"], 404, "task list is stale");
}

async fn read_after_task_writes(app: &TestApp) {
    let ada = id(&app.user("Ada", "ada@e.io", None).await);
    let list = format!("/users/{ada}/tasks");
    let first = id(&app.task(ada, "first").await);
    let one = format!("/tasks/{first}");
    for _ in 0..2 {
        app.get(&list).await;
        app.get(&one).await;
    }

    let second = id(&app.task(ada, "second").await);
    assert_eq!(
        ids(&app.get(&list).await.body),
        vec![first, second],
        "list stale after create"
    );

    app.get(&one).await;
    let r = app
        .put(&one, json!({"title": "renamed", "done": true}))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let got = app.get(&one).await.body;
    assert_eq!(
        (got["title"].as_str(), got["done"].as_bool()),
        (Some("renamed"), Some(true)),
        "task stale"
    );
    assert_eq!(
        app.get(&list).await.body[0]["title"],
        "renamed",
        "list stale after update"
    );

    app.get(&one).await;
    assert_eq!(app.delete(&one).await.status, StatusCode::NO_CONTENT);
    assert_eq!(
        app.get(&one).await.status,
        StatusCode::NOT_FOUND,
        "task stale after delete"
    );
    assert_eq!(
        ids(&app.get(&list).await.body),
        vec![second],
        "list stale after delete"
    );
}

async fn read_after_admin_invalidation(app: &TestApp) {
    let ada = id(&app.user("Ada", "ada@e.io", None).await);
    let path = format!("/users/{ada}");
    app.get(&path).await;
    app.get("/users").await;
    // An out-of-band write the cache cannot know about...
    sea_orm::ConnectionTrait::execute_unprepared(
        &app.state.db,
        &format!("UPDATE users SET name = 'Changed' WHERE id = {ada}"),
    )
    .await
    .expect("update");
    // ...is visible after the admin invalidation.
    let r = app
        .admin_request(Method::POST, &format!("/cache/invalidate/user/{ada}"), None)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(app.get(&path).await.body["name"], "Changed");
    assert_eq!(app.get("/users").await.body[0]["name"], "Changed");

    sea_orm::ConnectionTrait::execute_unprepared(&app.state.db, "UPDATE users SET name = 'Again'")
        .await
        .expect("update");
    let r = app
        .admin_post("/cache/clear", json!({"cache_type": "all"}))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(app.get(&path).await.body["name"], "Again");
}

async fn concurrent_requests(app: &TestApp) {
    let ada = id(&app.user("Ada", "ada@e.io", None).await);
    // Writers and readers at once: no request fails (SQLite serializes writers, waiting on
    // its busy timeout), and the final reads see every write.
    let mut handles = Vec::new();
    for i in 0..24 {
        let router = app.router.clone();
        handles.push(tokio::spawn(async move {
            let (method, path, body) = match i % 3 {
                0 => (
                    Method::POST,
                    "/users".to_owned(),
                    Some(
                        json!({"name": format!("U{i}"), "email": format!("u{i}@e.io")}).to_string(),
                    ),
                ),
                1 => (
                    Method::POST,
                    format!("/users/{ada}/tasks"),
                    Some(json!({"title": format!("t{i}")}).to_string()),
                ),
                _ => (Method::GET, format!("/users/{ada}/tasks"), None),
            };
            let body = body.as_deref().map(|b| ("application/json", b));
            common::send(&router, method, &path, body).await
        }));
    }
    for handle in handles {
        let r = handle.await.expect("task");
        assert!(r.status.is_success(), "{}: {}", r.status, r.text);
    }
    assert_eq!(
        app.get("/users").await.body.as_array().map(Vec::len),
        Some(9)
    );
    let tasks = app.get(&format!("/users/{ada}/tasks")).await.body;
    assert_eq!(tasks.as_array().map(Vec::len), Some(8), "{tasks}");
}
