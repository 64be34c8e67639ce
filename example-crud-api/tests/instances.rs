//! Several real example processes on one database and one Redis (or Redis Cluster): a write
//! through one instance is visible through every other one as soon as the write has answered.
//!
//! Each round warms the views a write will change on every instance, writes through one
//! instance (in turn), then reads those views through the others and compares them with what
//! the writes returned. Any stale answer fails the test, with the round and the views.

mod common;

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use common::instances::{Fleet, Instance, SharedRedis};
use common::{Db, id};
use serde_json::{Value, json};

/// Writes per run.
const WRITES: usize = 300;
/// A run stops after this long even if it has not made every write (a slow machine checks
/// fewer writes; it never fails because of it).
const TIME_BOUND: Duration = Duration::from_secs(60);

#[test]
fn three_instances_on_a_cluster_never_serve_stale_reads() {
    let fleet = Fleet::start(3, Db::Postgres, SharedRedis::start(true));
    check_fleet(&fleet);
}

#[test]
fn three_instances_on_one_redis_never_serve_stale_reads() {
    let fleet = Fleet::start(3, Db::Sqlite, SharedRedis::start(false));
    check_fleet(&fleet);
}

/// The check has teeth: one instance with Redis disabled caches in its own memory, which no
/// other instance's write invalidates (nor do its writes invalidate theirs).
#[test]
fn an_instance_with_a_private_cache_is_caught_serving_stale_reads() {
    let fleet = Fleet::start_with(3, Db::Sqlite, SharedRedis::start(false), |i| {
        if i == 2 {
            vec![("REDIS_ENABLED", "false".to_owned())]
        } else {
            Vec::new()
        }
    });
    let stale = match run(&fleet) {
        Ok(rounds) => panic!("{rounds} writes and no stale read:\n{}", fleet.stats()),
        Err(stale) => stale,
    };
    eprintln!("caught, as it should be: {stale}");
    assert!(
        stale.reader == 2 || stale.writer == 2,
        "the stale read does not involve the instance without Redis: {stale}"
    );
}

/// Runs the rounds and checks that every instance served from Redis and hit its cache (so
/// that the reads were not all misses, which would prove nothing).
fn check_fleet(fleet: &Fleet) {
    let rounds = run(fleet).unwrap_or_else(|stale| panic!("{stale}\n{}", fleet.stats()));
    eprintln!("{rounds} writes checked through every other instance");
    for instance in &fleet.instances {
        let stats = instance.admin_get("/cache/stats").body;
        assert_eq!(
            stats["mode"], "redis",
            "instance {}: {stats}",
            instance.index
        );
        assert!(
            stats["hits"].as_u64() > Some(0),
            "instance {} never hit its cache: {stats}",
            instance.index
        );
    }
}

/// What the writes returned: the state every read must show.
#[derive(Debug, Default)]
struct Model {
    users: BTreeMap<i64, Value>,
    tasks: BTreeMap<i64, Value>,
}

impl Model {
    fn tasks_of(&self, user: i64) -> Vec<Value> {
        self.tasks
            .values()
            .filter(|t| t["user_id"] == user)
            .cloned()
            .collect()
    }

    fn task_ids_of(&self, user: i64) -> Vec<i64> {
        self.tasks_of(user).iter().map(id).collect()
    }

    /// The `n`th user (wrapping), spread over the ids.
    fn pick_user(&self, n: usize) -> i64 {
        let ids: Vec<&i64> = self.users.keys().collect();
        *ids[spread(n) % ids.len()]
    }

    fn pick_task(&self, n: usize) -> Option<(i64, i64)> {
        let tasks: Vec<&Value> = self.tasks.values().collect();
        let task = tasks.get(spread(n) % tasks.len().max(1))?;
        Some((id(task), task["user_id"].as_i64().expect("user_id")))
    }
}

/// A deterministic scramble, so that consecutive rounds touch different rows.
fn spread(n: usize) -> usize {
    n.wrapping_mul(2_654_435_761) >> 7
}

/// The views one write can change.
#[derive(Debug, Clone)]
enum Target {
    /// The user lists and filters; the user itself and some of their tasks when known.
    User { id: Option<i64>, tasks: Vec<i64> },
    /// A user's task list; the task itself when known.
    Task { id: Option<i64>, user: i64 },
}

/// One view as read, or as expected: the status, and the body when the status is 200.
fn view(status: StatusCode, body: &Value) -> Value {
    if status == StatusCode::OK {
        json!({ "status": 200, "body": body })
    } else {
        json!({ "status": status.as_u16() })
    }
}

fn expected_row(row: Option<&Value>) -> Value {
    row.map_or_else(
        || view(StatusCode::NOT_FOUND, &Value::Null),
        |row| view(StatusCode::OK, row),
    )
}

