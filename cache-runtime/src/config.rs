//! Configuration: `.env` and environment variables, or the builder.
//!
//! `.env` is read into a map and consulted after the process environment; the process
//! environment is never modified (`set_var` races with every thread that reads the
//! environment, which is why edition 2024 made it `unsafe`).

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

pub(crate) use crate::error::ConfigError;

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

/// The longest TTL a variable or builder may set: ten years. Beyond that, `Instant + ttl`
/// arithmetic overflows on some platforms, and no cache entry needs it.
pub const MAX_TTL_LIMIT: Duration = Duration::from_secs(10 * 365 * 86_400);
/// The longest timeout a variable may set: one hour.
const MAX_TIMEOUT: Duration = Duration::from_secs(3_600);

/// The process environment with `.env` beneath it, read without modifying the environment.
///
/// ```
/// let env = cache_runtime::Environment::load()?;
/// let port = env.get("PORT").unwrap_or_else(|| "8000".to_owned());
/// # Ok::<(), cache_runtime::ConfigError>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct Environment {
    dotenv: HashMap<String, String>,
}

impl Environment {
    /// Reads `.env` from the current directory or its nearest ancestor that has one; no file
    /// is not an error.
    ///
    /// # Errors
    /// A `.env` that exists but cannot be read or parsed.
    pub fn load() -> Result<Self, ConfigError> {
        match dotenvy::dotenv_iter() {
            Ok(iter) => Self::collect(iter),
            Err(e) if e.not_found() => Ok(Self::default()),
            Err(e) => Err(ConfigError::DotEnv(e.to_string())),
        }
    }

    /// Reads `.env`-formatted variables from `path`.
    ///
    /// # Errors
    /// The file cannot be read or parsed.
    pub fn from_path(path: impl AsRef<std::path::Path>) -> Result<Self, ConfigError> {
        dotenvy::from_path_iter(path)
            .map_err(|e| ConfigError::DotEnv(e.to_string()))
            .and_then(Self::collect)
    }

    fn collect<R: std::io::Read>(iter: dotenvy::Iter<R>) -> Result<Self, ConfigError> {
        let mut dotenv = HashMap::new();
        for item in iter {
            let (name, value) = item.map_err(|e| ConfigError::DotEnv(e.to_string()))?;
            // As dotenvy's own loader does: the first occurrence wins.
            dotenv.entry(name).or_insert(value);
        }
        Ok(Self { dotenv })
    }

    /// The variable from the process environment, else from `.env`.
    pub fn get(&self, name: &str) -> Option<String> {
        std::env::var(name)
            .ok()
            .or_else(|| self.dotenv.get(name).cloned())
    }
}

