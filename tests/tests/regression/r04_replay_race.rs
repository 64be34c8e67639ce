//! R4: an outage-queue replay removed, after sending, every name it had sent, including a new
//! invalidation of the same marker queued while the replay was in flight: that invalidation was
//! lost, and the breaker closed without it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use cache_runtime::{Cache, Mode};
use integration_tests::{Proxy, RedisServer, wait_until};

/// Counts the writes to one key, from the server's keyspace notifications.
fn count_writes(server: &RedisServer, key: &str) -> Arc<AtomicU64> {
    server.cli(&["CONFIG", "SET", "notify-keyspace-events", "K$"]);
    let count = Arc::new(AtomicU64::new(0));
    let mut conn = server.client().get_connection().unwrap();
    let channel = format!("__keyspace@0__:{key}");
    let counted = count.clone();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut pubsub = conn.as_pubsub();
        pubsub.subscribe(&channel).unwrap();
        pubsub
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        ready_tx.send(()).unwrap();
        loop {
            match pubsub.get_message() {
                Ok(_) => {
                    counted.fetch_add(1, Ordering::SeqCst);
                }
                Err(e) if e.is_timeout() => {
                    if Arc::strong_count(&counted) == 1 {
                        return;
                    }
                }
                Err(_) => return,
            }
        }
    });
    ready_rx.recv().unwrap();
    count
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalidation_queued_during_a_replay_is_not_lost() {
    let server = RedisServer::start();
    let proxy = Proxy::start(server.port());
    let cache = Cache::builder()
        .redis_url(proxy.url())
        .op_timeout(Duration::from_millis(300))
        .connect_timeout(Duration::from_secs(5))
        .build()
        .await
        .unwrap();
    // Loads the invalidation script, so that the replay below is one command.
    cache.invalidate("users:*").await.unwrap();
    let writes = count_writes(&server, "__inv:users:*");

    // A: fails to reach Redis, is queued, and opens the breaker.
    proxy.down();
    cache.invalidate("users:*").await.unwrap();
    assert!(cache.stats().pending_invalidations >= 1);

    // The link comes back slow: the replay of A is held in the proxy for a while.
    let scripts = proxy.watch("EVALSHA");
    proxy.set_delay(Duration::from_millis(400));
    proxy.up();
    assert!(
        wait_until(Duration::from_secs(20), || scripts.load(Ordering::SeqCst)
            > 0)
        .await,
        "the replay started"
    );
    // B: the same marker, while A's replay is on its way.
    cache.invalidate("users:*").await.unwrap();
    proxy.set_delay(Duration::ZERO);

    assert!(
        wait_until(Duration::from_secs(20), || cache.mode() == Mode::Redis).await,
        "recovered: {:?}",
        cache.stats()
    );
    assert_eq!(cache.stats().pending_invalidations, 0);
    assert!(
        wait_until(Duration::from_secs(2), || writes.load(Ordering::SeqCst)
            >= 2)
        .await,
        "both invalidations reached the marker: {} write(s)",
        writes.load(Ordering::SeqCst)
    );
}
