//! Shared helpers for the runtime's end-to-end tests.
#![allow(dead_code, unreachable_pub)] // each test binary uses a different subset

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use cache_runtime::{Cache, Fallback};
use integration_tests::Deployment;

/// A cache on `redis` with no fallback, so a Redis failure cannot hide behind the memory store.
/// Its generous timeouts keep a loaded machine from tripping the breaker, or from starting it
/// degraded (a cluster connects to every node), in tests that are not about timeouts.
pub async fn redis_only(redis: &impl Deployment) -> Cache {
    redis
        .cache_builder()
        .op_timeout(Duration::from_secs(2))
        .connect_timeout(Duration::from_secs(5))
        .fallback(Fallback::None)
        .build()
        .await
        .unwrap()
}

/// The operation timeout of [`redis_with_fallback`]: short next to redis-rs's defaults (500 ms
/// response timeout, seconds of reconnect retries), long enough for a loaded 2-core machine.
pub const OP_TIMEOUT: Duration = Duration::from_millis(200);

/// A cache on `redis` that falls back to memory, with a short operation timeout.
pub async fn redis_with_fallback(redis: &impl Deployment) -> Cache {
    redis
        .cache_builder()
        .op_timeout(OP_TIMEOUT)
        .connect_timeout(Duration::from_millis(200))
        .build()
        .await
        .unwrap()
}

/// The in-process cache only.
pub async fn memory() -> Cache {
    Cache::builder().build().await.unwrap()
}

/// A loader that counts its runs and returns a fixed value.
#[derive(Clone, Default)]
pub struct Loader {
    runs: Arc<AtomicUsize>,
}

impl Loader {
    pub async fn load<T>(&self, value: T) -> Result<T, std::convert::Infallible> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        Ok(value)
    }

    pub fn runs(&self) -> usize {
        self.runs.load(Ordering::SeqCst)
    }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct User {
    pub id: i32,
    pub name: String,
    pub email: String,
    pub age: Option<u8>,
    pub is_active: bool,
}

pub fn user(id: i32, name: &str) -> User {
    User {
        id,
        name: name.to_owned(),
        email: format!("{name}@example.com"),
        age: Some(30),
        is_active: true,
    }
}

/// Polls `check` every 25 ms until it holds or `timeout` passes; true if it held.
pub async fn eventually(timeout: Duration, mut check: impl AsyncFnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if check().await {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Waits until `cache` serves in `mode`, making calls meanwhile (a call is what notices a dead
/// connection, and what starts a recovery when none runs).
pub async fn until_mode(cache: &Cache, mode: cache_runtime::Mode) {
    let reached = eventually(Duration::from_secs(15), async || {
        cache.get::<i32>("probe:mode").await;
        cache.mode() == mode
    })
    .await;
    assert!(
        reached,
        "mode is still {:?}: {:?}",
        cache.mode(),
        cache.stats()
    );
}

/// A read of `users:1` through `cache` whose load reads the row from `db`, then waits: the
/// reader of the read/write race, stopped between its load and its store.
pub struct SlowLoad {
    release: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<User, ()>>,
}

impl SlowLoad {
    /// Starts the read and returns once its load has read the row.
    pub async fn start(cache: &Cache, db: &Arc<std::sync::Mutex<User>>) -> Self {
        let (loaded_tx, loaded_rx) = tokio::sync::oneshot::channel();
        let (release, store_rx) = tokio::sync::oneshot::channel::<()>();
        let (cache, db) = (cache.clone(), db.clone());
        let task = tokio::spawn(async move {
            cache
                .get_or_load("users:1", None, async move {
                    let row = db.lock().unwrap().clone();
                    loaded_tx.send(()).unwrap();
                    store_rx.await.unwrap();
                    Ok(row)
                })
                .await
        });
        loaded_rx.await.unwrap();
        Self { release, task }
    }

    /// Lets the read store what it loaded; returns the name it read.
    pub async fn finish(self) -> String {
        self.release.send(()).unwrap();
        self.task.await.unwrap().unwrap().name
    }
}
