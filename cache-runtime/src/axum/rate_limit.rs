//! The rate-limit layer (features `axum` and `rate-limit`): one [`RateLimiter`] in front of
//! a route, keyed by client IP, by principal, or by a closure.
//!
//! Every response of a limited route carries the IETF `RateLimit-Policy` and `RateLimit`
//! fields (`"<name>";q=<count>;w=<window s>` and `"<name>";r=<remaining>;t=<seconds to
//! reset>`). A refused request answers 429 `{"error": ..}` with `Retry-After: <seconds>`; a
//! closed limiter whose Redis fails answers 503 with `Retry-After`. Neither the headers nor
//! the Redis keys show the partition (an IP, a user id).
//!
//! ```
//! use std::net::SocketAddr;
//! use axum::{Router, routing::post};
//! use cache_runtime::axum::rate_limit::{RateLimitLayer, TrustedProxies};
//! use cache_runtime::rate_limit::{Algorithm, Policy, RateLimiter};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let policy = Policy::new("login", Algorithm::SlidingWindow, "5/60s".parse()?)?;
//! let login = RateLimitLayer::per_ip(RateLimiter::memory(policy))
//!     .trusted_proxies(TrustedProxies::from_var("TRUSTED_PROXIES", "10.0.0.0/8")?);
//! let app: Router = Router::new().route("/login", post(|| async { "welcome" }).layer(login));
//! // Serve it with the peer's address, which the layer reads:
//! // axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
//! # use tower::ServiceExt as _;
//! # let mut request = axum::http::Request::post("/login").body(axum::body::Body::empty())?;
//! # request.extensions_mut().insert(axum::extract::ConnectInfo(SocketAddr::from(([203, 0, 113, 7], 4000))));
//! # let response = app.oneshot(request).await?;
//! # assert_eq!(response.headers()["ratelimit"], "\"login\";r=4;t=60");
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use ::axum::extract::ConnectInfo;
use ::axum::extract::connect_info::MockConnectInfo;
use axum_core::body::Body;
use axum_core::response::{IntoResponse, Response};
use http::header::{CONTENT_TYPE, HeaderName, HeaderValue, RETRY_AFTER};
use http::request::Parts;
use http::{HeaderMap, Request, StatusCode};
use ipnet::IpNet;
use tower_layer::Layer;
use tower_service::Service;

use crate::error::ConfigError;
use crate::rate_limit::{Decision, RateLimitError, RateLimiter, ceil_secs};

/// `RateLimit-Policy`: the policy of a limited route.
pub static RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// `RateLimit`: what is left of it.
pub static RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// The client's address as the layer determined it, in the request's extensions for the
/// handlers (`Extension<ClientIp>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

/// The proxies whose `X-Forwarded-For` is believed (default: none, so the client is the
/// socket's peer). The client is then the right-most address in `X-Forwarded-For` that is
/// not a trusted proxy: entries to its left are whatever the client sent.
///
/// ```
/// use cache_runtime::axum::rate_limit::TrustedProxies;
/// use axum::http::HeaderMap;
///
/// let proxies = TrustedProxies::from_var("TRUSTED_PROXIES", "10.0.0.0/8, 192.168.1.1")?;
/// let mut headers = HeaderMap::new();
/// headers.insert("x-forwarded-for", "1.1.1.1, 203.0.113.7, 10.0.0.2".parse()?);
/// assert_eq!(proxies.client_ip("10.0.0.1".parse()?, &headers).to_string(), "203.0.113.7");
/// // An untrusted peer's header is ignored.
/// assert_eq!(proxies.client_ip("198.51.100.9".parse()?, &headers).to_string(), "198.51.100.9");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Proxies in these networks (a single address is a /32 or /128).
    pub fn new(networks: impl IntoIterator<Item = IpNet>) -> Self {
        Self(networks.into_iter().collect())
    }

    /// Parses a list of CIDRs or addresses separated by commas or spaces, the value of the
    /// environment variable `name` (empty: none).
    ///
    /// # Errors
    /// An entry that is neither, naming the variable.
    pub fn from_var(name: &str, value: &str) -> Result<Self, ConfigError> {
        value
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<IpNet>()
                    .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| {
                        ConfigError::invalid(
                            name,
                            value,
                            format!("`{s}` is not a CIDR or an address"),
                        )
                    })
            })
            .collect::<Result<_, _>>()
            .map(Self)
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client of a request from `peer` with `headers`.
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let mut client = peer.to_canonical();
        if !self.trusts(client) {
            return client;
        }
        let hops: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .flat_map(|v| v.to_str().unwrap_or("").split(','))
            .collect();
        for hop in hops.into_iter().rev() {
            // Garbage from a trusted hop ends the walk at that hop.
            let Ok(ip) = hop.trim().parse::<IpAddr>() else {
                break;
            };
            client = ip.to_canonical();
            if !self.trusts(client) {
                break;
            }
        }
        client
    }
}

