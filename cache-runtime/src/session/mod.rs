//! Sessions (feature `sessions`): server-side records behind an unguessable id, on the shared
//! [`RedisClient`] or, with Redis disabled, in process.
//!
//! ```
//! use cache_runtime::session::{NewSession, SessionConfig, SessionStore};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let sessions = SessionStore::memory(SessionConfig::default()); // `SessionStore::redis(..)` on Redis
//! let (id, session) = sessions.create(NewSession::new("42", "ada", "user")).await?;
//! // The id goes to the client (a cookie); the store keeps only a hash of it.
//! let mut patch = serde_json::Map::new();
//! patch.insert("theme".into(), "dark".into());
//! sessions.update(&id, patch).await?;
//! let again = sessions.get(&id).await?.expect("alive"); // also slides the idle timeout
//! assert_eq!(again.data["theme"], "dark");
//! assert_eq!(sessions.list_user("42").await?.len(), 1);
//! sessions.delete_user("42").await?; // "log out everywhere"
//! assert!(sessions.get(&id).await?.is_none());
//! # let _ = session;
//! # Ok(())
//! # }
//! ```
//!
//! What a security review asks for, and where it is:
//! - Ids are 256 bits from the operating system's CSPRNG, as 64 hex characters. The store is
//!   keyed by the id's BLAKE3 hash, so a dump of Redis holds no usable id; `Debug` and logs
//!   show only [`SessionId::hint`], 8 characters of that hash.
//! - Lifetimes: an idle timeout that every lookup slides (at most once per
//!   [`SessionConfig::touch_interval`]) and an absolute timeout nothing extends, regeneration
//!   included. Redis' clock decides, so instances with skewed clocks agree.
//! - Atomicity: create never overwrites; an update merges its fields into the record in one
//!   script, so concurrent updates of different fields all survive; no write recreates a
//!   deleted or expired session (a request that saves after a concurrent logout gets `None`);
//!   [`SessionStore::regenerate`] claims the old record (read and delete in one step) before
//!   the new id exists, so exactly one of a regenerate and a concurrent logout wins.
//! - A per-user index (a sorted set scored by each session's absolute expiry, with its own
//!   TTL) lists and ends a user's sessions. It is written before the session, so it never
//!   misses a live one; entries of sessions that ended early are pruned by every list, create
//!   and [`SessionStore::delete_user`], and expire with their absolute timeout anyway.
//! - Failure: Redis disabled means the in-process store ([`SessionStore::memory`], same
//!   semantics, one process). Redis enabled but unreachable means [`SessionError::Unavailable`],
//!   after one operation timeout, then at once while the breaker is open: never a silent new
//!   session, never an anonymous or another user's one.

mod jwt;
mod memory;
mod redis;

pub use jwt::{Claims, Jwt, MIN_SECRET_BYTES};

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::{Map, Value};

use crate::RedisClient;
use crate::config::bounded;
use crate::error::ConfigError;

/// Largest serialized patch [`SessionStore::update`] (or [`NewSession::data`]) accepts.
pub const MAX_DATA_BYTES: usize = 64 * 1024;

/// How long sessions live and how often a lookup writes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionConfig {
    /// Idle timeout, slid by every lookup (`SESSION_TTL`, seconds, default 86400).
    pub idle_ttl: Duration,
    /// Absolute lifetime from creation (`SESSION_ABSOLUTE_TTL`, seconds, default 604800).
    pub absolute_ttl: Duration,
    /// A lookup slides the idle timeout only when the last slide is at least this old
    /// (`SESSION_TOUCH_INTERVAL`, seconds, default 0: every lookup). A larger value saves
    /// writes and may end an idle session up to this much early.
    pub touch_interval: Duration,
    /// Prepended to every key (`CACHE_PREFIX`, as the cache's).
    pub prefix: String,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            idle_ttl: Duration::from_secs(86_400),
            absolute_ttl: Duration::from_secs(604_800),
            touch_interval: Duration::ZERO,
            prefix: String::new(),
        }
    }
}

/// At most ten years, like cache TTLs.
const MAX_TTL_SECS: u64 = 10 * 365 * 86_400;

impl SessionConfig {
    /// Reads the variables above from the environment, then `.env`.
    ///
    /// # Errors
    /// A malformed value names the variable; so does an absolute timeout shorter than the idle
    /// one.
    pub fn from_env() -> Result<Self, ConfigError> {
        let env = crate::Environment::load()?;
        Self::from_lookup(|name| env.get(name))
    }

