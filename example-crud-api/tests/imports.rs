//! `POST /users/{id}/tasks/import` under the distributed lock `import:<id>`: concurrent imports
//! through two real processes leave exactly one request's list; a held lock answers 409 and
//! `?wait_ms` waits for it; a stale holder (its lock lost, its fencing token superseded)
//! writes nothing; bad input is a 422 that changes nothing.

mod common;

use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use cache_runtime::lock::Locks;
use common::instances::{Fleet, SharedRedis};
use common::{Db, Kind, TestApp, id};
use example_crud_api::service::imports::{self, Import};
use example_crud_api::service::tasks::NewTask;
use serde_json::{Value, json};

fn list(request: usize, n: usize) -> Value {
    let tasks: Vec<Value> = (0..n)
        .map(|i| json!({"title": format!("r{request}-{i}"), "done": i % 2 == 0}))
        .collect();
    json!({ "tasks": tasks })
}

fn titles(tasks: &Value) -> Vec<String> {
    tasks
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {tasks}"))
        .iter()
        .map(|t| t["title"].as_str().unwrap().to_owned())
        .collect()
}

/// Checks that `tasks` is exactly request `r`'s list of `n` tasks, in order.
fn is_list_of(tasks: &Value, r: usize, n: usize) -> bool {
    titles(tasks) == (0..n).map(|i| format!("r{r}-{i}")).collect::<Vec<_>>()
}

