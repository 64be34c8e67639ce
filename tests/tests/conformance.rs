//! One conformance suite for every store the cache runs on: each case (named after the
//! behaviour) runs against the in-process store, the Redis store, and the degrading store with
//! Redis up and with Redis down (then its in-process fallback serves).

use cache_runtime::testing::{Store, conformance};
use integration_tests::RedisServer;

/// A store of each kind, and what keeps it alive (its server).
enum Backend {
    Memory,
    Redis,
    Degrading,
    DegradingDown,
}

async fn store(backend: Backend) -> (Store, Option<RedisServer>) {
    match backend {
        Backend::Memory => (Store::memory(), None),
        Backend::Redis => {
            let server = RedisServer::start();
            (Store::redis(&server.url(), "app:").await, Some(server))
        }
        Backend::Degrading => {
            let server = RedisServer::start();
            (Store::degrading(&server.url(), "").await, Some(server))
        }
        Backend::DegradingDown => {
            let mut server = RedisServer::start();
            server.kill();
            (Store::degrading(&server.url(), "").await, None)
        }
    }
}

macro_rules! suite {
    ($($case:ident),* $(,)?) => {
        mod memory {
            use super::*;
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let (store, _server) = store(Backend::Memory).await;
                conformance::$case(&store).await;
            })*
        }
        mod redis {
            use super::*;
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let (store, _server) = store(Backend::Redis).await;
                conformance::$case(&store).await;
            })*
        }
        mod degrading {
            use super::*;
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let (store, _server) = store(Backend::Degrading).await;
                conformance::$case(&store).await;
            })*
        }
        mod degrading_with_redis_down {
            use super::*;
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let (store, _server) = store(Backend::DegradingDown).await;
                conformance::$case(&store).await;
            })*
        }
    };
}

suite!(
    absent_key_reads_nothing,
    fill_then_read,
    fetch_many_keeps_order,
    prefix_bump_reaches_exactly_its_prefix,
    exact_bump_reaches_one_key,
    epoch_bump_reaches_everything,
    late_fill_after_a_bump_is_stale,
    generations_never_repeat,
    entries_expire,
    sweep_deletes_under_its_prefix,
);