    /// Builds a configuration from any variable source.
    ///
    /// ```
    /// use cache_runtime::session::SessionConfig;
    /// let config = SessionConfig::from_lookup(|name| (name == "SESSION_TTL").then(|| "60".into()))?;
    /// assert_eq!(config.idle_ttl.as_secs(), 60);
    /// # Ok::<(), cache_runtime::ConfigError>(())
    /// ```
    ///
    /// # Errors
    /// As [`SessionConfig::from_env`].
    pub fn from_lookup(var: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let d = Self::default();
        let get = |name: &str| {
            var(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let secs = |name: &str, default: Duration| {
            get(name).map_or(Ok(default), |v| {
                bounded(name, &v, MAX_TTL_SECS).map(Duration::from_secs)
            })
        };
        let touch_interval = match get("SESSION_TOUCH_INTERVAL").as_deref() {
            None | Some("0") => Duration::ZERO,
            Some(v) => Duration::from_secs(bounded("SESSION_TOUCH_INTERVAL", v, MAX_TTL_SECS)?),
        };
        let config = Self {
            idle_ttl: secs("SESSION_TTL", d.idle_ttl)?,
            absolute_ttl: secs("SESSION_ABSOLUTE_TTL", d.absolute_ttl)?,
            touch_interval,
            prefix: crate::Config::from_lookup(&var)?.key_prefix(),
        };
        if config.absolute_ttl < config.idle_ttl {
            return Err(ConfigError::invalid(
                "SESSION_ABSOLUTE_TTL",
                config.absolute_ttl.as_secs().to_string(),
                format!(
                    "expected at least SESSION_TTL ({})",
                    config.idle_ttl.as_secs()
                ),
            ));
        }
        Ok(config)
    }
}

/// A session id: 256 random bits as 64 lowercase hex characters. Its `Debug` shows only
/// [`SessionId::hint`]; [`SessionId::expose`] is for the cookie or header that carries it.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionId {
    text: String,
    hash: [u8; 32],
}

impl SessionId {
    /// A fresh id from the operating system's CSPRNG.
    ///
    /// # Errors
    /// The OS has no random source to offer (then no session can be created safely).
    pub fn generate() -> Result<Self, SessionError> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|_| SessionError::Unavailable)?;
        Ok(Self::from_bytes(&bytes))
    }

    fn from_bytes(bytes: &[u8; 32]) -> Self {
        let text = hex(bytes);
        let hash = *blake3::hash(text.as_bytes()).as_bytes();
        Self { text, hash }
    }

    /// Parses an id a client sent: `None` unless it is 64 lowercase hex characters, so a
    /// malformed credential costs no lookup.
    pub fn parse(text: &str) -> Option<Self> {
        let ok = text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        ok.then(|| Self {
            text: text.to_owned(),
            hash: *blake3::hash(text.as_bytes()).as_bytes(),
        })
    }

    /// The id itself, for the `Set-Cookie` header or the login response. Never log it.
    pub fn expose(&self) -> &str {
        &self.text
    }

    /// 8 hex characters of the id's hash: enough to tell a user's sessions apart in a list or
    /// a log, useless for guessing the id.
    pub fn hint(&self) -> String {
        hex(&self.hash[..4])
    }

    /// The hash as the store's key suffix.
    fn key(&self) -> String {
        hex(&self.hash)
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId({}…)", self.hint())
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// What a new session is created with.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct NewSession {
    /// The user it authenticates.
    pub user_id: String,
    /// Their name, for display.
    pub username: String,
    /// Their role, for authorization (`"admin"`, `"user"`).
    pub role: String,
    /// Initial custom data.
    pub data: Map<String, Value>,
}

impl NewSession {
    /// A session for `user_id` with no custom data.
    pub fn new(
        user_id: impl Into<String>,
        username: impl Into<String>,
        role: impl Into<String>,
    ) -> Self {
        Self {
            user_id: user_id.into(),
            username: username.into(),
            role: role.into(),
            data: Map::new(),
        }
    }

    /// With initial custom data.
    #[must_use]
    pub fn data(mut self, data: Map<String, Value>) -> Self {
        self.data = data;
        self
    }
}

/// A live session's record.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Session {
    /// The user it authenticates.
    pub user_id: String,
    /// Their name when the session was created.
    pub username: String,
    /// Their role when the session was created.
    pub role: String,
    /// When it was created (regeneration keeps this).
    pub created_at: SystemTime,
    /// When a lookup last slid its idle timeout.
    pub last_accessed: SystemTime,
    /// When it ends unless used before: the idle timeout from `last_accessed`, capped by the
    /// absolute one.
    pub expires_at: SystemTime,
    /// When it ends however much it is used.
    pub absolute_expires_at: SystemTime,
    /// Custom data: a JSON object, merged by [`SessionStore::update`].
    pub data: Map<String, Value>,
}