/// 8 imports of one user at once through two instances (4 each), every list spanning several
/// batches: all succeed one after the other (they wait), and the list is exactly one of them.
/// Then 8 more that do not wait: the 409s change nothing, and the list is one 201's.
#[test]
fn concurrent_imports_through_two_instances_leave_exactly_one_list() {
    let fleet = Fleet::start(2, Db::Postgres, SharedRedis::start(false));
    let user = fleet.instances[0].post(
        "/users",
        &json!({"name": "Ada", "email": "ada@example.com"}),
    );
    let user_id = id(&user.body);
    let size = |r: usize| 150 + 20 * r;
    for (round, wait_ms) in [(0, 30_000), (1, 0)] {
        let answers: Vec<(usize, StatusCode, String)> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|r| {
                    let instance = &fleet.instances[r % 2];
                    let body = list(r + 8 * round, size(r));
                    s.spawn(move || {
                        let resp = instance.post(
                            &format!("/users/{user_id}/tasks/import?wait_ms={wait_ms}"),
                            &body,
                        );
                        (r + 8 * round, resp.status, resp.text)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let created: Vec<usize> = answers
            .iter()
            .filter(|(_, status, _)| *status == StatusCode::CREATED)
            .map(|(r, ..)| *r)
            .collect();
        for (r, status, text) in &answers {
            match *status {
                StatusCode::CREATED => {
                    let n = size(r % 8);
                    assert_eq!(serde_json::from_str::<Value>(text).unwrap()["imported"], n);
                }
                StatusCode::CONFLICT => assert!(wait_ms == 0, "a waiting import got 409: {text}"),
                other => panic!("import {r}: {other} {text}"),
            }
        }
        assert!(
            !created.is_empty(),
            "round {round}: no import succeeded: {answers:?}"
        );
        if wait_ms > 0 {
            assert_eq!(created.len(), 8, "{answers:?}");
        }
        // Exactly one request's list, the same through both instances (and their caches).
        let lists: Vec<Value> = fleet
            .instances
            .iter()
            .map(|i| i.get(&format!("/users/{user_id}/tasks")).body)
            .collect();
        assert_eq!(lists[0], lists[1]);
        let owner = created
            .iter()
            .find(|&&r| is_list_of(&lists[0], r, size(r % 8)))
            .unwrap_or_else(|| {
                panic!(
                    "round {round}: the list is no single import's: {:?}",
                    titles(&lists[0])
                )
            });
        eprintln!(
            "round {round}: {} imports answered 201, the list is import {owner}'s",
            created.len()
        );
    }
}

/// A lock held elsewhere (here: its key, written as another instance would) answers 409 at
/// once; `?wait_ms` waits until it is free; bad input is 422 and 404 as API.md says.
#[tokio::test]
async fn a_held_lock_is_a_409_and_wait_ms_waits_for_it() {
    let app = TestApp::new(Db::Sqlite, Kind::Redis).await;
    let user = app.user("Ada", "ada@example.com", None).await;
    let user_id = id(&user);
    let path = format!("/users/{user_id}/tasks/import");
    let locks = Locks::for_cache(&app.state.cache);
    let held = locks
        .try_acquire(&format!("import:{user_id}"), Duration::from_millis(1500))
        .await
        .expect("the lock");
    let busy = app.post(&path, list(1, 3)).await;
    assert_eq!(busy.status, StatusCode::CONFLICT, "{}", busy.text);
    assert!(busy.error().contains("wait_ms"), "{}", busy.text);
    let started = Instant::now();
    let waited = app.post(&format!("{path}?wait_ms=10000"), list(1, 3)).await;
    assert_eq!(waited.status, StatusCode::CREATED, "{}", waited.text);
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    assert!(!held.is_held());
    assert!(is_list_of(
        &app.get(&format!("/users/{user_id}/tasks")).await.body,
        1,
        3
    ));

    for (query, body, want) in [
        ("", json!({"tasks": []}), StatusCode::UNPROCESSABLE_ENTITY),
        ("", list(2, 1001), StatusCode::UNPROCESSABLE_ENTITY),
        (
            "",
            json!({"tasks": [{"title": "ok"}, {"title": "  "}]}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "?wait_ms=30001",
            list(2, 1),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        ("?wait_ms=-1", list(2, 1), StatusCode::UNPROCESSABLE_ENTITY),
        (
            "",
            json!({"tasks": [{"title": "x", "extra": 1}]}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
    ] {
        let resp = app.post(&format!("{path}{query}"), body).await;
        assert_eq!(resp.status, want, "{query}: {}", resp.text);
    }
    let bad_title = app
        .post(&path, json!({"tasks": [{"title": "ok"}, {"title": ""}]}))
        .await;
    assert!(bad_title.error().contains("tasks[1]"), "{}", bad_title.text);
    let unknown = app.post("/users/999999/tasks/import", list(2, 1)).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND, "{}", unknown.text);
    // Nothing above changed the list.
    assert!(is_list_of(
        &app.get(&format!("/users/{user_id}/tasks")).await.body,
        1,
        3
    ));
}

/// With Redis enabled but down, an import is refused with 503 and `Retry-After` (a lock is
/// never granted without Redis), and the list stays.
#[tokio::test]
async fn with_redis_down_an_import_is_a_503() {
    let mut app = TestApp::new(Db::Sqlite, Kind::Redis).await;
    let user = app.user("Ada", "ada@example.com", None).await;
    let path = format!("/users/{}/tasks/import", id(&user));
    assert_eq!(
        app.post(&path, list(1, 2)).await.status,
        StatusCode::CREATED
    );
    app.redis_mut().kill();
    let resp = app.post(&path, list(2, 2)).await;
    assert_eq!(
        resp.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        resp.text
    );
    assert!(
        resp.headers.contains_key("retry-after"),
        "{:?}",
        resp.headers
    );
    app.redis_mut().restart();
    let tasks = app.get(&format!("/users/{}/tasks", id(&user))).await;
    assert!(is_list_of(&tasks.body, 1, 2), "{}", tasks.text);
}

fn tasks(prefix: &str, n: usize) -> Vec<(String, bool)> {
    let import = Import {
        tasks: (0..n)
            .map(|i| NewTask {
                title: format!("{prefix}-{i}"),
                done: false,
            })
            .collect(),
    };
    imports::validate(import).expect("valid")
}

/// A holder that stalled past its TTL still believes it holds the lock: the next holder
/// imports, then the stale one tries. The database's fence refuses it (its token is lower),
/// it writes nothing, and the list is the newer import's. And a holder whose lock is known
/// lost does not start.
#[tokio::test]
async fn a_stale_holder_writes_nothing() {
    let app = TestApp::new(Db::Sqlite, Kind::Redis).await;
    let user = app.user("Ada", "ada@example.com", None).await;
    let user_id = i32::try_from(id(&user)).unwrap();
    let db = &app.state.db;
    let locks = Locks::for_cache(&app.state.cache);
    let name = format!("import:{user_id}");
    let stale = locks
        .try_acquire(&name, Duration::from_secs(30))
        .await
        .expect("lock");
    // Its key vanishes (expired during a pause the holder did not notice).
    let key = format!("lock:{{{name}}}");
    let deleted: i64 = app.redis().query(&["DEL", &key]);
    assert_eq!(deleted, 1, "the lock key is {key}");
    let fresh = locks
        .try_acquire(&name, Duration::from_secs(30))
        .await
        .expect("lock");
    assert!(fresh.fencing_token() > stale.fencing_token());
    let done = cache_runtime::scope(app.state.cache.clone(), async {
        imports::replace_tasks(db, user_id, tasks("fresh", 150), &fresh).await
    })
    .await
    .expect("the fresh import");
    assert_eq!(done.created.len(), 150);
    assert!(stale.is_held(), "the stale holder does not know");
    let refused = cache_runtime::scope(app.state.cache.clone(), async {
        imports::replace_tasks(db, user_id, tasks("stale", 150), &stale).await
    })
    .await;
    assert!(refused.is_err(), "the stale holder's import went through");
    let listed = app
        .request(Method::GET, &format!("/users/{user_id}/tasks"), None)
        .await;
    let names = titles(&listed.body);
    assert_eq!(names.len(), 150);
    assert!(names.iter().all(|t| t.starts_with("fresh-")), "{names:?}");

    // A holder that knows it lost the lock writes nothing at all.
    fresh.release().await.expect("release");
    let short = locks
        .try_acquire(&name, Duration::from_millis(100))
        .await
        .expect("lock");
    tokio::time::timeout(Duration::from_secs(5), short.lost())
        .await
        .expect("lost after its TTL");
    let lost = cache_runtime::scope(app.state.cache.clone(), async {
        imports::replace_tasks(db, user_id, tasks("late", 10), &short).await
    })
    .await;
    assert!(lost.is_err());
    let listed = app.get(&format!("/users/{user_id}/tasks")).await;
    assert!(titles(&listed.body).iter().all(|t| t.starts_with("fresh-")));
}

/// The lock is taken over in the middle of an import over HTTP (its key overwritten while the
/// import waits for its next batch, as after an expiry it did not notice): the import stops
/// at that batch, deletes what it had written, answers 409, and the list is the one before.
/// The test holds the fence row (`FOR UPDATE`) to catch the import between two batches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_lost_mid_import_leaves_nothing_half_done() {
    use sea_orm::{ConnectionTrait, TransactionTrait};

    let app = TestApp::new(Db::Postgres, Kind::Redis).await;
    let user = app.user("Ada", "ada@example.com", None).await;
    let user_id = id(&user);
    let path = format!("/users/{user_id}/tasks/import");
    assert_eq!(
        app.post(&path, list(1, 3)).await.status,
        StatusCode::CREATED
    );
    let db = &app.state.db;
    let count = |request: usize| async move {
        let row = db
            .query_one_raw(sea_orm::Statement::from_string(
                db.get_database_backend(),
                format!("SELECT COUNT(*) AS n FROM tasks WHERE title LIKE 'r{request}-%'"),
            ))
            .await
            .expect("count")
            .expect("a row");
        row.try_get::<i64>("", "n").expect("n")
    };
    let mut conclusive = 0;
    for request in 2..5 {
        let router = app.router.clone();
        let (path, body) = (path.clone(), list(request, 1000).to_string());
        let import = tokio::spawn(async move {
            common::send(
                &router,
                Method::POST,
                &path,
                Some(("application/json", &body)),
            )
            .await
        });
        // Its first batch is in.
        let deadline = Instant::now() + Duration::from_secs(20);
        while count(request).await < 100 {
            assert!(Instant::now() < deadline, "the import never wrote a batch");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let fence = db.begin().await.expect("begin");
        fence
            .execute_unprepared(&format!(
                "SELECT token FROM import_fences WHERE user_id = {user_id} FOR UPDATE"
            ))
            .await
            .expect("row lock");
        let key = format!("lock:{{import:{user_id}}}");
        let () = app.redis().query(&["SET", &key, "thief", "PX", "60000"]);
        let finished = import.is_finished();
        fence.commit().await.expect("commit");
        let resp = import.await.expect("the import task");
        let _: i64 = app.redis().query(&["DEL", &key]);
        if finished {
            eprintln!("import {request} ended before the test held its fence; again");
            continue;
        }
        conclusive += 1;
        assert_eq!(resp.status, StatusCode::CONFLICT, "{}", resp.text);
        assert!(resp.error().contains("lost"), "{}", resp.text);
        assert_eq!(count(request).await, 0, "rows of the aborted import remain");
        let listed = app.get(&format!("/users/{user_id}/tasks")).await;
        assert!(is_list_of(&listed.body, 1, 3), "{}", listed.text);
        break;
    }
    assert_eq!(
        conclusive, 1,
        "no round caught the import between two batches"
    );
    // The lock is free again: the next import goes through.
    assert_eq!(
        app.post(&path, list(9, 2)).await.status,
        StatusCode::CREATED
    );
}
