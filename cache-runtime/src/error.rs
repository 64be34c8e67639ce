//! The public error types. Nothing in the cache path returns them to callers of cached
//! functions: they come from configuration, from building keys by hand, and from the
//! administrative calls that take a pattern.

/// A malformed configuration value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A variable is set to a value that cannot be used. Secrets in `value` are redacted.
    #[error("invalid value `{value}` for `{name}`: {reason}")]
    Invalid {
        /// The variable's name, e.g. `REDIS_PORT`.
        name: String,
        /// The value that was given (passwords in URLs replaced by `***`).
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

/// Why a key or a pattern could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// An argument could not be serialized.
    #[error("argument `{0}` cannot be serialized: {1}")]
    Serialize(&'static str, String),
    /// The rendered key exceeds [`crate::MAX_KEY_LEN`].
    #[error("key longer than {} bytes", crate::MAX_KEY_LEN)]
    TooLong,
    /// The key is empty, has an empty segment, or uses the reserved marker namespace.
    #[error("malformed key `{0}`")]
    Malformed(String),
}
