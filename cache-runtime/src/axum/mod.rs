//! Web framework integration (feature `axum`): a tower layer that runs every request in a
//! cache's [`scope`](crate::scope), so the annotated functions a handler calls use the cache of
//! the app that received the request. It is plain tower, so it fits axum, tonic or hyper alike.
//! With `sessions`, [`auth`]: the session and principal extractors; with `rate-limit`,
//! [`rate_limit`]: the rate-limit layer.

use std::task::{Context, Poll};

use tokio::task::futures::TaskLocalFuture;
use tower_layer::Layer;
use tower_service::Service;

use crate::Cache;

#[cfg(feature = "sessions")]
pub mod auth;
#[cfg(feature = "rate-limit")]
pub mod rate_limit;

/// Runs each request in `cache`'s scope.
///
/// ```
/// use axum::{Router, routing::get};
/// use cache_runtime::{Cache, cached};
/// use cache_runtime::axum::CacheLayer;
///
/// #[cached(key = "greetings:<name>")]
/// async fn greet(name: String) -> String {
///     format!("hello {name}")
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let cache = Cache::builder().build().await?;
/// let app: Router = Router::new()
///     .route("/", get(|| greet("ada".into())))
///     .layer(CacheLayer::new(cache.clone()));
/// # use tower::ServiceExt as _;
/// # let request = axum::http::Request::get("/").body(axum::body::Body::empty())?;
/// # app.oneshot(request).await?;
/// # assert!(cache.get::<String>("greetings:ada").await.is_some());
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct CacheLayer {
    cache: Cache,
}

impl CacheLayer {
    /// A layer scoping requests to `cache`.
    pub fn new(cache: Cache) -> Self {
        Self { cache }
    }
}

impl<S> Layer<S> for CacheLayer {
    type Service = CacheService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CacheService {
            inner,
            cache: self.cache.clone(),
        }
    }
}

/// The service [`CacheLayer`] wraps around an inner one.
#[derive(Debug, Clone)]
pub struct CacheService<S> {
    inner: S,
    cache: Cache,
}

impl<S, R> Service<R> for CacheService<S>
where
    S: Service<R>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = TaskLocalFuture<Cache, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> Self::Future {
        crate::context::scoped(self.cache.clone(), self.inner.call(request))
    }
}