/// Everything the runtime can be told; built by [`Config::from_env`] or [`crate::CacheBuilder`].
///
/// `Debug` prints the Redis URL with its password replaced by `***`.
#[derive(Clone)]
#[non_exhaustive]
pub struct Config {
    /// `CACHE_ENABLED` (default true): `false` turns caching off entirely. Annotated functions
    /// then run exactly as unannotated ones: no store, no single flight, no counters.
    pub enabled: bool,
    /// `REDIS_ENABLED`: use Redis at all (default false).
    pub redis_enabled: bool,
    /// `REDIS_URL`, or assembled from `REDIS_HOST`/`REDIS_PORT`/`REDIS_DB`/`REDIS_USERNAME`/
    /// `REDIS_PASSWORD`/`REDIS_SSL`. A user name in the URL selects an ACL user.
    pub redis_url: String,
    /// `REDIS_CLUSTER_NODES`: seed nodes of a Redis Cluster (URLs, or `host:port` with the
    /// scheme from `REDIS_SSL` and the credentials from `REDIS_USERNAME`/`REDIS_PASSWORD`).
    /// Non-empty selects the cluster client, and `redis_url` is not used.
    pub redis_cluster_nodes: Vec<String>,
    /// `REDIS_TLS_CA_CERT`: a PEM file of the CA that signed the server's certificate, for
    /// servers whose certificate no public CA signed (default: the public web roots).
    pub redis_tls_ca: Option<PathBuf>,
    /// `REDIS_WAIT_REPLICAS` (0): writes that must survive a failover (invalidations) wait
    /// until this many replicas of their master have them (`WAIT`), within the operation
    /// timeout; a write that fewer replicas acknowledge counts as failed (the cache queues it
    /// and serves from its fallback until it is replayed). 0: no waiting, and a failover may
    /// lose the last milliseconds of invalidations (replication is asynchronous).
    pub wait_replicas: u32,
    /// `CACHE_TTL`: default entry TTL (300 s).
    pub default_ttl: Duration,
    /// `CACHE_SHORT_TTL` (60 s): offered to applications for volatile data.
    pub short_ttl: Duration,
    /// `CACHE_LONG_TTL` (3600 s): offered to applications for stable data.
    pub long_ttl: Duration,
    /// `CACHE_MAX_TTL` (86400 s): entry TTLs are capped here.
    pub max_ttl: Duration,
    /// `CACHE_PREFIX`: prepended to every key (default empty). A `:` is appended when it does
    /// not end with one, so that the prefixes `a` and `ab` cannot collide.
    pub prefix: String,
    /// `CACHE_FALLBACK`: `memory` (default) or `none`.
    pub fallback: Fallback,
    /// `CACHE_FALLBACK_TTL` (10 s): while Redis is enabled but unreachable, in-process entries
    /// live at most this long. Other instances may write through Redis meanwhile, which this
    /// instance cannot see; this bounds how long it can serve what they changed.
    pub fallback_ttl: Duration,
    /// `REDIS_TIMEOUT_MS`: bound on the Redis operations of one call together (50 ms).
    pub op_timeout: Duration,
    /// `REDIS_CONNECT_TIMEOUT_MS`: bound on connecting (1000 ms); start-up waits at most this long.
    pub connect_timeout: Duration,
    /// `REDIS_FAILURE_THRESHOLD`: consecutive Redis failures that open the circuit breaker (3).
    pub failure_threshold: u32,
    /// `CACHE_FLIGHT_TIMEOUT_MS`: how long concurrent callers of one key wait for its load
    /// before loading on their own (5000 ms), so that one hung load cannot hold them all.
    pub flight_timeout: Duration,
    /// `CACHE_MAX_VALUE_BYTES`: larger encoded values are not cached (1 MiB).
    pub max_value_bytes: usize,
    /// `CACHE_MEMORY_BYTES`: what the in-process store may hold, per-entry overhead included
    /// (64 MiB).
    pub memory_capacity_bytes: u64,
    /// `CACHE_OUTAGE_FILE`: a file that exists while invalidations wait for Redis. A process
    /// that starts and finds it (its predecessor died before Redis came back) invalidates
    /// everything once, since the invalidations it held are lost. Unset: no file.
    pub outage_file: Option<PathBuf>,
    /// `CACHE_L1` (default false; needs the `l1` feature): an in-process L1 in front of Redis,
    /// kept coherent across instances by the invalidations' own messages (see `ARCHITECTURE.md`,
    /// "The two-level cache"). Functions declared `l1 = false` never use it.
    pub l1: bool,
    /// `CACHE_L1_BYTES`: what the L1 may hold, per-entry overhead included (64 MiB). 0 keeps
    /// no entries but still the table of marker generations: a read then fetches the entry
    /// alone from Redis (one `GET`) rather than the entry and its markers.
    pub l1_capacity_bytes: u64,
    /// `CACHE_L1_MAX_TTL` (30 s): the longest an L1 entry is served, and so the longest a
    /// write that bypasses the cache's invalidations (`redis-cli`, another service,
    /// `FLUSHALL`) can go unseen by this instance.
    pub l1_max_ttl: Duration,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("enabled", &self.enabled)
            .field("redis_enabled", &self.redis_enabled)
            .field("redis_url", &redact_url(&self.redis_url))
            .field(
                "redis_cluster_nodes",
                &self
                    .redis_cluster_nodes
                    .iter()
                    .map(|n| redact_url(n))
                    .collect::<Vec<_>>(),
            )
            .field("redis_tls_ca", &self.redis_tls_ca)
            .field("wait_replicas", &self.wait_replicas)
            .field("default_ttl", &self.default_ttl)
            .field("short_ttl", &self.short_ttl)
            .field("long_ttl", &self.long_ttl)
            .field("max_ttl", &self.max_ttl)
            .field("prefix", &self.prefix)
            .field("fallback", &self.fallback)
            .field("fallback_ttl", &self.fallback_ttl)
            .field("op_timeout", &self.op_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("failure_threshold", &self.failure_threshold)
            .field("flight_timeout", &self.flight_timeout)
            .field("max_value_bytes", &self.max_value_bytes)
            .field("memory_capacity_bytes", &self.memory_capacity_bytes)
            .field("outage_file", &self.outage_file)
            .field("l1", &self.l1)
            .field("l1_capacity_bytes", &self.l1_capacity_bytes)
            .field("l1_max_ttl", &self.l1_max_ttl)
            .finish()
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            enabled: true,
            redis_enabled: false,
            redis_url: "redis://127.0.0.1:6379/0".to_owned(),
            redis_cluster_nodes: Vec::new(),
            redis_tls_ca: None,
            wait_replicas: 0,
            default_ttl: Duration::from_secs(300),
            short_ttl: Duration::from_secs(60),
            long_ttl: Duration::from_secs(3600),
            max_ttl: Duration::from_secs(86_400),
            prefix: String::new(),
            fallback: Fallback::Memory,
            fallback_ttl: Duration::from_secs(10),
            op_timeout: Duration::from_millis(50),
            connect_timeout: Duration::from_millis(1000),
            failure_threshold: 3,
            flight_timeout: Duration::from_millis(5000),
            max_value_bytes: 1 << 20,
            memory_capacity_bytes: 64 << 20,
            outage_file: None,
            l1: false,
            l1_capacity_bytes: 64 << 20,
            l1_max_ttl: Duration::from_secs(30),
        }
    }
}

