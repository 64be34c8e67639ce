//! Caching behaviour seen from outside: the keys in Redis and their TTLs, cache administration,
//! hits, isolation between apps, coherence between instances, and Redis (or a cluster node)
//! dying mid-sequence.

mod common;

use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use common::{Db, Kind, TestApp, cache_for, id, send};
use example_crud_api::{AppState, app};
use serde_json::json;

/// The cache entries in Redis (invalidation markers left out).
fn entries(app: &TestApp) -> Vec<String> {
    let mut keys: Vec<String> = app.redis().query(&["KEYS", "*"]);
    keys.retain(|k| !k.starts_with("__inv:"));
    keys.sort();
    keys
}

fn has_prefix(keys: &[String], prefix: &str) -> bool {
    keys.iter().any(|k| {
        k.strip_prefix(prefix)
            .is_some_and(|hash| !hash.is_empty() && hash.chars().all(|c| c.is_ascii_hexdigit()))
    })
}

/// Creates a user with a task and reads every cached view once.
async fn populate(app: &TestApp) -> (i64, i64) {
    let user = id(&app.user("Ada", "ada@e.io", Some(36)).await);
    let task = id(&app.task(user, "Write").await);
    for r in [
        app.get(&format!("/users/{user}")).await,
        app.get("/users?limit=10").await,
        app.post(
            "/users/filter",
            json!({"conditions": [{"field": "age", "op": "gt", "value": 1}]}),
        )
        .await,
        app.post("/users/filter-paginated", json!({})).await,
        app.get(&format!("/users/{user}/tasks")).await,
        app.get(&format!("/tasks/{task}")).await,
    ] {
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    }
    (user, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_appear_in_redis_with_ttls() {
    for db in [Db::Sqlite, Db::Postgres] {
        let app = TestApp::new(db, Kind::Redis).await;
        let (user, task) = populate(&app).await;
        let keys = entries(&app);
        for exact in [
            format!("users:{user}"),
            format!("users:{user}:tasks"),
            format!("tasks:{task}"),
        ] {
            assert!(keys.contains(&exact), "{exact} missing from {keys:?}");
        }
        for prefix in ["users:list:", "users:filter:", "users:filter:paginated:"] {
            assert!(has_prefix(&keys, prefix), "no {prefix}<hash> in {keys:?}");
        }
        assert_eq!(keys.len(), 6, "unexpected keys: {keys:?}");
        for key in &keys {
            let ttl: i64 = app.redis().query(&["TTL", key]);
            let max = if key.starts_with("users:list")
                || key.starts_with("users:filter")
                || key.ends_with(":tasks")
            {
                60
            } else {
                300
            };
            // Allow the runtime a little jitter around the configured TTL.
            assert!(
                ttl > 0 && ttl <= max + max / 5,
                "TTL of {key} is {ttl}, expected about {max}"
            );
        }
        // Values are readable JSON holding the row.
        let raw: String = app.redis().query(&["GET", &format!("users:{user}")]);
        assert!(raw.contains("ada@e.io"), "{raw}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_reads_are_hits() {
    for kind in [Kind::Redis, Kind::Memory] {
        let app = TestApp::new(Db::Sqlite, kind).await;
        let (user, task) = populate(&app).await;
        let before = app.hits().await;
        populate_reads(&app, user, task).await;
        assert_eq!(
            app.hits().await,
            before + 6,
            "{kind:?}: every second read is a hit"
        );
        let prefixes = &app.stats().await["prefixes"];
        assert!(prefixes["users"]["hits"].as_u64() >= Some(5), "{prefixes}");
        assert!(prefixes["tasks"]["hits"].as_u64() >= Some(1), "{prefixes}");
    }
    let app = TestApp::new(Db::Sqlite, Kind::None).await;
    let (user, task) = populate(&app).await;
    populate_reads(&app, user, task).await;
    assert_eq!(app.hits().await, 0, "no cache, no hits");
}

async fn populate_reads(app: &TestApp, user: i64, task: i64) {
    for r in [
        app.get(&format!("/users/{user}")).await,
        app.get("/users?limit=10").await,
        app.post(
            "/users/filter",
            json!({"conditions": [{"field": "age", "op": "gt", "value": 1}]}),
        )
        .await,
        app.post("/users/filter-paginated", json!({})).await,
        app.get(&format!("/users/{user}/tasks")).await,
        app.get(&format!("/tasks/{task}")).await,
    ] {
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_found_is_not_cached() {
    let app = TestApp::new(Db::Sqlite, Kind::Redis).await;
    assert_eq!(app.get("/users/1").await.status, StatusCode::NOT_FOUND);
    assert_eq!(
        app.get("/users/1/tasks").await.status,
        StatusCode::NOT_FOUND
    );
    assert!(entries(&app).is_empty(), "{:?}", entries(&app));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clear_removes_only_this_caches_keys() {
    let app = TestApp::new(Db::Sqlite, Kind::Redis).await;
    let (user, task) = populate(&app).await;
    app.redis().cli(&["SET", "foreign:key", "kept"]);
    app.redis().cli(&["SET", "users:foreign", "kept too"]);

    let r = app
        .admin_post("/cache/clear", json!({"cache_type": "users"}))
        .await;
    assert_eq!(r.body, json!({"cleared": "users"}));
    let keys = entries(&app);
    let mut expected = vec![
        format!("tasks:{task}"),
        "foreign:key".to_owned(),
        "users:foreign".to_owned(),
    ];
    expected.sort();
    assert_eq!(keys, expected, "only this cache's users entries go");

    populate_reads(&app, user, task).await;
    let r = app
        .admin_post("/cache/clear", json!({"cache_type": "tasks"}))
        .await;
    assert_eq!(r.body, json!({"cleared": "tasks"}));
    let keys = entries(&app);
    assert!(!keys.contains(&format!("tasks:{task}")), "{keys:?}");
    assert!(keys.contains(&format!("users:{user}")), "{keys:?}");

    // With `CACHE_PREFIX` empty the keyspace may be shared: "all" invalidates everything at
    // once (every entry is stale) but deletes nothing, other applications' envelopes included.
    populate_reads(&app, user, task).await;
    let before = entries(&app);
    let loads = app.stats().await["loads"].as_u64().unwrap();
    let r = app
        .admin_post("/cache/clear", json!({"cache_type": "all"}))
        .await;
    assert_eq!(r.body, json!({"cleared": "all"}));
    assert_eq!(entries(&app), before, "nothing deleted");
    populate_reads(&app, user, task).await;
    assert!(
        app.stats().await["loads"].as_u64().unwrap() > loads,
        "every entry was stale after clearing all"
    );
    let value: String = app.redis().query(&["GET", "foreign:key"]);
    assert_eq!(value, "kept");

    // Still correct, and caching again.
    populate_reads(&app, user, task).await;
    assert!(entries(&app).len() > 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apps_in_one_process_keep_their_own_caches() {
    let redis_app = TestApp::new(Db::Sqlite, Kind::Redis).await;
    let memory_app = TestApp::new(Db::Sqlite, Kind::Memory).await;
    populate(&memory_app).await;
    assert!(
        entries(&redis_app).is_empty(),
        "the memory app wrote to the other app's Redis"
    );
    assert_eq!(redis_app.stats().await["misses"], 0);
    populate(&redis_app).await;
    assert_eq!(entries(&redis_app).len(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_sharing_redis_never_serve_stale_rows() {
    for db in [Db::Sqlite, Db::Postgres] {
        let a = TestApp::new(db, Kind::Redis).await;
        // A second instance: same database, same Redis, its own cache handle.
        let b_cache = cache_for(Kind::Redis, a.redis.as_ref()).await;
        let b = app(AppState::new(a.state.db.clone(), b_cache));
        let (user, task) = populate(&a).await;
        let get = |path: String| {
            let b = b.clone();
            async move { send(&b, Method::GET, &path, None).await }
        };
        assert_eq!(get(format!("/users/{user}")).await.body["name"], "Ada");
        assert_eq!(get(format!("/tasks/{task}")).await.body["done"], false);

        let r = a
            .put(&format!("/users/{user}"), json!({"name": "Zed"}))
            .await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(get(format!("/users/{user}")).await.body["name"], "Zed");
        assert_eq!(get("/users".into()).await.body[0]["name"], "Zed");

        let r = a
            .put(&format!("/tasks/{task}"), json!({"done": true}))
            .await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(get(format!("/tasks/{task}")).await.body["done"], true);
        assert_eq!(
            get(format!("/users/{user}/tasks")).await.body[0]["done"],
            true
        );

        assert_eq!(
            a.delete(&format!("/users/{user}")).await.status,
            StatusCode::NO_CONTENT
        );
        assert_eq!(
            get(format!("/users/{user}")).await.status,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            get(format!("/tasks/{task}")).await.status,
            StatusCode::NOT_FOUND
        );
    }
}

/// A sequence of reads and writes with checks, used while Redis is down.
async fn sequence(app: &TestApp, user: i64, round: usize) {
    let path = format!("/users/{user}");
    let r = app.get(&path).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let name = format!("Name {round}");
    let r = app.put(&path, json!({ "name": name })).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(app.get(&path).await.body["name"], name);
    assert_eq!(app.get("/users").await.body[0]["name"], name);
    let r = app
        .post(
            "/users/filter",
            json!({"conditions": [{"field": "name", "op": "eq", "value": name}]}),
        )
        .await;
    assert_eq!(r.body[0]["id"], user, "{}", r.text);
    let task = app.task(user, &format!("task {round}")).await;
    let tasks = app.get(&format!("/users/{user}/tasks")).await;
    assert_eq!(tasks.status, StatusCode::OK);
    assert_eq!(tasks.body.as_array().map(Vec::len), Some(round + 2));
    let r = app
        .put(&format!("/tasks/{}", id(&task)), json!({"done": true}))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        app.get(&format!("/tasks/{}", id(&task))).await.body["done"],
        true
    );
    assert_eq!(app.get("/health").await.status, StatusCode::OK);
    assert_eq!(app.admin_get("/cache/stats").await.status, StatusCode::OK);
    assert_eq!(app.get("/metrics").await.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_mid_sequence_then_restarted() {
    let mut app = TestApp::new(Db::Sqlite, Kind::Redis).await;
    let (user, _) = populate(&app).await;
    sequence(&app, user, 0).await;

    app.redis_mut().kill();
    for round in 1..4 {
        sequence(&app, user, round).await;
    }
    let health = app.get("/health").await;
    assert_eq!(health.status, StatusCode::OK, "Redis down is not unhealthy");
    assert_eq!(
        health.body["cache"]["redis"]["reachable"], false,
        "{}",
        health.text
    );
    assert_eq!(app.stats().await["degraded"], true);

    app.redis_mut().restart();
    app.wait_for_mode("redis", Duration::from_secs(30)).await;
    sequence(&app, user, 4).await;
    let path = format!("/users/{user}");
    assert_eq!(app.get(&path).await.body["name"], "Name 4");
    let before = app.hits().await;
    assert_eq!(app.get(&path).await.body["name"], "Name 4");
    assert_eq!(app.get(&path).await.body["name"], "Name 4");
    assert!(app.hits().await > before, "hits resume after Redis returns");
    assert!(entries(&app).contains(&format!("users:{user}")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_redis_costs_little_and_stays_correct() {
    let app = TestApp::new(Db::Sqlite, Kind::Redis).await;
    let (user, _) = populate(&app).await;
    app.redis().pause();
    let started = Instant::now();
    for round in 0..3 {
        sequence(&app, user, round).await;
    }
    app.redis().resume();
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "a hung Redis slowed requests to {:?}",
        started.elapsed()
    );
    app.wait_for_mode("redis", Duration::from_secs(30)).await;
    assert_eq!(
        app.get(&format!("/users/{user}")).await.body["name"],
        "Name 2"
    );
}

/// `/health` polled until `done` holds for its body (a cluster's view of a node changes a few
/// moments after the node does); panics with the last body after 30 s.
async fn health_until(app: &TestApp, what: &str, done: impl Fn(&serde_json::Value) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = app.get("/health").await;
        assert_eq!(r.status, StatusCode::OK, "a Redis node is never unhealthy");
        if done(&r.body) {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: {}", r.text);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The cluster's nodes in `/health`, as `(port, reachable)`, sorted.
fn health_nodes(health: &serde_json::Value) -> Vec<(u16, bool)> {
    let mut nodes: Vec<(u16, bool)> = health["cache"]["redis"]["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| {
            let port = n["address"].as_str()?.rsplit_once(':')?.1.parse().ok()?;
            Some((port, n["reachable"].as_bool()?))
        })
        .collect();
    nodes.sort_unstable();
    nodes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_node_killed_then_restarted() {
    let mut app = TestApp::new(Db::Sqlite, Kind::Cluster).await;
    let (user, _) = populate(&app).await;
    sequence(&app, user, 0).await;
    let mut ports: Vec<u16> = app.cluster().nodes().iter().map(|n| n.port()).collect();
    ports.sort_unstable();
    let all_up: Vec<(u16, bool)> = ports.iter().map(|&p| (p, true)).collect();
    health_until(&app, "every node up", |h| health_nodes(h) == all_up).await;

    // The master of the user's row: without replicas, its slots are lost until it returns.
    let dead = app.cluster().master_of(&format!("users:{user}"));
    let dead_port = app.cluster().nodes()[dead].port();
    app.cluster_mut().node_mut(dead).kill();
    let one_down: Vec<(u16, bool)> = ports.iter().map(|&p| (p, p != dead_port)).collect();
    health_until(&app, "the killed node is listed unreachable", |h| {
        health_nodes(h) == one_down
    })
    .await;
    // Requests stay correct meanwhile (from whatever the cache can still use, or the database).
    for round in 1..3 {
        sequence(&app, user, round).await;
    }

    app.cluster_mut().restart();
    health_until(&app, "every node up again", |h| health_nodes(h) == all_up).await;
    app.wait_for_mode("redis", Duration::from_secs(30)).await;
    sequence(&app, user, 3).await;
    let path = format!("/users/{user}");
    let before = app.hits().await;
    assert_eq!(app.get(&path).await.body["name"], "Name 3");
    assert_eq!(app.get(&path).await.body["name"], "Name 3");
    assert!(
        app.hits().await > before,
        "hits resume after the node returns"
    );
}
