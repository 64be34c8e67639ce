//! R10 and R13: invalidations queued during an outage died with the process (no shutdown that
//! replays them), and `Cache::delete` neither queued nor bumped anything, so a delete during an
//! outage was lost and Redis served the old entry after recovery.

use std::sync::Mutex;
use std::time::Duration;

use cache_runtime::{Cache, Mode};
use integration_tests::{Deployment, Kind, Topology};

use crate::support::{self, User, until_mode, user};

fn outage_file(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("cache-outage-{}-{name}", std::process::id()))
}

async fn with_outage_file(redis: &Topology, file: &std::path::Path) -> Cache {
    redis
        .cache_builder()
        .op_timeout(support::OP_TIMEOUT)
        .connect_timeout(Duration::from_millis(500))
        .outage_file(file)
        .build()
        .await
        .unwrap()
}

async fn r10_shutdown_replays_the_queue(kind: Kind) {
    let mut redis = Topology::start_persistent(kind);
    let file = outage_file(&format!("shutdown-{kind:?}"));
    let cache = with_outage_file(&redis, &file).await;
    cache.set("users:1", &user(1, "old"), None).await;
    redis.kill();
    cache.invalidate("users:*").await.unwrap();
    assert!(file.exists(), "the outage file marks queued invalidations");
    redis.restart();
    assert!(cache.shutdown(Duration::from_secs(5)).await, "replayed");
    assert!(!file.exists());
    // A fresh instance sees the invalidation.
    let other = support::redis_only(&redis).await;
    assert_eq!(other.get::<User>("users:1").await, None);
}

/// A process that died with invalidations queued: the next one to start with the same outage
/// file invalidates everything once.
async fn r10_a_successor_invalidates_what_a_dead_process_held(kind: Kind) {
    let mut redis = Topology::start_persistent(kind);
    let file = outage_file(&format!("successor-{kind:?}"));
    let _ = std::fs::remove_file(&file);
    {
        let cache = with_outage_file(&redis, &file).await;
        cache.set("tasks:1", &"old".to_owned(), None).await;
        redis.kill();
        cache.invalidate("tasks:1").await.unwrap();
    } // dropped without shutdown, as a crash would
    assert!(file.exists());
    redis.restart();
    let successor = with_outage_file(&redis, &file).await;
    until_mode(&successor, Mode::Redis).await;
    assert_eq!(
        successor.get::<String>("tasks:1").await,
        None,
        "invalidated on start"
    );
    assert!(!file.exists());
    let fresh = support::redis_only(&redis).await;
    fresh.set("tasks:2", &"new".to_owned(), None).await;
    assert_eq!(
        successor.get::<String>("tasks:2").await.as_deref(),
        Some("new")
    );
}

async fn r13_a_delete_during_an_outage_is_not_lost(kind: Kind) {
    let mut redis = Topology::start_persistent(kind);
    let cache = support::redis_with_fallback(&redis).await;
    let db = Mutex::new(user(1, "old"));
    let read = || async {
        let load = async { Ok::<_, ()>(db.lock().unwrap().clone()) };
        cache.get_or_load("users:1", None, load).await.unwrap().name
    };
    assert_eq!(read().await, "old");
    redis.kill();
    *db.lock().unwrap() = user(1, "new");
    cache.delete("users:1").await;
    assert!(
        cache.stats().pending_invalidations >= 1,
        "the delete is queued"
    );
    redis.restart();
    // Redis came back with the old entry (persistent), unless the replay of the queued delete,
    // which deletes it, already ran: recovery starts as soon as Redis answers.
    let kept: Option<String> = redis.query(&["GET", "users:1"]);
    if let Some(kept) = kept {
        assert!(kept.contains("old"), "{kept}");
    }
    until_mode(&cache, Mode::Redis).await;
    assert_eq!(read().await, "new");
}

integration_tests::on_every_topology!(
    with_l1:
    r10_shutdown_replays_the_queue,
    r10_a_successor_invalidates_what_a_dead_process_held,
    r13_a_delete_during_an_outage_is_not_lost,
);