impl Config {
    /// Reads the environment, then `.env` (see [`Environment`]); the environment wins.
    ///
    /// # Errors
    /// A malformed value (`REDIS_PORT=abc`, `CACHE_TTL=-5`) names the variable and the value.
    /// An unreachable Redis is not an error.
    pub fn from_env() -> Result<Self, ConfigError> {
        let env = Environment::load()?;
        Self::from_lookup(|name| env.get(name))
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
        let secs = |name: &str, default: Duration, max: Duration| {
            get(name).map_or(Ok(default), |v| {
                bounded(name, &v, max.as_secs()).map(Duration::from_secs)
            })
        };
        let millis = |name: &str, default: Duration| {
            get(name).map_or(Ok(default), |v| {
                bounded(name, &v, millis_of(MAX_TIMEOUT)).map(Duration::from_millis)
            })
        };
        let flag = |name: &str, default: bool| get(name).map_or(Ok(default), |v| boolean(name, &v));
        let tls = get("REDIS_SSL")
            .map(|v| boolean("REDIS_SSL", &v))
            .transpose()?;
        let redis_cluster_nodes = match get("REDIS_CLUSTER_NODES") {
            Some(nodes) => cluster_nodes(&nodes, &get, tls)?,
            None => Vec::new(),
        };
        let redis_url = match get("REDIS_URL") {
            Some(_) if !redis_cluster_nodes.is_empty() => {
                return Err(ConfigError::invalid(
                    "REDIS_CLUSTER_NODES",
                    redact_list(&redis_cluster_nodes.join(",")),
                    "REDIS_URL is set too: set one of them (a single node or a cluster)",
                ));
            }
            Some(url) => checked_url("REDIS_URL", &url, &get, tls)?,
            None if !redis_cluster_nodes.is_empty() => d.redis_url.clone(),
            None => assemble_url(&get, tls.unwrap_or(false))?,
        };
        let max_ttl = secs("CACHE_MAX_TTL", d.max_ttl, MAX_TTL_LIMIT)?;
        Ok(Self {
            enabled: flag("CACHE_ENABLED", true)?,
            redis_enabled: flag("REDIS_ENABLED", false)?,
            redis_url,
            redis_cluster_nodes,
            redis_tls_ca: get("REDIS_TLS_CA_CERT").map(PathBuf::from),
            wait_replicas: get("REDIS_WAIT_REPLICAS").map_or(Ok(0), |v| {
                match v.parse::<u32>() {
                    Ok(n) if n <= 16 => Ok(n),
                    _ => Err(ConfigError::invalid(
                        "REDIS_WAIT_REPLICAS",
                        v,
                        "expected a number of replicas, 0-16",
                    )),
                }
            })?,
            default_ttl: secs("CACHE_TTL", d.default_ttl, MAX_TTL_LIMIT)?,
            short_ttl: secs("CACHE_SHORT_TTL", d.short_ttl, MAX_TTL_LIMIT)?,
            long_ttl: secs("CACHE_LONG_TTL", d.long_ttl, MAX_TTL_LIMIT)?,
            max_ttl,
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
            fallback_ttl: secs("CACHE_FALLBACK_TTL", d.fallback_ttl, MAX_TTL_LIMIT)?,
            op_timeout: millis("REDIS_TIMEOUT_MS", d.op_timeout)?,
            connect_timeout: millis("REDIS_CONNECT_TIMEOUT_MS", d.connect_timeout)?,
            failure_threshold: get("REDIS_FAILURE_THRESHOLD")
                .map_or(Ok(u64::from(d.failure_threshold)), |v| {
                    bounded("REDIS_FAILURE_THRESHOLD", &v, 1_000)
                })?
                .try_into()
                .unwrap_or(u32::MAX),
            flight_timeout: millis("CACHE_FLIGHT_TIMEOUT_MS", d.flight_timeout)?,
            max_value_bytes: get("CACHE_MAX_VALUE_BYTES")
                .map_or(Ok(d.max_value_bytes as u64), |v| {
                    bounded("CACHE_MAX_VALUE_BYTES", &v, u64::from(u32::MAX))
                })?
                .try_into()
                .unwrap_or(usize::MAX),
            memory_capacity_bytes: get("CACHE_MEMORY_BYTES")
                .map_or(Ok(d.memory_capacity_bytes), |v| {
                    bounded("CACHE_MEMORY_BYTES", &v, u64::MAX)
                })?,
            outage_file: get("CACHE_OUTAGE_FILE").map(PathBuf::from),
            l1: match flag("CACHE_L1", false)? {
                true if !cfg!(feature = "l1") => {
                    return Err(ConfigError::invalid(
                        "CACHE_L1",
                        "true",
                        "this build of cache-runtime has no `l1` feature",
                    ));
                }
                l1 => l1,
            },
            // 0 is meaningful here: the table without entries.
            l1_capacity_bytes: match get("CACHE_L1_BYTES").as_deref() {
                None => d.l1_capacity_bytes,
                Some("0") => 0,
                Some(v) => bounded("CACHE_L1_BYTES", v, u64::MAX)?,
            },
            l1_max_ttl: secs("CACHE_L1_MAX_TTL", d.l1_max_ttl, MAX_TTL_LIMIT)?,
            ..d
        })
    }

