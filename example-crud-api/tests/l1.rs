//! The two-level cache over HTTP, on real processes: two instances with `CACHE_L1=true` on one
//! Redis. Repeated reads are L1 hits; a write on one instance is read by the writer at once and
//! by the other within one message; `/metrics` and `/cache/stats` show the L1.

mod common;

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use common::instances::{Fleet, SharedRedis};
use common::{Db, id};
use serde_json::json;

/// The value of an unlabelled Prometheus sample.
fn sample(metrics: &str, name: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

#[test]
fn instances_with_l1_read_each_others_writes() {
    let fleet = Fleet::start_with(2, Db::Sqlite, SharedRedis::start(false), |_| {
        vec![("CACHE_L1", "true".to_owned())]
    });
    let (writer, reader) = (&fleet.instances[0], &fleet.instances[1]);
    let user = writer.post(
        "/users",
        &json!({"name": "Ada", "email": "ada@example.com"}),
    );
    assert_eq!(user.status, StatusCode::CREATED, "{}", user.text);
    let path = format!("/users/{}", id(&user.body));
    for _ in 0..5 {
        assert_eq!(reader.get(&path).body["name"], "Ada");
    }
    let metrics = reader.get("/metrics").text;
    assert_eq!(sample(&metrics, "cache_l1_live"), Some(1.0), "{metrics}");
    assert!(
        sample(&metrics, "cache_l1_hits_total").is_some_and(|hits| hits >= 4.0),
        "repeated reads come from the L1: {metrics}"
    );

    let renamed = writer.put(&path, &json!({"name": "Grace"}));
    assert_eq!(renamed.status, StatusCode::OK, "{}", renamed.text);
    assert_eq!(
        writer.get(&path).body["name"],
        "Grace",
        "the writer reads its write"
    );
    let written = Instant::now();
    while reader.get(&path).body["name"] != "Grace" {
        assert!(
            written.elapsed() < Duration::from_secs(5),
            "the reader never saw the write: {}",
            fleet.stats()
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    eprintln!(
        "the reader saw the write {:?} after it returned",
        written.elapsed()
    );
    let stats: serde_json::Value =
        serde_json::from_str(&reader.admin_get("/cache/stats").text).expect("json");
    assert!(stats["l1"]["messages"].as_u64() >= Some(1), "{stats}");
}