/// One of a user's sessions, as [`SessionStore::list_user`] lists them: never the id.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct SessionSummary {
    /// [`SessionId::hint`] of its id.
    pub id_hint: String,
    /// Its record.
    pub session: Session,
}

/// Why a session operation did not happen.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// Redis is enabled but did not answer (or the breaker is open): the caller must not
    /// treat the request as anonymous; answer 503.
    #[error("session store unavailable")]
    Unavailable,
    /// The data is not acceptable (too large).
    #[error("session data rejected: {0}")]
    InvalidData(String),
}

impl From<crate::redis::Error> for SessionError {
    fn from(e: crate::redis::Error) -> Self {
        tracing::debug!(error = %e, "session store operation failed");
        Self::Unavailable
    }
}

/// Counters of a [`SessionStore`], since it was built.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct SessionStats {
    /// `redis` or `memory`.
    pub backend: &'static str,
    /// Sessions created (regenerations included).
    pub created: u64,
    /// Lookups that found a live session.
    pub hits: u64,
    /// Lookups of unknown, expired or ended sessions.
    pub misses: u64,
    /// Updates applied.
    pub updated: u64,
    /// Sessions ended by delete, regenerate or a user-wide delete.
    pub deleted: u64,
    /// Operations that failed because Redis was unavailable.
    pub unavailable: u64,
}

/// Live sessions and distinct users, as [`SessionStore::count`] finds them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct SessionCount {
    /// Sessions alive now.
    pub active: u64,
    /// Users with at least one.
    pub users: u64,
}

#[derive(Debug, Default)]
struct Counters {
    created: AtomicU64,
    hits: AtomicU64,
    misses: AtomicU64,
    updated: AtomicU64,
    deleted: AtomicU64,
    unavailable: AtomicU64,
}

fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

#[derive(Debug)]
enum Backend {
    Redis(redis::RedisSessions),
    Memory(memory::MemorySessions),
}

/// The session store: cheap to clone, shared by every request.
#[derive(Debug, Clone)]
pub struct SessionStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    backend: Backend,
    config: SessionConfig,
    counters: Counters,
}

/// A record as both backends keep it: times in ms since the Unix epoch.
#[derive(Debug, Clone, PartialEq)]
struct Record {
    user_id: String,
    username: String,
    role: String,
    created_ms: u64,
    accessed_ms: u64,
    absolute_ms: u64,
    data: Map<String, Value>,
}

impl Record {
    fn into_session(self, idle: Duration) -> Session {
        let expires = self
            .accessed_ms
            .saturating_add(millis(idle))
            .min(self.absolute_ms);
        Session {
            user_id: self.user_id,
            username: self.username,
            role: self.role,
            created_at: at(self.created_ms),
            last_accessed: at(self.accessed_ms),
            expires_at: at(expires),
            absolute_expires_at: at(self.absolute_ms),
            data: self.data,
        }
    }
}

