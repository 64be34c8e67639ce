//! Configuration: `.env` and environment variables, or the builder.

use std::time::Duration;

/// Where cached values go when Redis is disabled or unreachable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Fallback {
    /// An in-process store (moka) with per-entry TTLs.
    Memory,
    /// No store: annotated functions call straight through.
    None,
}

/// A malformed configuration value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A variable is set to a value that cannot be used.
    #[error("invalid value `{value}` for `{name}`: {reason}")]
    Invalid {
        /// The variable's name, e.g. `REDIS_PORT`.
        name: String,
        /// The value that was given.
        value: String,
        /// What was expected instead.
        reason: String,
    },
    /// The `.env` file exists but cannot be read or parsed.
    #[error("cannot read `.env`: {0}")]
    DotEnv(String),
}

impl ConfigError {
    pub(crate) fn invalid(name: &str, value: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Invalid {
            name: name.to_owned(),
            value: value.into(),
            reason: reason.into(),
        }
    }
}

/// Everything the runtime can be told; built by [`Config::from_env`] or [`crate::CacheBuilder`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// `CACHE_ENABLED` (default true): `false` turns caching off entirely. Annotated functions
    /// then run exactly as unannotated ones: no store, no single flight, no counters.
    pub enabled: bool,
    /// `REDIS_ENABLED`: use Redis at all (default false).
    pub redis_enabled: bool,
    /// `REDIS_URL`, or assembled from `REDIS_HOST`/`REDIS_PORT`/`REDIS_DB`/`REDIS_PASSWORD`/`REDIS_SSL`.
    pub redis_url: String,
    /// `CACHE_TTL`: default entry TTL (300 s).
    pub default_ttl: Duration,
    /// `CACHE_SHORT_TTL` (60 s): offered to applications for volatile data.
    pub short_ttl: Duration,
    /// `CACHE_LONG_TTL` (3600 s): offered to applications for stable data.
    pub long_ttl: Duration,
    /// `CACHE_MAX_TTL` (86400 s): entry TTLs are capped here, and invalidation markers live this
    /// long, so a marker always outlives the entries it invalidates.
    pub max_ttl: Duration,
    /// `CACHE_PREFIX`: prepended to every key (default empty).
    pub prefix: String,
    /// `CACHE_FALLBACK`: `memory` (default) or `none`.
    pub fallback: Fallback,
    /// `REDIS_TIMEOUT_MS`: bound on every Redis operation (50 ms).
    pub op_timeout: Duration,
    /// `REDIS_CONNECT_TIMEOUT_MS`: bound on connecting (1000 ms); start-up waits at most this long.
    pub connect_timeout: Duration,
    /// `CACHE_MAX_VALUE_BYTES`: larger encoded values are not cached (1 MiB).
    pub max_value_bytes: usize,
    /// Bytes the in-process store may hold (64 MiB).
    pub memory_capacity_bytes: u64,
    /// Consecutive Redis failures that open the circuit breaker (3).
    pub failure_threshold: u32,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            enabled: true,
            redis_enabled: false,
            redis_url: "redis://127.0.0.1:6379/0".to_owned(),
            default_ttl: Duration::from_secs(300),
            short_ttl: Duration::from_secs(60),
            long_ttl: Duration::from_secs(3600),
            max_ttl: Duration::from_secs(86_400),
            prefix: String::new(),
            fallback: Fallback::Memory,
            op_timeout: Duration::from_millis(50),
            connect_timeout: Duration::from_millis(1000),
            max_value_bytes: 1 << 20,
            memory_capacity_bytes: 64 << 20,
            failure_threshold: 3,
        }
    }
}