type KeyFn = dyn Fn(&Parts) -> Option<String> + Send + Sync;

#[derive(Clone)]
enum KeyBy {
    Ip,
    #[cfg(feature = "sessions")]
    Principal(super::auth::Auth),
    Custom(Arc<KeyFn>),
}

/// Limits the requests of the routes it wraps with one [`RateLimiter`].
#[derive(Clone)]
pub struct RateLimitLayer {
    limiter: RateLimiter,
    key: KeyBy,
    proxies: TrustedProxies,
}

impl fmt::Debug for RateLimitLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitLayer")
            .field("limiter", &self.limiter)
            .field("proxies", &self.proxies)
            .finish_non_exhaustive()
    }
}

impl RateLimitLayer {
    fn with(limiter: RateLimiter, key: KeyBy) -> Self {
        Self {
            limiter,
            key,
            proxies: TrustedProxies::default(),
        }
    }

    /// One partition per client IP ([`TrustedProxies`]), read from axum's
    /// `ConnectInfo<SocketAddr>` (serve with `into_make_service_with_connect_info`; in tests,
    /// `MockConnectInfo` works too; without either, every request shares one partition, and
    /// a warning says so).
    pub fn per_ip(limiter: RateLimiter) -> Self {
        Self::with(limiter, KeyBy::Ip)
    }

    /// One partition per authenticated user (a session or a token, as
    /// [`Principal`](super::auth::Principal) finds it), else per client IP. The principal is
    /// looked up once per request: the handler's extractor reuses it.
    #[cfg(feature = "sessions")]
    pub fn per_principal(limiter: RateLimiter, auth: super::auth::Auth) -> Self {
        Self::with(limiter, KeyBy::Principal(auth))
    }

    /// One partition per value of `key` (e.g. an API key header); `None` leaves the request
    /// unlimited. [`ClientIp`] is in the extensions already.
    pub fn per_key(
        limiter: RateLimiter,
        key: impl Fn(&Parts) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        Self::with(limiter, KeyBy::Custom(Arc::new(key)))
    }

    /// The same layer believing `X-Forwarded-For` from `proxies`.
    #[must_use]
    pub fn trusted_proxies(mut self, proxies: TrustedProxies) -> Self {
        self.proxies = proxies;
        self
    }

    /// The limiter (for its stats).
    pub fn limiter(&self) -> &RateLimiter {
        &self.limiter
    }
}

struct Shared {
    limiter: RateLimiter,
    key: KeyBy,
    proxies: TrustedProxies,
    policy_header: HeaderValue,
    warned_no_peer: AtomicBool,
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimitService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        let policy = self.limiter.policy();
        let window = ceil_secs(policy.limit().window());
        let header = format!(
            "\"{}\";q={};w={window}",
            policy.name(),
            policy.limit().count()
        );
        RateLimitService {
            inner,
            shared: Arc::new(Shared {
                limiter: self.limiter.clone(),
                key: self.key.clone(),
                proxies: self.proxies.clone(),
                // The name is a token (`Policy::new` checks it): always a valid value.
                policy_header: HeaderValue::try_from(header)
                    .unwrap_or(HeaderValue::from_static("")),
                warned_no_peer: AtomicBool::new(false),
            }),
        }
    }
}

/// The service [`RateLimitLayer`] wraps around an inner one.
#[derive(Clone)]
pub struct RateLimitService<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> fmt::Debug for RateLimitService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitService").finish_non_exhaustive()
    }
}

