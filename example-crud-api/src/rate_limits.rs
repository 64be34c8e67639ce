//! The API's rate limits (API.md, "Rate limits"): logins per client IP, optionally every
//! other route per caller, both on the cache's Redis client (counted across instances) or in
//! process.

use cache_runtime::axum::auth::Auth;
use cache_runtime::axum::rate_limit::{RateLimitLayer, TrustedProxies};
use cache_runtime::rate_limit::{Algorithm, Limit, OnFailure, Policy, RateLimitStats, RateLimiter};
use cache_runtime::{Cache, ConfigError};

/// `LOGIN_RATE_LIMIT` when unset.
pub const DEFAULT_LOGIN_LIMIT: &str = "5/60s";

/// The limiters and whose `X-Forwarded-For` they believe. The default limits nothing.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct RateLimits {
    /// `/auth/login` and `/auth/token`, per client IP (sliding window).
    pub login: Option<RateLimiter>,
    /// Every other route, per user when authenticated, else per client IP (token bucket).
    pub api: Option<RateLimiter>,
    /// The proxies whose `X-Forwarded-For` names the client.
    pub trusted_proxies: TrustedProxies,
}

impl RateLimits {
    /// Reads `LOGIN_RATE_LIMIT` (default [`DEFAULT_LOGIN_LIMIT`], `off` for none),
    /// `API_RATE_LIMIT` (default off), `RATE_LIMIT_ON_FAILURE` (`local`, `open` or `closed`;
    /// default `local`) and `TRUSTED_PROXIES` (CIDRs, default none), building the limiters on
    /// `cache`'s Redis client (in process without one).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use example_crud_api::RateLimits;
    ///
    /// let cache = cache_runtime::Cache::builder().build().await?;
    /// let limits = RateLimits::from_lookup(|_| None, &cache)?;
    /// assert_eq!(limits.login.unwrap().policy().limit().to_string(), "5/60s");
    /// assert!(limits.api.is_none());
    /// let bad = RateLimits::from_lookup(|n| (n == "API_RATE_LIMIT").then(|| "lots".into()), &cache);
    /// assert!(bad.unwrap_err().to_string().contains("API_RATE_LIMIT"));
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// A malformed value, naming its variable.
    pub fn from_lookup(
        var: impl Fn(&str) -> Option<String>,
        cache: &Cache,
    ) -> Result<Self, ConfigError> {
        let get = |name: &str| {
            var(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let on_failure = get("RATE_LIMIT_ON_FAILURE")
            .map(|v| OnFailure::from_var("RATE_LIMIT_ON_FAILURE", &v))
            .transpose()?
            .unwrap_or_default();
        let limiter = |name: &'static str, var: &str, algorithm, default: Option<&str>| {
            let value = get(var).or(default.map(str::to_owned));
            let Some(value) = value.filter(|v| v != "off") else {
                return Ok(None);
            };
            let limit = Limit::from_var(var, &value)?;
            let policy = Policy::new(name, algorithm, limit)
                .map_err(|e| ConfigError::Invalid {
                    name: var.to_owned(),
                    value: value.clone(),
                    reason: e.to_string(),
                })?
                .on_failure(on_failure);
            Ok::<_, ConfigError>(Some(RateLimiter::for_cache(cache, policy)))
        };
        Ok(Self {
            login: limiter(
                "login",
                "LOGIN_RATE_LIMIT",
                Algorithm::SlidingWindow,
                Some(DEFAULT_LOGIN_LIMIT),
            )?,
            api: limiter("api", "API_RATE_LIMIT", Algorithm::TokenBucket, None)?,
            trusted_proxies: get("TRUSTED_PROXIES")
                .map(|v| TrustedProxies::from_var("TRUSTED_PROXIES", &v))
                .transpose()?
                .unwrap_or_default(),
        })
    }

    /// The login routes' layer, if limited.
    pub(crate) fn login_layer(&self) -> Option<RateLimitLayer> {
        self.login.as_ref().map(|limiter| {
            RateLimitLayer::per_ip(limiter.clone()).trusted_proxies(self.trusted_proxies.clone())
        })
    }

    /// The other routes' layer, if limited.
    pub(crate) fn api_layer(&self, auth: &Auth) -> Option<RateLimitLayer> {
        self.api.as_ref().map(|limiter| {
            RateLimitLayer::per_principal(limiter.clone(), auth.clone())
                .trusted_proxies(self.trusted_proxies.clone())
        })
    }

    /// Every limiter's counters.
    pub fn stats(&self) -> Vec<RateLimitStats> {
        self.login
            .iter()
            .chain(&self.api)
            .map(RateLimiter::stats)
            .collect()
    }
}
