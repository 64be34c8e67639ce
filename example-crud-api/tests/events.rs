//! `GET /events` on real processes: a write on one instance reaches another instance's stream,
//! typed as API.md says; the stream says `gap` after Redis comes back and carries events again;
//! topics filter; with Redis disabled, an instance streams its own events.

mod common;

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use common::instances::{Fleet, SharedRedis, Sse};
use common::{Db, id};
use serde_json::{Value, json};

/// Bound on one event's arrival (a sanity bound on a loaded machine, not a benchmark).
const ARRIVAL: Duration = Duration::from_secs(10);

fn data(event: &Sse) -> Value {
    serde_json::from_str(&event.data).unwrap_or_else(|e| panic!("{event:?}: {e}"))
}

/// The first event named `name` about `id`, skipping others.
fn expect(stream: &mut common::instances::EventStream, name: &str, id: i64) -> Value {
    let (_, found) = stream.until(ARRIVAL, |e| {
        e.event == name && data(e)["id"].as_i64() == Some(id)
    });
    let event = found.unwrap_or_else(|| panic!("no {name} for {id} within {ARRIVAL:?}"));
    data(&event)
}

#[test]
fn a_write_on_one_instance_reaches_the_other_instances_stream() {
    let fleet = Fleet::start(2, Db::Sqlite, SharedRedis::start(false));
    let (writer, reader) = (&fleet.instances[0], &fleet.instances[1]);
    let mut all = reader.events("/events");
    let mut tasks_only = reader.events("/events?topics=task");
    assert_eq!(all.status, StatusCode::OK);

    let before = chrono::Utc::now();
    let user = writer.post(
        "/users",
        &json!({"name": "Ada", "email": "ada@example.com"}),
    );
    assert_eq!(user.status, StatusCode::CREATED, "{}", user.text);
    let user_id = id(&user.body);
    let created = expect(&mut all, "user.created", user_id);
    assert_eq!(created["user_id"].as_i64(), Some(user_id));
    let at: chrono::DateTime<chrono::Utc> = created["at"].as_str().unwrap().parse().unwrap();
    assert!(at >= before - chrono::Duration::seconds(1), "{created}");
    assert_eq!(created.as_object().unwrap().len(), 3, "{created}");

    let task = writer.post(
        &format!("/users/{user_id}/tasks"),
        &json!({"title": "Write"}),
    );
    let task_id = id(&task.body);
    for stream in [&mut all, &mut tasks_only] {
        assert_eq!(
            expect(stream, "task.created", task_id)["user_id"].as_i64(),
            Some(user_id)
        );
    }
    assert_eq!(
        writer
            .put(&format!("/tasks/{task_id}"), &json!({"done": true}))
            .status,
        StatusCode::OK
    );
    expect(&mut all, "task.updated", task_id);
    assert_eq!(
        writer.delete(&format!("/tasks/{task_id}")).status,
        StatusCode::NO_CONTENT
    );
    expect(&mut all, "task.deleted", task_id);
    assert_eq!(
        writer
            .put(&format!("/users/{user_id}"), &json!({"age": 37}))
            .status,
        StatusCode::OK
    );
    expect(&mut all, "user.updated", user_id);
    assert_eq!(
        writer.delete(&format!("/users/{user_id}")).status,
        StatusCode::NO_CONTENT
    );
    expect(&mut all, "user.deleted", user_id);

    // The task stream saw its three task events and no user event.
    let (seen, _) = tasks_only.until(Duration::from_millis(500), |_| false);
    assert!(
        seen.iter().all(|e| e.event.starts_with("task.")),
        "{seen:?}"
    );
    // A write that failed published nothing.
    assert_eq!(writer.delete("/tasks/999999").status, StatusCode::NOT_FOUND);
    let (seen, _) = all.until(Duration::from_millis(500), |_| false);
    assert!(seen.is_empty(), "{seen:?}");
}

#[test]
fn after_redis_restarts_the_stream_says_gap_and_carries_events_again() {
    let mut fleet = Fleet::start(2, Db::Sqlite, SharedRedis::start(false));
    let mut stream = fleet.instances[1].events("/events?topics=user");
    let SharedRedis::Server(server) = &mut fleet.redis else {
        unreachable!()
    };
    server.kill();
    // Written while Redis is down: the event is lost (at most once), the write is not.
    let lost = fleet.instances[0].post(
        "/users",
        &json!({"name": "Lost", "email": "lost@example.com"}),
    );
    assert_eq!(lost.status, StatusCode::CREATED, "{}", lost.text);
    let SharedRedis::Server(server) = &mut fleet.redis else {
        unreachable!()
    };
    server.restart();
    let restarted = Instant::now();
    let (before, gap) = stream.until(ARRIVAL, |e| e.event == "gap");
    assert!(gap.is_some(), "no gap within {ARRIVAL:?}: {before:?}");
    eprintln!("gap {:?} after the restart", restarted.elapsed());
    assert!(
        before
            .iter()
            .all(|e| data(e)["id"].as_i64() != Some(id(&lost.body))),
        "an event published while Redis was down arrived: {before:?}"
    );
    // Events flow again (the writer's own connection may need a moment to come back).
    let deadline = Instant::now() + ARRIVAL;
    let mut n = 0;
    loop {
        n += 1;
        let user = fleet.instances[0].post(
            "/users",
            &json!({"name": "Back", "email": format!("back{n}@example.com")}),
        );
        if user.status == StatusCode::CREATED {
            let (_, found) = stream.until(Duration::from_millis(500), |e| {
                e.event == "user.created" && data(e)["id"].as_i64() == Some(id(&user.body))
            });
            if found.is_some() {
                break;
            }
        }
        assert!(Instant::now() < deadline, "no event after the restart");
    }
}

#[test]
fn an_unknown_topic_is_a_422() {
    let fleet = Fleet::start(1, Db::Sqlite, SharedRedis::start(false));
    let bad = fleet.instances[0].get("/events?topics=user,orders");
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", bad.text);
    assert!(bad.error().contains("orders"), "{}", bad.text);
}

#[test]
fn with_redis_disabled_an_instance_streams_its_own_events() {
    let fleet = Fleet::start_with(1, Db::Sqlite, SharedRedis::start(false), |_| {
        vec![("REDIS_ENABLED", "false".to_owned())]
    });
    let instance = &fleet.instances[0];
    let mut stream = instance.events("/events");
    let user = instance.post(
        "/users",
        &json!({"name": "Ada", "email": "ada@example.com"}),
    );
    expect(&mut stream, "user.created", id(&user.body));
}

#[test]
fn with_redis_down_a_stream_is_a_503_and_writes_still_succeed() {
    let mut fleet = Fleet::start(1, Db::Sqlite, SharedRedis::start(false));
    let SharedRedis::Server(server) = &mut fleet.redis else {
        unreachable!()
    };
    server.kill();
    let instance = &fleet.instances[0];
    // The write that finds Redis gone opens the breaker; the event is lost, the write is not.
    let user = instance.post(
        "/users",
        &json!({"name": "Ada", "email": "ada@example.com"}),
    );
    assert_eq!(user.status, StatusCode::CREATED, "{}", user.text);
    let stream = instance.get("/events");
    assert_eq!(
        stream.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        stream.text
    );
    assert!(stream.error().contains("unavailable"), "{}", stream.text);
}
