//! Which [`Cache`] an annotated function uses: the one given with `cache = ..`, else the one
//! [`scope`]d for the current task, else the [`install`]ed one, else none (it just runs). And
//! when `#[invalidates(.., deferred)]` invalidates: at the end of the enclosing
//! [`defer_invalidations`].

use std::cell::RefCell;
use std::pin::pin;
use std::sync::OnceLock;

use crate::__private::InvalidationGuard;
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
    /// The invalidations deferred to the end of the innermost [`defer_invalidations`].
    static DEFERRED: RefCell<Vec<InvalidationGuard>>;
}

/// Runs `future` with `cache` as the cache of every annotated function it calls (without their
/// own `cache = ..`), instead of the installed one. A web app can scope each request to the
/// cache in its state, so tests can run many apps with their own caches in one process.
pub async fn scope<F: Future>(cache: Cache, future: F) -> F::Output {
    scoped(cache, future).await
}

/// [`scope`] as a named future, for services that must name their future type.
pub(crate) fn scoped<F: Future>(
    cache: Cache,
    future: F,
) -> tokio::task::futures::TaskLocalFuture<Cache, F> {
    SCOPED.scope(cache, future)
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

/// Runs `future`, then the invalidations of the `#[invalidates(.., deferred)]` functions it
/// called: wrap a transaction in it, so that entries are invalidated after the commit and a
/// concurrent read cannot cache the rows from before it again.
///
/// The invalidations run when `future` completes, whatever it returns (an extra invalidation
/// after a rollback only costs a reload), or in a task if the returned future is dropped
/// first. Scopes nest: an inner one hands its invalidations to the outermost, with which a
/// nested transaction commits. The scope belongs to the task that calls
/// `defer_invalidations`: a deferred invalidation in a spawned task, or outside any
/// `defer_invalidations`, runs at once, with a warning.
///
/// ```
/// use cache_runtime::{Cache, cached, defer_invalidations, invalidates};
///
/// struct DatabaseTransaction; // sea_orm::DatabaseTransaction, in real life
/// impl DatabaseTransaction {
///     async fn commit(self) -> Result<(), String> { Ok(()) }
/// }
///
/// #[cached(key = "users:<id>", cache = cache)]
/// async fn get_user(cache: &Cache, id: i32) -> Option<String> {
///     Some(id.to_string())
/// }
///
/// #[invalidates("users:<id>", cache = cache, deferred)]
/// async fn rename_user(cache: &Cache, txn: &DatabaseTransaction, id: i32) -> Result<(), String> {
///     Ok(()) // an UPDATE in `txn`, in real life
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), String> {
/// let cache = Cache::builder().build().await.unwrap();
/// get_user(&cache, 1).await;
/// defer_invalidations(async {
///     let txn = DatabaseTransaction; // db.begin().await?
///     rename_user(&cache, &txn, 1).await?;
///     assert!(cache.get::<Option<String>>("users:1").await.is_some()); // not yet
///     txn.commit().await
/// })
/// .await?;
/// assert!(cache.get::<Option<String>>("users:1").await.is_none()); // after the commit
/// # Ok(())
/// # }
/// ```
pub async fn defer_invalidations<F: Future>(future: F) -> F::Output {
    let mut scope = pin!(DEFERRED.scope(RefCell::default(), future));
    let output = scope.as_mut().await;
    // Dropped unfinished (this future cancelled), the guards invalidate in tasks.
    for guard in scope
        .take_value()
        .map(RefCell::into_inner)
        .unwrap_or_default()
    {
        // An enclosing scope takes them over: a nested transaction commits with the outermost.
        if let Err(guard) = defer(guard) {
            guard.finish(true).await;
        }
    }
    output
}

/// Queues `guard` in the innermost [`defer_invalidations`], or returns it outside one.
pub(crate) fn defer(guard: InvalidationGuard) -> Result<(), InvalidationGuard> {
    let mut guard = Some(guard);
    let _ = DEFERRED.try_with(|deferred| {
        if let Ok(mut deferred) = deferred.try_borrow_mut() {
            deferred.extend(guard.take());
        }
    });
    guard.map_or(Ok(()), Err)
}
