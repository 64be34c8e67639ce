//! Not public API: used by the expansions of `#[cached]` and `#[invalidates]`; may change in
//! any release.

use std::time::Duration;

use crate::Cache;
pub use crate::cache::key::KeyBuilder;
use crate::cache::key::Pattern;
pub use crate::cache::shape::{
    ByBytes, ByClone, Keep, OptionShape, Outcome, PlainShape, Policy, Probe, ProbeBytes,
    ProbeClone, ResultOptionShape, ResultShape, Shape,
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

/// `#[cached]`: read through `cache`, or just run `load` when there is none. `keep` is what
/// [`Probe`] picked for the value type.
pub async fn cached<S, R, F, K>(
    cache: Option<&Cache>,
    key: Result<String, KeyError>,
    policy: Policy,
    keep: K,
    load: F,
) -> R
where
    S: Shape<R>,
    F: Future<Output = R>,
    K: Keep<S::Value>,
{
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

/// `#[invalidates]`: invalidates every pattern; a pattern that failed to build (an argument
/// that would not serialize) invalidates everything instead.
pub async fn invalidate(cache: Option<&Cache>, patterns: &[Result<String, KeyError>]) {
    let Some(cache) = crate::context::resolve(cache) else {
        return;
    };
    cache.invalidate_patterns(&parse(patterns)).await;
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

/// Whether a result should trigger `#[invalidates]`: `Ok` for results.
pub fn succeeded<T, E>(result: &Result<T, E>) -> bool {
    result.is_ok()
}