    /// Whether Redis is a cluster (`REDIS_CLUSTER_NODES` is set).
    pub fn is_cluster(&self) -> bool {
        !self.redis_cluster_nodes.is_empty()
    }

    /// The prefix as keys use it: empty, or ending in `:`.
    pub(crate) fn key_prefix(&self) -> String {
        key_prefix(&self.prefix)
    }
}

fn millis_of(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A positive integer no larger than `max`.
/// `prefix` as keys use it: empty, or ending in `:`.
pub(crate) fn key_prefix(prefix: &str) -> String {
    match prefix {
        "" => String::new(),
        p if p.ends_with(':') => p.to_owned(),
        p => format!("{p}:"),
    }
}

pub(crate) fn bounded(name: &str, value: &str, max: u64) -> Result<u64, ConfigError> {
    match value.parse::<u64>() {
        Ok(n) if n > 0 && n <= max => Ok(n),
        Ok(n) if n > max => Err(ConfigError::invalid(
            name,
            value,
            format!("expected at most {max}"),
        )),
        _ => Err(ConfigError::invalid(
            name,
            value,
            "expected a positive integer",
        )),
    }
}

pub(crate) fn boolean(name: &str, value: &str) -> Result<bool, ConfigError> {
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

/// A `redis://` or `rediss://` URL given in variable `name`, checked against `REDIS_SSL` and
/// `REDIS_PASSWORD`.
fn checked_url(
    name: &str,
    url: &str,
    get: &impl Fn(&str) -> Option<String>,
    tls: Option<bool>,
) -> Result<String, ConfigError> {
    if !(url.starts_with("redis://")
        || url.starts_with("rediss://")
        || url.starts_with("redis+unix://"))
    {
        return Err(ConfigError::invalid(
            name,
            redact_url(url),
            "expected a `redis://` or `rediss://` URL",
        ));
    }
    if tls == Some(true) && !url.starts_with("rediss://") {
        return Err(ConfigError::invalid(
            "REDIS_SSL",
            "true",
            format!(
                "{name} `{}` is not a `rediss://` URL: use `rediss://` (or unset REDIS_SSL), so \
                 that a plaintext connection is never made by mistake",
                redact_url(url)
            ),
        ));
    }
    if get("REDIS_PASSWORD").is_some() && !has_password(url) {
        return Err(ConfigError::invalid(
            "REDIS_PASSWORD",
            "***",
            format!(
                "{name} is set, so REDIS_PASSWORD would be ignored: put the password in the URL \
                 (`redis://user:password@host`) instead"
            ),
        ));
    }
    Ok(url.to_owned())
}

/// `REDIS_CLUSTER_NODES`: comma-separated URLs or `host:port` pairs, as URLs. The cluster
/// client takes one scheme, one set of credentials and database 0 for every node, so anything
/// else is refused here, naming the variable.
fn cluster_nodes(
    list: &str,
    get: &impl Fn(&str) -> Option<String>,
    tls: Option<bool>,
) -> Result<Vec<String>, ConfigError> {
    const NAME: &str = "REDIS_CLUSTER_NODES";
    let invalid = |reason: &str| ConfigError::invalid(NAME, redact_list(list), reason);
    if get("REDIS_DB").is_some_and(|db| db != "0") {
        return Err(ConfigError::invalid(
            "REDIS_DB",
            get("REDIS_DB").unwrap_or_default(),
            "a Redis Cluster has database 0 only",
        ));
    }
    let scheme = if tls == Some(true) { "rediss" } else { "redis" };
    let mut nodes = Vec::new();
    for item in list.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let url = if item.contains("://") {
            let url = checked_url(NAME, item, get, tls)?;
            let path = url.splitn(4, '/').nth(3).unwrap_or_default();
            if !matches!(path, "" | "0") {
                return Err(invalid("a Redis Cluster has database 0 only"));
            }
            url
        } else {
            let (host, port) = item
                .rsplit_once(':')
                .filter(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0))
                .ok_or_else(|| invalid("expected URLs or `host:port` pairs, comma-separated"))?;
            check_host(NAME, host)?;
            format!("{scheme}://{}{host}:{port}", auth_part(get))
        };
        nodes.push(url);
    }
    let Some(first) = nodes.first() else {
        return Err(invalid("expected at least one node"));
    };
    let same = |n: &String| {
        n.starts_with("rediss://") == first.starts_with("rediss://")
            && user_info(n).map(|(_, i)| i) == user_info(first).map(|(_, i)| i)
    };
    if !nodes.iter().all(same) {
        return Err(invalid(
            "every node needs the same scheme and credentials (the cluster client uses one)",
        ));
    }
    Ok(nodes)
}

