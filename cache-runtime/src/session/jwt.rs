//! Bearer tokens: HS256 JWTs through `jsonwebtoken`, for clients that keep no cookie.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use super::{SessionError, hex};
use crate::config::bounded;
use crate::error::ConfigError;

/// Shortest `JWT_SECRET` accepted, in bytes: HS256's key should be at least its hash's size.
pub const MIN_SECRET_BYTES: usize = 32;

/// What a token says. `sub` is the user id; `exp` and `iat` are Unix seconds; `jti` is 128
/// random bits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Claims {
    /// The user id.
    pub sub: String,
    /// The user's name when the token was issued.
    #[serde(default)]
    pub name: String,
    /// The user's role when the token was issued.
    pub role: String,
    /// Issued at (Unix seconds).
    pub iat: u64,
    /// Expires at (Unix seconds).
    pub exp: u64,
    /// The token's unique id.
    pub jti: String,
}

/// Issues and verifies HS256 tokens with one secret.
///
/// ```
/// use std::time::Duration;
/// use cache_runtime::session::Jwt;
///
/// let jwt = Jwt::hs256(b"a secret of at least thirty-two bytes", Duration::from_secs(900))?;
/// let (token, claims) = jwt.issue("42", "ada", "admin")?;
/// assert_eq!(jwt.verify(&token), Some(claims));
/// assert_eq!(jwt.verify(&format!("{token}x")), None); // a forged signature
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Jwt {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl: Duration,
}

impl std::fmt::Debug for Jwt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jwt")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl Jwt {
    /// Tokens signed with `secret`, valid for `ttl`.
    ///
    /// # Errors
    /// A secret shorter than [`MIN_SECRET_BYTES`] (named `JWT_SECRET`, its value not shown).
    pub fn hs256(secret: &[u8], ttl: Duration) -> Result<Self, ConfigError> {
        if secret.len() < MIN_SECRET_BYTES {
            return Err(ConfigError::invalid(
                "JWT_SECRET",
                "***",
                format!("expected at least {MIN_SECRET_BYTES} bytes"),
            ));
        }
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 5;
        validation.set_required_spec_claims(&["exp", "sub"]);
        let unusable = |e: jsonwebtoken::errors::Error| {
            ConfigError::invalid(
                "JWT_SECRET",
                "***",
                format!("unusable as an HS256 key: {e}"),
            )
        };
        Ok(Self {
            encoding: EncodingKey::from_secret(secret).map_err(unusable)?,
            decoding: DecodingKey::from_secret(secret).map_err(unusable)?,
            validation,
            ttl,
        })
    }

    /// From `JWT_SECRET` and `JWT_TTL` (seconds, default 3600); `None` without a secret.
    ///
    /// # Errors
    /// As [`Jwt::hs256`]; a malformed `JWT_TTL`.
    pub fn from_lookup(var: impl Fn(&str) -> Option<String>) -> Result<Option<Self>, ConfigError> {
        let Some(secret) = var("JWT_SECRET").filter(|s| !s.is_empty()) else {
            return Ok(None);
        };
        let ttl = match var("JWT_TTL").map(|v| v.trim().to_owned()) {
            Some(v) if !v.is_empty() => bounded("JWT_TTL", &v, 30 * 86_400)?,
            _ => 3600,
        };
        Self::hs256(secret.as_bytes(), Duration::from_secs(ttl)).map(Some)
    }

    /// How long the tokens it issues are valid.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// A token for the user, and its claims.
    ///
    /// # Errors
    /// The OS has no random source for the token id.
    pub fn issue(
        &self,
        user_id: &str,
        username: &str,
        role: &str,
    ) -> Result<(String, Claims), SessionError> {
        let mut jti = [0u8; 16];
        getrandom::fill(&mut jti).map_err(|_| SessionError::Unavailable)?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let claims = Claims {
            sub: user_id.to_owned(),
            name: username.to_owned(),
            role: role.to_owned(),
            iat: now,
            exp: now.saturating_add(self.ttl.as_secs()),
            jti: hex(&jti),
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| SessionError::InvalidData(e.to_string()))?;
        Ok((token, claims))
    }

    /// The claims of a token this secret signed, unexpired and HS256 (no other algorithm, no
    /// `none`); `None` otherwise.
    pub fn verify(&self, token: &str) -> Option<Claims> {
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .ok()
            .map(|data| data.claims)
    }
}
