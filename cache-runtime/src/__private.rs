//! Not public API: used by the expansions of `#[cached]` and `#[invalidates]`; may change in
//! any release.

use std::time::Duration;

use crate::Cache;
pub use crate::cache::key::KeyBuilder;
use crate::cache::key::Pattern;
pub use crate::cache::shape::{
    ByBytes, ByClone, CachesNone, Detect, IsOption, IsPlain, IsResult, IsResultOption, Keep,
    KeepProbe, NotResult, OptionShape, Outcome, PlainShape, Policy, ProbeBytes, ProbeClone,
    ResultOptionShape, ResultShape, ResultType, Shape, ShapeProbe, Succeeds, result_probe,
};
use crate::error::KeyError;
pub use serde;

/// An argument hashed into a key must be serializable.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be part of a cache key: it does not implement `serde::Serialize`",
    label = "this argument is neither in the key template nor skipped",
    note = "add it to `skip(..)` if it cannot change the result, or derive `Serialize` for its type"
)]
pub trait KeyArg: serde::Serialize {}
impl<T: serde::Serialize + ?Sized> KeyArg for T {}

/// Seconds to a TTL (the macro checks at compile time that literals are positive).
pub const fn secs(secs: u64) -> Duration {
    Duration::from_secs(secs)
}

/// `cache_none`: a compile error unless the shape has a `None`.
pub const fn cache_none<S: CachesNone>(_: &S) -> bool {
    true
}

/// `#[cached]`: read through `cache`, or just run `load` when there is none. `shape` is what
/// [`ShapeProbe`] picked for `R`, `keep` what [`KeepProbe`] picked for its value.
pub async fn cached<S, R, F, K>(
    cache: Option<&Cache>,
    key: Result<String, KeyError>,
    policy: Policy,
    _shape: S,
    keep: K,
    load: F,
) -> R
where
    S: Shape<R>,
    F: Future<Output = R>,
    K: Keep<S::Value>,
{
    // Not `context::resolve`: a given cache is borrowed, not cloned.
    if let Some(cache) = cache {
        return cache
            .load_through::<S, R, F>(key, policy, &keep, load)
            .await;
    }
    match crate::current() {
        Some(cache) => {
            cache
                .load_through::<S, R, F>(key, policy, &keep, load)
                .await
        }
        None => load.await,
    }
}

/// `#[invalidates]`: whether `result` should invalidate (`Ok` for results, any value
/// otherwise), for the shape [`ShapeProbe`] picked.
pub fn succeeded<S: Succeeds<R>, R>(_shape: S, result: &R) -> bool {
    S::succeeded(result)
}

/// The invalidation an `#[invalidates]` call owes, armed right before the body runs.
///
/// When the body returns, the expansion calls [`finish`](Self::finish): it invalidates (or,
/// when deferred, hands the invalidation to the enclosing [`crate::defer_invalidations`]) and
/// disarms. If the call's future is dropped while the guard is armed (the body was cancelled
/// after its write may have committed, or the invalidation itself was cancelled), the guard's
/// `Drop` runs the invalidation in a task instead: a lost invalidation serves stale entries
/// until their TTL, while an extra one for a write that never committed only costs a reload.
#[derive(Debug)]
#[must_use = "dropping the guard invalidates at once, in a task"]
pub struct InvalidationGuard {
    /// `None` once disarmed, or when there is no cache to invalidate.
    pending: Option<Pending>,
    /// Hand the invalidation to the enclosing `defer_invalidations` scope.
    deferred: bool,
}

/// Patterns and the cache they apply to, resolved when the guard is armed: a task spawned by
/// `Drop` has no task-local scope to find the cache in.
#[derive(Debug)]
struct Pending {
    cache: Cache,
    /// As rendered; a pattern that failed to build invalidates everything.
    patterns: Vec<Result<String, KeyError>>,
}

impl InvalidationGuard {
    /// Arms a guard invalidating `patterns` in `cache`, else in [`crate::current`]'s cache
    /// (no cache: the guard does nothing).
    pub fn arm(cache: Option<&Cache>, patterns: impl Into<Vec<Result<String, KeyError>>>) -> Self {
        Self {
            pending: crate::context::resolve(cache).map(|cache| Pending {
                cache,
                patterns: patterns.into(),
            }),
            deferred: false,
        }
    }

    /// As [`arm`](Self::arm), for `#[invalidates(.., deferred)]`: the invalidation runs when
    /// the enclosing [`crate::defer_invalidations`] scope ends (at once, with a warning, when
    /// there is none).
    pub fn arm_deferred(
        cache: Option<&Cache>,
        patterns: impl Into<Vec<Result<String, KeyError>>>,
    ) -> Self {
        let mut guard = Self::arm(cache, patterns);
        guard.deferred = true;
        guard
    }

    /// The body returned: invalidate if it `succeeded` (see [`succeeded`]), then disarm.
    pub async fn finish(mut self, succeeded: bool) {
        if !succeeded {
            self.pending = None;
            return;
        }
        if self.deferred {
            if self.defer() {
                return;
            }
            self.deferred = false;
            if let Some(pending) = &self.pending {
                tracing::warn!(
                    patterns = ?pending.patterns,
                    "`#[invalidates(.., deferred)]` called outside `cache_runtime::defer_invalidations`: \
                     invalidating now, before the caller's transaction commits"
                );
            }
        }
        if let Some(pending) = &self.pending {
            pending.run().await;
        }
        self.pending = None;
    }

    /// Moves the pending invalidation into the enclosing deferral scope, as an immediate guard
    /// (so that it still runs if the scope is dropped); `false` outside one.
    fn defer(&mut self) -> bool {
        if self.pending.is_none() {
            return true;
        }
        let guard = Self {
            pending: self.pending.take(),
            deferred: false,
        };
        match crate::context::defer(guard) {
            Ok(()) => true,
            Err(mut guard) => {
                self.pending = guard.pending.take();
                false
            }
        }
    }
}

impl Drop for InvalidationGuard {
    fn drop(&mut self) {
        if self.deferred && self.defer() {
            return;
        }
        if let Some(pending) = self.pending.take() {
            pending.spawn();
        }
    }
}

impl Pending {
    async fn run(&self) {
        self.cache.invalidate_patterns(&parse(&self.patterns)).await;
    }

    /// Runs the invalidation in a task on the current runtime; without one it is lost, loudly.
    fn spawn(self) {
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn(async move { self.run().await })),
            Err(_) => tracing::error!(
                patterns = ?self.patterns,
                "an `#[invalidates]` call was dropped outside a tokio runtime: its entries may \
                 stay stale until their TTL"
            ),
        }
    }
}

fn parse(patterns: &[Result<String, KeyError>]) -> Vec<Pattern> {
    patterns
        .iter()
        .map(|p| {
            p.clone().and_then(|p| Pattern::parse(&p)).unwrap_or_else(|e| {
                tracing::error!(error = %e, "invalidation pattern unusable; invalidating everything");
                Pattern::All
            })
        })
        .collect()
}