/// Reads every view of `target` through `instance`; returns the first that differs from the
/// model as `(request, expected, got)`.
fn compare(instance: &Instance, model: &Model, target: &Target) -> Result<(), Mismatch> {
    let mut checks: Vec<(String, Option<Value>, Value)> = Vec::new();
    match target {
        Target::User { id: user, tasks } => {
            let users: Vec<Value> = model.users.values().cloned().collect();
            checks.push((
                "GET /users?limit=1000".to_owned(),
                None,
                view(StatusCode::OK, &json!(users)),
            ));
            checks.push((
                "POST /users/filter-paginated".to_owned(),
                Some(json!({ "limit": 1000 })),
                view(
                    StatusCode::OK,
                    &json!({ "items": users, "total": users.len(), "skip": 0, "limit": 1000 }),
                ),
            ));
            if let Some(user) = *user {
                let row = model.users.get(&user);
                checks.push((format!("GET /users/{user}"), None, expected_row(row)));
                checks.push((
                    "POST /users/filter".to_owned(),
                    Some(json!({"conditions": [{"field": "id", "op": "eq", "value": user}]})),
                    view(StatusCode::OK, &json!(row.into_iter().collect::<Vec<_>>())),
                ));
                checks.push((
                    format!("GET /users/{user}/tasks"),
                    None,
                    match row {
                        Some(_) => view(StatusCode::OK, &json!(model.tasks_of(user))),
                        None => view(StatusCode::NOT_FOUND, &Value::Null),
                    },
                ));
            }
            for task in tasks {
                checks.push((
                    format!("GET /tasks/{task}"),
                    None,
                    expected_row(model.tasks.get(task)),
                ));
            }
        }
        Target::Task { id: task, user } => {
            checks.push((
                format!("GET /users/{user}/tasks"),
                None,
                view(StatusCode::OK, &json!(model.tasks_of(*user))),
            ));
            if let Some(task) = task {
                checks.push((
                    format!("GET /tasks/{task}"),
                    None,
                    expected_row(model.tasks.get(task)),
                ));
            }
        }
    }
    for (request, body, expected) in checks {
        let (method, path) = request.split_once(' ').expect("method and path");
        let r = instance.request(method, path, body.as_ref());
        let got = view(r.status, &r.body);
        if got != expected {
            return Err(Mismatch {
                request,
                expected,
                got,
            });
        }
    }
    Ok(())
}

#[derive(Debug)]
struct Mismatch {
    request: String,
    expected: Value,
    got: Value,
}

/// A read that did not show what the writes returned.
#[derive(Debug)]
struct Stale {
    round: usize,
    /// The instance of this round's write.
    writer: usize,
    reader: usize,
    /// Whether the read came after this round's write (else it was the warm-up before it).
    after_write: bool,
    write: String,
    mismatch: Mismatch,
}

impl fmt::Display for Stale {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let when = if self.after_write { "after" } else { "before" };
        write!(
            f,
            "stale read in round {}: instance {} read {} {when} instance {} wrote {}\n\
             expected: {}\n     got: {}",
            self.round,
            self.reader,
            self.mismatch.request,
            self.writer,
            self.write,
            self.mismatch.expected,
            self.mismatch.got,
        )
    }
}

/// One round's write.
#[derive(Debug, Clone, Copy)]
enum Op {
    CreateUser,
    UpdateUser(i64),
    DeleteUser(i64),
    CreateTask { user: i64 },
    UpdateTask { id: i64, user: i64 },
    DeleteTask { id: i64, user: i64 },
}

/// Mostly updates (which replace cached rows), with creations and deletions between them; the
/// number of users stays between 3 and 8, of tasks at least 2.
fn plan(model: &Model, round: usize) -> Op {
    let user = model.pick_user(round);
    let task = model.pick_task(round);
    match (round % 8, task) {
        (5, _) if model.users.len() < 8 => Op::CreateUser,
        (7, _) if model.users.len() > 3 => Op::DeleteUser(user),
        (0 | 3 | 5 | 7, _) => Op::UpdateUser(user),
        (4, Some((id, user))) if model.tasks.len() > 2 => Op::DeleteTask { id, user },
        (1, _) | (_, None) => Op::CreateTask { user },
        (_, Some((id, user))) => Op::UpdateTask { id, user },
    }
}

/// The views `op` changes that exist before it runs.
fn before(op: Op, model: &Model) -> Target {
    let some_tasks = |user| model.task_ids_of(user).into_iter().take(2).collect();
    match op {
        Op::CreateUser => Target::User {
            id: None,
            tasks: Vec::new(),
        },
        Op::UpdateUser(user) | Op::DeleteUser(user) => Target::User {
            id: Some(user),
            tasks: some_tasks(user),
        },
        Op::CreateTask { user } => Target::Task { id: None, user },
        Op::UpdateTask { id, user } | Op::DeleteTask { id, user } => {
            Target::Task { id: Some(id), user }
        }
    }
}

