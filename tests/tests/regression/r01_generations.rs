//! R1: a marker that expired (or was evicted, or vanished in a restart) and was bumped again
//! came back to a generation live entries had recorded, so a stale entry was served after a
//! completed invalidation. A lost marker must read as "changed".

use std::sync::{Arc, Mutex};
use std::time::Duration;

use cache_runtime::Cache;
use integration_tests::{RedisServer, wait_until};

use crate::support::{self, SlowLoad, User, user};

/// Reads `users:<id>` through the cache, loading from `db`.
async fn read(cache: &Cache, db: &Mutex<User>, id: i32) -> String {
    let key = format!("users:{id}");
    let load = async { Ok::<_, ()>(db.lock().unwrap().clone()) };
    cache.get_or_load(&key, None, load).await.unwrap().name
}

/// The review's reproduction: the marker expires (here at once, as it would at the end of its
/// TTL), a write invalidates, and the next read must not return the old row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_marker_bumped_again_is_new() {
    let server = RedisServer::start();
    let cache = support::redis_only(&server).await;
    let db = Mutex::new(user(1, "old"));
    cache.invalidate("users:*").await.unwrap();
    assert_eq!(read(&cache, &db, 1).await, "old");
    for marker in ["__inv:users:*", "__inv:{users:1}", "__inv:*"] {
        server.cli(&["PEXPIRE", marker, "1"]);
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    *db.lock().unwrap() = user(1, "new");
    cache.invalidate("users:*").await.unwrap();
    assert_eq!(read(&cache, &db, 1).await, "new");
}

/// Every marker key deleted (a FLUSH of the namespace, or `DEL` by an operator): every entry
/// reads as changed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_markers_read_as_changed() {
    let server = RedisServer::start();
    let cache = support::redis_only(&server).await;
    let db = Mutex::new(user(1, "old"));
    for id in 0..20 {
        read(&cache, &db, id).await;
    }
    let markers: Vec<String> = server.query(&["KEYS", "__inv:*"]);
    assert!(
        markers.len() > 20,
        "every entry's markers exist: {markers:?}"
    );
    let mut del = vec!["DEL"];
    del.extend(markers.iter().map(String::as_str));
    server.cli(&del);
    *db.lock().unwrap() = user(1, "new");
    for id in 0..20 {
        assert_eq!(read(&cache, &db, id).await, "new", "users:{id}");
    }
}

/// Under `maxmemory` with `allkeys-lru`, markers are evicted while entries survive: the entries
/// were read after the invalidation (a plain `GET` touches them), the markers were not. Every
/// surviving entry must then read as changed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evicted_markers_read_as_changed() {
    let server = RedisServer::builder()
        .maxmemory(64 << 20, "allkeys-lru")
        .arg("maxmemory-samples", "10")
        .start();
    let cache = support::redis_only(&server).await;
    let db = Mutex::new(user(1, "old"));
    const N: i32 = 200;
    for id in 0..N {
        read(&cache, &db, id).await;
    }
    *db.lock().unwrap() = user(1, "new");
    cache.invalidate("users:*").await.unwrap();
    // The entries are now more recently used than their markers.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    for id in 0..N {
        let _: Option<String> = server.query(&["GET", &format!("users:{id}")]);
    }
    // Fill memory until the invalidated marker is gone while entries remain.
    let used: u64 = server
        .info_field("memory", "used_memory")
        .unwrap()
        .parse()
        .unwrap();
    server.cli(&[
        "CONFIG",
        "SET",
        "maxmemory",
        &(used + (256 << 10)).to_string(),
    ]);
    let filler = "x".repeat(1024);
    let mut evicted = false;
    for batch in 0..400 {
        for i in 0..64 {
            let _ = server.try_cli(
                &["SET", &format!("filler:{batch}:{i}"), &filler],
                Duration::from_secs(5),
            );
        }
        let marker: bool = server.query(&["EXISTS", "__inv:users:*"]);
        if !marker {
            evicted = true;
            break;
        }
    }
    let survivors = (0..N)
        .filter(|id| server.query::<bool>(&["EXISTS", &format!("users:{id}")]))
        .count();
    assert!(
        evicted && survivors > 0 && server.info_stat("evicted_keys") > 0,
        "the scenario needs the marker evicted and entries kept (marker evicted: {evicted}, \
         entries kept: {survivors})"
    );
    server.cli(&["CONFIG", "SET", "maxmemory", "0"]);
    for id in 0..N {
        assert_eq!(read(&cache, &db, id).await, "new", "users:{id}");
    }
}

/// A load that read its markers before Redis restarted empty and stores after a write on the
/// new server: with counters starting again at 1, its recorded generations matched the new
/// marker and the old row was served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_across_an_empty_restart_is_not_served() {
    let mut server = RedisServer::start();
    let cache = support::redis_only(&server).await;
    let writer = support::redis_only(&server).await;
    writer.invalidate("users:*").await.unwrap();
    let db = Arc::new(Mutex::new(user(1, "old")));
    let reader = SlowLoad::start(&cache, &db).await;
    server.restart();
    // Both notice the restart (their connections died) and reconnect.
    cache.get::<User>("users:other").await;
    writer.get::<User>("users:other").await;
    assert!(
        wait_until(Duration::from_secs(10), || writer
            .redis()
            .unwrap()
            .available()
            && cache.redis().unwrap().available())
        .await,
        "both reconnected"
    );
    *db.lock().unwrap() = user(1, "new");
    writer.invalidate("users:*").await.unwrap();
    assert_eq!(reader.finish().await, "old");
    assert_eq!(read(&cache, &db, 1).await, "new");
    assert_eq!(read(&writer, &db, 1).await, "new");
}