impl Config {
    /// Reads `.env` (if present) and the environment; the environment wins over `.env`.
    ///
    /// # Errors
    /// A malformed value (`REDIS_PORT=abc`, `CACHE_TTL=-5`) names the variable and the value.
    /// An unreachable Redis is not an error.
    pub fn from_env() -> Result<Self, ConfigError> {
        match dotenvy::dotenv() {
            Ok(_) => {}
            Err(e) if e.not_found() => {}
            Err(e) => return Err(ConfigError::DotEnv(e.to_string())),
        }
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Builds a configuration from any variable source (used by [`Config::from_env`] and tests).
    ///
    /// # Errors
    /// As [`Config::from_env`].
    pub fn from_lookup(var: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let d = Self::default();
        let get = |name: &str| {
            var(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let secs = |name: &str, default: Duration| -> Result<Duration, ConfigError> {
            get(name).map_or(Ok(default), |v| positive(name, &v).map(Duration::from_secs))
        };
        let millis = |name: &str, default: Duration| -> Result<Duration, ConfigError> {
            get(name).map_or(Ok(default), |v| {
                positive(name, &v).map(Duration::from_millis)
            })
        };
        let redis_url = match get("REDIS_URL") {
            Some(url) => check_url(&url)?,
            None => assemble_url(&get)?,
        };
        Ok(Self {
            enabled: get("CACHE_ENABLED").map_or(Ok(true), |v| boolean("CACHE_ENABLED", &v))?,
            redis_enabled: get("REDIS_ENABLED")
                .map_or(Ok(false), |v| boolean("REDIS_ENABLED", &v))?,
            redis_url,
            default_ttl: secs("CACHE_TTL", d.default_ttl)?,
            short_ttl: secs("CACHE_SHORT_TTL", d.short_ttl)?,
            long_ttl: secs("CACHE_LONG_TTL", d.long_ttl)?,
            max_ttl: secs("CACHE_MAX_TTL", d.max_ttl)?,
            prefix: var("CACHE_PREFIX").unwrap_or_default(),
            fallback: match get("CACHE_FALLBACK").as_deref() {
                None | Some("memory") => Fallback::Memory,
                Some("none") => Fallback::None,
                Some(other) => {
                    return Err(ConfigError::invalid(
                        "CACHE_FALLBACK",
                        other,
                        "expected `memory` or `none`",
                    ));
                }
            },
            op_timeout: millis("REDIS_TIMEOUT_MS", d.op_timeout)?,
            connect_timeout: millis("REDIS_CONNECT_TIMEOUT_MS", d.connect_timeout)?,
            max_value_bytes: get("CACHE_MAX_VALUE_BYTES")
                .map_or(Ok(d.max_value_bytes as u64), |v| {
                    positive("CACHE_MAX_VALUE_BYTES", &v)
                })?
                .try_into()
                .unwrap_or(usize::MAX),
            ..d
        })
    }
}

fn positive(name: &str, value: &str) -> Result<u64, ConfigError> {
    match value.parse::<u64>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(ConfigError::invalid(
            name,
            value,
            "expected a positive integer",
        )),
    }
}

fn boolean(name: &str, value: &str) -> Result<bool, ConfigError> {
    match value.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(ConfigError::invalid(
            name,
            value,
            "expected `true` or `false`",
        )),
    }
}

fn check_url(url: &str) -> Result<String, ConfigError> {
    if url.starts_with("redis://")
        || url.starts_with("rediss://")
        || url.starts_with("redis+unix://")
    {
        Ok(url.to_owned())
    } else {
        Err(ConfigError::invalid(
            "REDIS_URL",
            url,
            "expected a `redis://` or `rediss://` URL",
        ))
    }
}

fn assemble_url(get: &impl Fn(&str) -> Option<String>) -> Result<String, ConfigError> {
    let host = get("REDIS_HOST").unwrap_or_else(|| "127.0.0.1".to_owned());
    if host.contains(['/', '@', ' ']) {
        return Err(ConfigError::invalid(
            "REDIS_HOST",
            host,
            "expected a host name or address",
        ));
    }
    let port = match get("REDIS_PORT") {
        Some(v) => match v.parse::<u16>() {
            Ok(p) if p > 0 => p,
            _ => {
                return Err(ConfigError::invalid(
                    "REDIS_PORT",
                    v,
                    "expected a port number 1-65535",
                ));
            }
        },
        None => 6379,
    };
    let db = match get("REDIS_DB") {
        Some(v) => v
            .parse::<u32>()
            .map_err(|_| ConfigError::invalid("REDIS_DB", v, "expected a database number"))?,
        None => 0,
    };
    let tls = get("REDIS_SSL").map_or(Ok(false), |v| boolean("REDIS_SSL", &v))?;
    let scheme = if tls { "rediss" } else { "redis" };
    let auth = get("REDIS_PASSWORD").map_or(String::new(), |p| format!(":{}@", percent_encode(&p)));
    Ok(format!("{scheme}://{auth}{host}:{port}/{db}"))
}

/// Percent-encodes everything but unreserved URL characters (for passwords in URLs).
fn percent_encode(s: &str) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect();
        Config::from_lookup(|name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
    }

    #[test]
    fn defaults() {
        let c = from(&[]).unwrap();
        assert!(c.enabled && !c.redis_enabled);
        assert_eq!(c.default_ttl, Duration::from_secs(300));
        assert_eq!(c.redis_url, "redis://127.0.0.1:6379/0");
        assert_eq!(c.fallback, Fallback::Memory);
        assert_eq!(c.prefix, "");
    }

    #[test]
    fn malformed_values_name_variable_and_value() {
        for (name, value) in [
            ("REDIS_PORT", "abc"),
            ("CACHE_TTL", "-5"),
            ("CACHE_TTL", "0"),
            ("REDIS_ENABLED", "maybe"),
            ("CACHE_ENABLED", "nope"),
            ("CACHE_FALLBACK", "disk"),
            ("REDIS_URL", "http://x"),
            ("REDIS_TIMEOUT_MS", "1.5"),
        ] {
            let msg = from(&[(name, value)]).unwrap_err().to_string();
            assert!(msg.contains(name) && msg.contains(value), "{msg}");
        }
    }

    #[test]
    fn url_from_parts() {
        let c = from(&[
            ("REDIS_HOST", "cache.local"),
            ("REDIS_PORT", "6380"),
            ("REDIS_DB", "2"),
            ("REDIS_PASSWORD", "p@ss word"),
            ("REDIS_SSL", "true"),
        ])
        .unwrap();
        assert_eq!(c.redis_url, "rediss://:p%40ss%20word@cache.local:6380/2");
        let c = from(&[("REDIS_URL", "redis://h:1/3"), ("REDIS_PORT", "9")]).unwrap();
        assert_eq!(c.redis_url, "redis://h:1/3");
    }
}