/// Runs `op` through `writer` and applies its answer to `model`; returns the views it changed
/// (those of [`before`], and the created row) and a description of it.
fn write(writer: &Instance, model: &mut Model, op: Op, round: usize) -> (Target, String) {
    let expect = |r: &common::Resp, status: StatusCode| {
        assert_eq!(
            r.status, status,
            "round {round}: {op:?} through instance {}: {}",
            writer.index, r.text
        );
    };
    let mut target = before(op, model);
    let description = match op {
        Op::CreateUser => {
            let body = json!({"name": format!("User {round}"), "email": format!("u{round}@e.io")});
            let r = writer.post("/users", &body);
            expect(&r, StatusCode::CREATED);
            let user = id(&r.body);
            model.users.insert(user, r.body);
            target = Target::User {
                id: Some(user),
                tasks: Vec::new(),
            };
            format!("POST /users {body}")
        }
        Op::UpdateUser(user) => {
            let body = json!({
                "name": format!("Name {round}"),
                "age": round % 150,
                "is_active": !round.is_multiple_of(3),
            });
            let r = writer.put(&format!("/users/{user}"), &body);
            expect(&r, StatusCode::OK);
            model.users.insert(user, r.body);
            format!("PUT /users/{user} {body}")
        }
        Op::DeleteUser(user) => {
            let r = writer.delete(&format!("/users/{user}"));
            expect(&r, StatusCode::NO_CONTENT);
            model.users.remove(&user);
            model.tasks.retain(|_, t| t["user_id"] != user);
            format!("DELETE /users/{user}")
        }
        Op::CreateTask { user } => {
            let body = json!({ "title": format!("Task {round}") });
            let r = writer.post(&format!("/users/{user}/tasks"), &body);
            expect(&r, StatusCode::CREATED);
            let task = id(&r.body);
            model.tasks.insert(task, r.body);
            target = Target::Task {
                id: Some(task),
                user,
            };
            format!("POST /users/{user}/tasks {body}")
        }
        Op::UpdateTask { id: task, .. } => {
            let body =
                json!({ "title": format!("Title {round}"), "done": round.is_multiple_of(2) });
            let r = writer.put(&format!("/tasks/{task}"), &body);
            expect(&r, StatusCode::OK);
            model.tasks.insert(task, r.body);
            format!("PUT /tasks/{task} {body}")
        }
        Op::DeleteTask { id: task, .. } => {
            let r = writer.delete(&format!("/tasks/{task}"));
            expect(&r, StatusCode::NO_CONTENT);
            model.tasks.remove(&task);
            format!("DELETE /tasks/{task}")
        }
    };
    (target, description)
}

/// Up to [`WRITES`] rounds (bounded by [`TIME_BOUND`]), the writer taking turns; returns the
/// number of writes checked, or the first stale read.
fn run(fleet: &Fleet) -> Result<usize, Box<Stale>> {
    let instances = &fleet.instances;
    let mut model = Model::default();
    // Three users with two tasks each, through the first instance.
    for u in 0..3 {
        let r = instances[0].post(
            "/users",
            &json!({"name": format!("Seed {u}"), "email": format!("seed{u}@e.io")}),
        );
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        let user = id(&r.body);
        model.users.insert(user, r.body);
        for t in 0..2 {
            let r = instances[0].post(
                &format!("/users/{user}/tasks"),
                &json!({ "title": format!("Seed {u}.{t}") }),
            );
            assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
            model.tasks.insert(id(&r.body), r.body);
        }
    }

    let started = Instant::now();
    for round in 0..WRITES {
        if started.elapsed() > TIME_BOUND {
            eprintln!("stopped after {round} writes: the time bound is reached");
            return Ok(round);
        }
        let writer = &instances[round % instances.len()];
        // Warm (and check) what the write will change, on every instance.
        let op = plan(&model, round);
        let warm = before(op, &model);
        for reader in instances {
            compare(reader, &model, &warm).map_err(|mismatch| {
                Box::new(Stale {
                    round,
                    writer: writer.index,
                    reader: reader.index,
                    after_write: false,
                    write: format!("(not yet: {op:?})"),
                    mismatch,
                })
            })?;
        }
        let (target, description) = write(writer, &mut model, op, round);
        for reader in instances.iter().filter(|i| i.index != writer.index) {
            compare(reader, &model, &target).map_err(|mismatch| {
                Box::new(Stale {
                    round,
                    writer: writer.index,
                    reader: reader.index,
                    after_write: true,
                    write: description.clone(),
                    mismatch,
                })
            })?;
        }
    }
    Ok(WRITES)
}