impl<S, B> Service<Request<B>> for RateLimitService<S>
where
    S: Service<Request<B>, Response = Response> + Clone + Send + 'static,
    S::Future: Send,
    B: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        // The clone that was driven to readiness serves this call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let shared = self.shared.clone();
        Box::pin(async move {
            let (mut parts, body) = request.into_parts();
            let Some(partition) = shared.partition(&mut parts).await else {
                return inner.call(Request::from_parts(parts, body)).await;
            };
            match shared.limiter.check(&partition).await {
                Ok(decision) if decision.allowed => {
                    let mut response = inner.call(Request::from_parts(parts, body)).await?;
                    shared.describe(response.headers_mut(), &decision);
                    Ok(response)
                }
                Ok(decision) => Ok(shared.too_many(&decision)),
                Err(e @ RateLimitError::Unavailable { retry_after }) => Ok(shared.refuse(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &e.to_string(),
                    ceil_secs(retry_after),
                    None,
                )),
                // A cost of 1 always fits; nothing else can fail.
                Err(_) => inner.call(Request::from_parts(parts, body)).await,
            }
        })
    }
}

impl Shared {
    /// The partition of a request, after recording its [`ClientIp`].
    async fn partition(&self, parts: &mut Parts) -> Option<String> {
        // As axum's `ConnectInfo` extractor: the served connection's, else a test's mock.
        let peer = match parts.extensions.get::<ConnectInfo<SocketAddr>>() {
            Some(ConnectInfo(addr)) => Some(addr.ip()),
            None => parts
                .extensions
                .get::<MockConnectInfo<SocketAddr>>()
                .map(|MockConnectInfo(addr)| addr.ip()),
        };
        let ip = peer.map(|peer| self.proxies.client_ip(peer, &parts.headers));
        if let Some(ip) = ip {
            parts.extensions.insert(ClientIp(ip));
        } else if !self.warned_no_peer.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                limiter = self.limiter.policy().name(),
                "no peer address (serve with into_make_service_with_connect_info); \
                 all clients share one rate-limit partition"
            );
        }
        let by_ip = || Some(ip.map_or_else(|| "ip:unknown".to_owned(), |ip| format!("ip:{ip}")));
        match &self.key {
            KeyBy::Ip => by_ip(),
            #[cfg(feature = "sessions")]
            KeyBy::Principal(auth) => match super::auth::authenticate(parts, auth).await {
                Ok(Some(principal)) => Some(format!("user:{}", principal.user_id)),
                _ => by_ip(),
            },
            KeyBy::Custom(key) => key(parts),
        }
    }

    /// Adds the `RateLimit-Policy` and `RateLimit` fields.
    fn describe(&self, headers: &mut HeaderMap, decision: &Decision) {
        headers.append(RATELIMIT_POLICY.clone(), self.policy_header.clone());
        let reset = decision.reset.as_micros().div_ceil(1_000_000);
        let state = format!(
            "\"{}\";r={};t={reset}",
            self.limiter.policy().name(),
            decision.remaining
        );
        if let Ok(value) = HeaderValue::try_from(state) {
            headers.append(RATELIMIT.clone(), value);
        }
    }

    fn too_many(&self, decision: &Decision) -> Response {
        let secs = decision.retry_after_secs().unwrap_or(1);
        let message = format!("rate limit exceeded; retry in {secs} s");
        self.refuse(
            StatusCode::TOO_MANY_REQUESTS,
            &message,
            secs,
            Some(decision),
        )
    }

    fn refuse(
        &self,
        status: StatusCode,
        message: &str,
        retry: u64,
        decision: Option<&Decision>,
    ) -> Response {
        let body = serde_json::json!({ "error": message }).to_string();
        let mut response = (
            status,
            [(CONTENT_TYPE, "application/json")],
            Body::from(body),
        )
            .into_response();
        let headers = response.headers_mut();
        headers.insert(RETRY_AFTER, HeaderValue::from(retry));
        match decision {
            Some(decision) => self.describe(headers, decision),
            None => {
                headers.append(RATELIMIT_POLICY.clone(), self.policy_header.clone());
            }
        }
        response
    }
}
