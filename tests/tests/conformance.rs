//! One conformance suite for every store the cache runs on: each case (named after the
//! behaviour) runs against the in-process store, the Redis store, and the degrading store with
//! Redis up and with Redis down (then its in-process fallback serves), on one Redis and on a
//! Redis Cluster.

use cache_runtime::testing::{Store, conformance};
use integration_tests::{Kind, Topology};

/// A store of each kind, and what keeps it alive (its servers).
#[derive(Clone, Copy)]
enum Backend {
    Memory,
    Redis(Kind),
    Degrading(Kind),
    DegradingDown(Kind),
}

async fn store(backend: Backend) -> (Store, Option<Topology>) {
    match backend {
        Backend::Memory => (Store::memory(), None),
        Backend::Redis(kind) => {
            let redis = Topology::start(kind);
            (Store::redis(&redis.config(), "app:").await, Some(redis))
        }
        Backend::Degrading(kind) => {
            let redis = Topology::start(kind);
            (Store::degrading(&redis.config(), "").await, Some(redis))
        }
        Backend::DegradingDown(kind) => {
            let mut redis = Topology::start(kind);
            redis.kill();
            (Store::degrading(&redis.config(), "").await, None)
        }
    }
}

/// One module per backend, one test per case in each.
macro_rules! suite {
    ($($case:ident),* $(,)?) => {
        suite!(@backend memory, Backend::Memory; $($case),*);
        suite!(@backend redis, Backend::Redis(Kind::Single); $($case),*);
        suite!(@backend cluster, Backend::Redis(Kind::Cluster); $($case),*);
        suite!(@backend degrading, Backend::Degrading(Kind::Single); $($case),*);
        suite!(@backend degrading_on_cluster, Backend::Degrading(Kind::Cluster); $($case),*);
        suite!(@backend degrading_with_redis_down, Backend::DegradingDown(Kind::Single); $($case),*);
        suite!(@backend degrading_with_cluster_down, Backend::DegradingDown(Kind::Cluster); $($case),*);
    };
    (@backend $module:ident, $backend:expr; $($case:ident),*) => {
        mod $module {
            use super::*;
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let (store, _redis) = store($backend).await;
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