fn check_host(name: &str, host: &str) -> Result<(), ConfigError> {
    if host.is_empty() || host.contains(['/', '@', ' ', '?', '#', ',']) {
        return Err(ConfigError::invalid(
            name,
            host,
            "expected a host name or address",
        ));
    }
    Ok(())
}

/// `user:password@` from `REDIS_USERNAME`/`REDIS_PASSWORD` (percent-encoded), or nothing.
fn auth_part(get: &impl Fn(&str) -> Option<String>) -> String {
    let user = get("REDIS_USERNAME").map(|u| percent_encode(&u));
    match (user, get("REDIS_PASSWORD")) {
        (user, Some(p)) => format!("{}:{}@", user.unwrap_or_default(), percent_encode(&p)),
        (Some(user), None) => format!("{user}@"),
        (None, None) => String::new(),
    }
}

/// The user-info part of a URL (`user:password` in `scheme://user:password@host`), if any.
fn user_info(url: &str) -> Option<(usize, &str)> {
    let start = url.find("://")? + 3;
    let authority_end = url[start..].find('/').map_or(url.len(), |i| start + i);
    let at = url[start..authority_end].rfind('@')?;
    Some((start, &url[start..start + at]))
}

fn has_password(url: &str) -> bool {
    user_info(url).is_some_and(|(_, info)| info.contains(':'))
}