fn at(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn check_size(data: &Map<String, Value>) -> Result<(), SessionError> {
    let size = serde_json::to_vec(data).map_or(usize::MAX, |v| v.len());
    if size > MAX_DATA_BYTES {
        return Err(SessionError::InvalidData(format!(
            "{size} bytes, at most {MAX_DATA_BYTES}"
        )));
    }
    Ok(())
}

impl SessionStore {
    /// Sessions in Redis, through `client` (its breaker, timeouts and recovery).
    pub fn redis(client: RedisClient, config: SessionConfig) -> Self {
        let backend = Backend::Redis(redis::RedisSessions::new(client, &config.prefix));
        Self::with(backend, config)
    }

    /// Sessions in this process only: for `REDIS_ENABLED=false`. Other instances do not see
    /// them, and a restart ends them.
    pub fn memory(config: SessionConfig) -> Self {
        Self::with(Backend::Memory(memory::MemorySessions::default()), config)
    }

    /// On `cache`'s Redis client when it has one ([`crate::Cache::redis`]), else in process.
    pub fn for_cache(cache: &crate::Cache, config: SessionConfig) -> Self {
        match cache.redis() {
            Some(client) => Self::redis(client.clone(), config),
            None => Self::memory(config),
        }
    }

    fn with(backend: Backend, config: SessionConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                backend,
                config,
                counters: Counters::default(),
            }),
        }
    }

    /// The configuration it was built with.
    pub fn config(&self) -> &SessionConfig {
        &self.inner.config
    }

    /// Counts `result`'s failure, if it is one.
    fn counted<T>(&self, result: Result<T, SessionError>) -> Result<T, SessionError> {
        if matches!(result, Err(SessionError::Unavailable)) {
            add(&self.inner.counters.unavailable, 1);
        }
        result
    }

    /// Creates a session under a fresh id (never one a client chose) and returns both.
    ///
    /// # Errors
    /// [`SessionError::Unavailable`]; [`SessionError::InvalidData`] for data over
    /// [`MAX_DATA_BYTES`].
    pub async fn create(&self, new: NewSession) -> Result<(SessionId, Session), SessionError> {
        check_size(&new.data)?;
        let id = SessionId::generate()?;
        let record = Record {
            user_id: new.user_id,
            username: new.username,
            role: new.role,
            created_ms: 0,
            accessed_ms: 0,
            absolute_ms: 0,
            data: new.data,
        };
        let result = self.insert(&id, record, None).await;
        // Only a collision of 256 random bits makes a new session fail to be created.
        let session = self.counted(result)?.ok_or(SessionError::Unavailable)?;
        Ok((id, session))
    }

    /// Stores `record` under `id`: a new one (its times from now), or one `replacing` another
    /// (regenerate: creation and absolute expiry kept). `None` when that absolute expiry has
    /// passed.
    async fn insert(
        &self,
        id: &SessionId,
        record: Record,
        replacing: Option<&SessionId>,
    ) -> Result<Option<Session>, SessionError> {
        let config = &self.inner.config;
        let record = match &self.inner.backend {
            Backend::Redis(r) => r.insert(id, record, replacing, config).await?,
            Backend::Memory(m) => m.insert(id, record, replacing, config),
        };
        if record.is_some() {
            add(&self.inner.counters.created, 1);
        }
        Ok(record.map(|r| r.into_session(config.idle_ttl)))
    }

    /// The live session `id` names, sliding its idle timeout (one round trip on Redis);
    /// `None` when it is unknown, expired or ended.
    ///
    /// # Errors
    /// [`SessionError::Unavailable`].
    pub async fn get(&self, id: &SessionId) -> Result<Option<Session>, SessionError> {
        let config = &self.inner.config;
        let found = match &self.inner.backend {
            Backend::Redis(r) => r.touch(id, None, config).await,
            Backend::Memory(m) => Ok(m.touch(id, None, config)),
        };
        let found = self.counted(found)?;
        let counters = &self.inner.counters;
        add(
            if found.is_some() {
                &counters.hits
            } else {
                &counters.misses
            },
            1,
        );
        Ok(found.map(|r| r.into_session(config.idle_ttl)))
    }

    /// Merges `patch` into the session's data atomically (top-level fields; a `null` removes
    /// its field, as JSON merge patch does) and slides the idle timeout. Concurrent updates of
    /// different fields all survive. `None` when the session is gone: an update never
    /// recreates it.
    ///
    /// # Errors
    /// [`SessionError::Unavailable`]; [`SessionError::InvalidData`] for a patch over
    /// [`MAX_DATA_BYTES`].
    pub async fn update(
        &self,
        id: &SessionId,
        patch: Map<String, Value>,
    ) -> Result<Option<Session>, SessionError> {
        check_size(&patch)?;
        let config = &self.inner.config;
        let found = match &self.inner.backend {
            Backend::Redis(r) => r.touch(id, Some(&patch), config).await,
            Backend::Memory(m) => Ok(m.touch(id, Some(&patch), config)),
        };
        let found = self.counted(found)?;
        if found.is_some() {
            add(&self.inner.counters.updated, 1);
        }
        Ok(found.map(|r| r.into_session(config.idle_ttl)))
    }

    /// Ends the session; whether it was alive.
    ///
    /// # Errors
    /// [`SessionError::Unavailable`].
    pub async fn delete(&self, id: &SessionId) -> Result<bool, SessionError> {
        Ok(self.take(id).await?.is_some())
    }

    /// Reads and ends the session in one step.
    async fn take(&self, id: &SessionId) -> Result<Option<Record>, SessionError> {
        let taken = match &self.inner.backend {
            Backend::Redis(r) => r.take(id).await,
            Backend::Memory(m) => Ok(m.take(id)),
        };
        let taken = self.counted(taken)?;
        if taken.is_some() {
            add(&self.inner.counters.deleted, 1);
        }
        Ok(taken)
    }

    /// Moves the session to a fresh id (after a privilege change, say): the old id is dead
    /// before the new one exists, and creation time, absolute expiry and data carry over.
    /// `None` when the old session was already gone (then no new one is made).
    ///
    /// # Errors
    /// [`SessionError::Unavailable`]. If Redis fails between the two steps the user is logged
    /// out, never left with two sessions.
    pub async fn regenerate(
        &self,
        id: &SessionId,
    ) -> Result<Option<(SessionId, Session)>, SessionError> {
        let Some(record) = self.take(id).await? else {
            return Ok(None);
        };
        let new = SessionId::generate()?;
        let result = self.insert(&new, record, Some(id)).await;
        Ok(self.counted(result)?.map(|session| (new, session)))
    }

    /// The live sessions of `user_id`, oldest first (and prunes the index of ended ones).
    ///
    /// # Errors
    /// [`SessionError::Unavailable`].
    pub async fn list_user(&self, user_id: &str) -> Result<Vec<SessionSummary>, SessionError> {
        let found = match &self.inner.backend {
            Backend::Redis(r) => r.list_user(user_id).await,
            Backend::Memory(m) => Ok(m.list_user(user_id, &self.inner.config)),
        };
        let mut list: Vec<SessionSummary> = self
            .counted(found)?
            .into_iter()
            .map(|(hint, r)| SessionSummary {
                id_hint: hint,
                session: r.into_session(self.inner.config.idle_ttl),
            })
            .collect();
        list.sort_by_key(|s| s.session.created_at);
        Ok(list)
    }

    /// Ends every session of `user_id` ("log out everywhere", a password change, the user's
    /// deletion); how many were alive. A session created concurrently may survive (it was a
    /// login after this call began).
    ///
    /// # Errors
    /// [`SessionError::Unavailable`].
    pub async fn delete_user(&self, user_id: &str) -> Result<u64, SessionError> {
        let ended = match &self.inner.backend {
            Backend::Redis(r) => r.delete_user(user_id).await,
            Backend::Memory(m) => Ok(m.delete_user(user_id, &self.inner.config)),
        };
        let ended = self.counted(ended)?;
        add(&self.inner.counters.deleted, ended);
        Ok(ended)
    }

    /// Ends every session of every user (`/cache/clear` of sessions); how many were alive.
    /// On Redis a SCAN of the session keys on every master: administration, not a hot path.
    ///
    /// # Errors
    /// [`SessionError::Unavailable`].
    pub async fn clear(&self) -> Result<u64, SessionError> {
        let ended = match &self.inner.backend {
            Backend::Redis(r) => r.clear().await,
            Backend::Memory(m) => Ok(m.clear()),
        };
        let ended = self.counted(ended)?;
        add(&self.inner.counters.deleted, ended);
        Ok(ended)
    }

    /// Live sessions and distinct users now (on Redis a SCAN of the per-user indexes).
    ///
    /// # Errors
    /// [`SessionError::Unavailable`].
    pub async fn count(&self) -> Result<SessionCount, SessionError> {
        let found = match &self.inner.backend {
            Backend::Redis(r) => r.count().await,
            Backend::Memory(m) => Ok(m.count(&self.inner.config)),
        };
        self.counted(found)
    }

    /// This store's counters (no I/O).
    pub fn stats(&self) -> SessionStats {
        let c = &self.inner.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        SessionStats {
            backend: match self.inner.backend {
                Backend::Redis(_) => "redis",
                Backend::Memory(_) => "memory",
            },
            created: get(&c.created),
            hits: get(&c.hits),
            misses: get(&c.misses),
            updated: get(&c.updated),
            deleted: get(&c.deleted),
            unavailable: get(&c.unavailable),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_64_hex_and_parse_back() {
        let id = SessionId::generate().unwrap();
        assert_eq!(id.expose().len(), 64);
        assert_eq!(SessionId::parse(id.expose()), Some(id.clone()));
        assert!(!format!("{id:?}").contains(id.expose()));
        for bad in [
            "",
            "abc",
            &id.expose().to_uppercase(),
            &format!("{}g", &id.expose()[1..]),
        ] {
            assert!(SessionId::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn config_names_the_variable() {
        let err = SessionConfig::from_lookup(|n| (n == "SESSION_TTL").then(|| "soon".into()));
        assert!(err.unwrap_err().to_string().contains("SESSION_TTL"));
        let err = SessionConfig::from_lookup(|n| match n {
            "SESSION_TTL" => Some("100".into()),
            "SESSION_ABSOLUTE_TTL" => Some("50".into()),
            _ => None,
        });
        assert!(
            err.unwrap_err()
                .to_string()
                .contains("SESSION_ABSOLUTE_TTL")
        );
    }
}
