//! R10 and R13: invalidations queued during an outage died with the process (no shutdown that
//! replays them), and `Cache::delete` neither queued nor bumped anything, so a delete during an
//! outage was lost and Redis served the old entry after recovery.

use std::sync::Mutex;
use std::time::Duration;

use cache_runtime::{Cache, Mode};
use integration_tests::RedisServer;

use crate::support::{self, User, until_mode, user};

fn outage_file(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("cache-outage-{}-{name}", std::process::id()))
}

async fn with_outage_file(server: &RedisServer, file: &std::path::Path) -> Cache {
    Cache::builder()
        .redis_url(server.url())
        .op_timeout(support::OP_TIMEOUT)
        .connect_timeout(Duration::from_millis(500))
        .outage_file(file)
        .build()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r10_shutdown_replays_the_queue() {
    let mut server = RedisServer::start_persistent();
    let file = outage_file("shutdown");
    let cache = with_outage_file(&server, &file).await;
    cache.set("users:1", &user(1, "old"), None).await;
    server.kill();
    cache.invalidate("users:*").await.unwrap();
    assert!(file.exists(), "the outage file marks queued invalidations");
    server.restart();
    assert!(cache.shutdown(Duration::from_secs(5)).await, "replayed");
    assert!(!file.exists());
    // A fresh instance sees the invalidation.
    let other = support::redis_only(&server).await;
    assert_eq!(other.get::<User>("users:1").await, None);
}

/// A process that died with invalidations queued: the next one to start with the same outage
/// file invalidates everything once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r10_a_successor_invalidates_what_a_dead_process_held() {
    let mut server = RedisServer::start_persistent();
    let file = outage_file("successor");
    let _ = std::fs::remove_file(&file);
    {
        let cache = with_outage_file(&server, &file).await;
        cache.set("tasks:1", &"old".to_owned(), None).await;
        server.kill();
        cache.invalidate("tasks:1").await.unwrap();
    } // dropped without shutdown, as a crash would
    assert!(file.exists());
    server.restart();
    let successor = with_outage_file(&server, &file).await;
    until_mode(&successor, Mode::Redis).await;
    assert_eq!(
        successor.get::<String>("tasks:1").await,
        None,
        "invalidated on start"
    );
    assert!(!file.exists());
    let fresh = support::redis_only(&server).await;
    fresh.set("tasks:2", &"new".to_owned(), None).await;
    assert_eq!(
        successor.get::<String>("tasks:2").await.as_deref(),
        Some("new")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r13_a_delete_during_an_outage_is_not_lost() {
    let mut server = RedisServer::start_persistent();
    let cache = support::redis_with_fallback(&server).await;
    let db = Mutex::new(user(1, "old"));
    let read = || async {
        let load = async { Ok::<_, ()>(db.lock().unwrap().clone()) };
        cache.get_or_load("users:1", None, load).await.unwrap().name
    };
    assert_eq!(read().await, "old");
    server.kill();
    *db.lock().unwrap() = user(1, "new");
    cache.delete("users:1").await;
    assert!(
        cache.stats().pending_invalidations >= 1,
        "the delete is queued"
    );
    server.restart();
    let kept: Option<String> = server.query(&["GET", "users:1"]);
    assert!(
        kept.unwrap().contains("old"),
        "redis came back with the old entry"
    );
    until_mode(&cache, Mode::Redis).await;
    assert_eq!(read().await, "new");
}