/// `url` with the password replaced by `***`, for logs and errors.
pub(crate) fn redact_url(url: &str) -> String {
    match user_info(url) {
        Some((start, info)) if info.contains(':') => {
            let user = info.split(':').next().unwrap_or_default();
            format!("{}{user}:***{}", &url[..start], &url[start + info.len()..])
        }
        _ => url.to_owned(),
    }
}

/// A comma-separated list of URLs with every password replaced by `***`.
pub(crate) fn redact_list(list: &str) -> String {
    list.split(',')
        .map(redact_url)
        .collect::<Vec<_>>()
        .join(",")
}

fn assemble_url(get: &impl Fn(&str) -> Option<String>, tls: bool) -> Result<String, ConfigError> {
    let host = get("REDIS_HOST").unwrap_or_else(|| "127.0.0.1".to_owned());
    check_host("REDIS_HOST", &host)?;
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
    let scheme = if tls { "rediss" } else { "redis" };
    Ok(format!("{scheme}://{}{host}:{port}/{db}", auth_part(get)))
}

/// Percent-encodes everything but unreserved URL characters (for user names and passwords).
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
        assert_eq!(c.fallback_ttl, Duration::from_secs(10));
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
            ("CACHE_MEMORY_BYTES", "lots"),
            ("REDIS_FAILURE_THRESHOLD", "0"),
            ("CACHE_L1", "yes please"),
            ("CACHE_L1_BYTES", "-1"),
            ("CACHE_L1_MAX_TTL", "0"),
        ] {
            let msg = from(&[(name, value)]).unwrap_err().to_string();
            assert!(msg.contains(name) && msg.contains(value), "{msg}");
        }
    }

    #[test]
    fn l1_settings() {
        let c = from(&[("CACHE_L1_BYTES", "0"), ("CACHE_L1_MAX_TTL", "5")]).unwrap();
        assert!(!c.l1, "off unless asked for");
        assert_eq!(
            (c.l1_capacity_bytes, c.l1_max_ttl),
            (0, Duration::from_secs(5))
        );
        let on = from(&[("CACHE_L1", "true")]);
        if cfg!(feature = "l1") {
            assert!(on.unwrap().l1);
        } else {
            let msg = on.unwrap_err().to_string();
            assert!(
                msg.contains("CACHE_L1") && msg.contains("`l1` feature"),
                "{msg}"
            );
        }
    }

    /// R17: values that overflowed `Duration` or `Instant` arithmetic are errors naming the
    /// variable, not panics later.
    #[test]
    fn r17_huge_durations_are_errors() {
        for (name, value) in [
            ("CACHE_MAX_TTL", "18446744073709551615"),
            ("CACHE_MAX_TTL", "9300000000000000000"),
            ("CACHE_TTL", "315360001"),
            ("CACHE_FALLBACK_TTL", "18446744073709551615"),
            ("REDIS_TIMEOUT_MS", "18446744073709551615"),
            ("CACHE_FLIGHT_TIMEOUT_MS", "3600001"),
        ] {
            let msg = from(&[(name, value)]).unwrap_err().to_string();
            assert!(msg.contains(name) && msg.contains("at most"), "{msg}");
        }
        assert_eq!(
            from(&[("CACHE_MAX_TTL", "315360000")]).unwrap().max_ttl,
            MAX_TTL_LIMIT
        );
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
        let c = from(&[("REDIS_USERNAME", "app"), ("REDIS_PASSWORD", "pw")]).unwrap();
        assert_eq!(c.redis_url, "redis://app:pw@127.0.0.1:6379/0");
        let c = from(&[("REDIS_URL", "redis://h:1/3"), ("REDIS_PORT", "9")]).unwrap();
        assert_eq!(c.redis_url, "redis://h:1/3");
    }

    /// R19: `REDIS_SSL=true` never silently connects in plaintext; a password beside a URL
    /// without one is not silently dropped.
    #[test]
    fn r19_conflicting_tls_and_password_settings_are_errors() {
        let e = from(&[("REDIS_URL", "redis://h:1/0"), ("REDIS_SSL", "true")]).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("REDIS_SSL") && msg.contains("rediss://"),
            "{msg}"
        );
        assert!(from(&[("REDIS_URL", "rediss://h:1/0"), ("REDIS_SSL", "true")]).is_ok());
        assert!(from(&[("REDIS_URL", "redis://h:1/0"), ("REDIS_SSL", "false")]).is_ok());
        let e = from(&[("REDIS_URL", "redis://h:1/0"), ("REDIS_PASSWORD", "pw")]).unwrap_err();
        assert!(e.to_string().contains("REDIS_PASSWORD"), "{e}");
        assert!(!e.to_string().contains("pw@") && !e.to_string().contains("`pw`"));
    }

    /// R19: no password in `Debug` or in errors.
    #[test]
    fn r19_secrets_are_redacted() {
        let c = from(&[("REDIS_URL", "redis://app:hunter2@h:1/0")]).unwrap();
        let debug = format!("{c:?}");
        assert!(
            !debug.contains("hunter2") && debug.contains("app:***@h:1/0"),
            "{debug}"
        );
        let e = from(&[("REDIS_URL", "http://app:hunter2@h")]).unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
        let e = from(&[("REDIS_URL", "redis://:hunter2@h/0"), ("REDIS_SSL", "1")]).unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
        assert_eq!(redact_url("redis://h:1/0"), "redis://h:1/0");
        assert_eq!(redact_url("rediss://:pw@h/0"), "rediss://:***@h/0");
        assert_eq!(redact_url("redis://user@h/0"), "redis://user@h/0");
    }

    #[test]
    fn cluster_nodes_as_urls_or_host_port_pairs() {
        let c = from(&[(
            "REDIS_CLUSTER_NODES",
            "10.0.0.1:7000, redis://10.0.0.2:7001 ,",
        )])
        .unwrap();
        assert!(c.is_cluster());
        assert_eq!(
            c.redis_cluster_nodes,
            ["redis://10.0.0.1:7000", "redis://10.0.0.2:7001"]
        );
        let c = from(&[
            ("REDIS_CLUSTER_NODES", "a:1,b:2"),
            ("REDIS_SSL", "true"),
            ("REDIS_USERNAME", "app"),
            ("REDIS_PASSWORD", "p w"),
        ])
        .unwrap();
        assert_eq!(
            c.redis_cluster_nodes,
            ["rediss://app:p%20w@a:1", "rediss://app:p%20w@b:2"]
        );
        assert!(!from(&[]).unwrap().is_cluster());
    }

    #[test]
    fn bad_cluster_settings_name_the_variable() {
        for (vars, name) in [
            (
                &[("REDIS_CLUSTER_NODES", "a:1"), ("REDIS_URL", "redis://b:2")][..],
                "REDIS_CLUSTER_NODES",
            ),
            (&[("REDIS_CLUSTER_NODES", "a")], "REDIS_CLUSTER_NODES"),
            (&[("REDIS_CLUSTER_NODES", "a:0")], "REDIS_CLUSTER_NODES"),
            (&[("REDIS_CLUSTER_NODES", ",")], "REDIS_CLUSTER_NODES"),
            (
                &[("REDIS_CLUSTER_NODES", "http://a:1")],
                "REDIS_CLUSTER_NODES",
            ),
            (
                &[("REDIS_CLUSTER_NODES", "redis://a:1/2")],
                "REDIS_CLUSTER_NODES",
            ),
            (
                &[("REDIS_CLUSTER_NODES", "redis://a:1,rediss://b:2")],
                "REDIS_CLUSTER_NODES",
            ),
            (
                &[("REDIS_CLUSTER_NODES", "redis://:x@a:1,redis://:y@b:2")],
                "REDIS_CLUSTER_NODES",
            ),
            (
                &[
                    ("REDIS_CLUSTER_NODES", "redis://a:1"),
                    ("REDIS_SSL", "true"),
                ],
                "REDIS_SSL",
            ),
            (
                &[
                    ("REDIS_CLUSTER_NODES", "redis://a:1"),
                    ("REDIS_PASSWORD", "pw"),
                ],
                "REDIS_PASSWORD",
            ),
            (
                &[("REDIS_CLUSTER_NODES", "a:1"), ("REDIS_DB", "3")],
                "REDIS_DB",
            ),
            (&[("REDIS_WAIT_REPLICAS", "17")], "REDIS_WAIT_REPLICAS"),
            (&[("REDIS_WAIT_REPLICAS", "-1")], "REDIS_WAIT_REPLICAS"),
        ] {
            let msg = from(vars).unwrap_err().to_string();
            assert!(msg.contains(name), "{vars:?}: {msg}");
        }
        let msg = from(&[(
            "REDIS_CLUSTER_NODES",
            "redis://:hunter2@a:1,redis://:hunter3@b:2",
        )])
        .unwrap_err()
        .to_string();
        assert!(!msg.contains("hunter"), "{msg}");
        assert_eq!(
            from(&[("REDIS_WAIT_REPLICAS", "1")]).unwrap().wait_replicas,
            1
        );
    }

    /// R25: prefixes `a` and `ab` cannot produce the same key.
    #[test]
    fn r25_prefix_ends_with_a_separator() {
        let prefixed = |p: &str| {
            Config {
                prefix: p.to_owned(),
                ..Config::default()
            }
            .key_prefix()
        };
        assert_eq!(prefixed(""), "");
        assert_eq!(prefixed("app"), "app:");
        assert_eq!(prefixed("app:"), "app:");
        assert_ne!(
            format!("{}busers:1", prefixed("a")),
            format!("{}users:1", prefixed("ab"))
        );
    }

    /// R18: `.env` is read into a map; the process environment wins and is not modified.
    #[test]
    fn r18_dotenv_is_read_without_touching_the_environment() {
        let dir = std::env::temp_dir().join(format!("cache-runtime-env-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(".env");
        std::fs::write(
            &path,
            "CACHE_RUNTIME_TEST_ONLY_IN_FILE=file\nPATH=not-the-path\nCACHE_TTL=42\n",
        )
        .unwrap();
        let env = Environment::from_path(&path).unwrap();
        assert_eq!(
            env.get("CACHE_RUNTIME_TEST_ONLY_IN_FILE").as_deref(),
            Some("file")
        );
        assert!(std::env::var("CACHE_RUNTIME_TEST_ONLY_IN_FILE").is_err());
        assert_ne!(env.get("PATH").as_deref(), Some("not-the-path"));
        let c = Config::from_lookup(|n| env.get(n)).unwrap();
        assert_eq!(c.default_ttl, Duration::from_secs(42));
        std::fs::write(&path, "BROKEN='unterminated\n").unwrap();
        assert!(matches!(
            Environment::from_path(&path),
            Err(ConfigError::DotEnv(_))
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
