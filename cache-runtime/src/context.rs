//! Which [`Cache`] an annotated function uses: the one given with `cache = ..`, else the one
//! [`scope`]d for the current task, else the [`install`]ed one, else none (it just runs).

use std::sync::OnceLock;

use crate::Cache;

static GLOBAL: OnceLock<Cache> = OnceLock::new();

/// Sets the process-wide cache that `#[cached]` and `#[invalidates]` use (unless given
/// `cache = ..`). Until one is installed, annotated functions call straight through.
///
/// # Errors
/// Returns the cache back if one is installed already.
pub fn install(cache: Cache) -> Result<(), Cache> {
    GLOBAL.set(cache)
}

/// The installed cache, if any.
pub fn global() -> Option<&'static Cache> {
    GLOBAL.get()
}

tokio::task_local! {
    static SCOPED: Cache;
}

/// Runs `future` with `cache` as the cache of every annotated function it calls (without their
/// own `cache = ..`), instead of the installed one. A web app can scope each request to the
/// cache in its state, so tests can run many apps with their own caches in one process.
pub async fn scope<F: Future>(cache: Cache, future: F) -> F::Output {
    SCOPED.scope(cache, future).await
}

/// The cache annotated functions use here: the [`scope`]d one, else the [`install`]ed one.
pub fn current() -> Option<Cache> {
    SCOPED
        .try_with(Cache::clone)
        .ok()
        .or_else(|| global().cloned())
}

/// The given cache, else [`current`].
pub(crate) fn resolve(given: Option<&Cache>) -> Option<Cache> {
    match given {
        Some(cache) => Some(cache.clone()),
        None => current(),
    }
}
