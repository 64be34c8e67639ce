//! Passwords and logins. Hashes are argon2id (PHC strings); hashing and verifying run on the
//! blocking pool, never on the async workers. Credentials are always read from the database,
//! never from a cache.

use std::sync::LazyLock;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter};

use crate::entities::user;
use crate::error::Error;

/// Checks a password's length (8 to 128 characters).
pub(crate) fn valid_password(password: &str) -> Result<(), String> {
    match password.chars().count() {
        8..=128 => Ok(()),
        n => Err(format!("`password` must be 8 to 128 characters, got {n}")),
    }
}

fn hash_now(password: &str) -> Result<String, Error> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| Error::Internal(format!("no OS random source: {e}")))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| Error::Internal(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| Error::Internal(format!("password hashing: {e}")))
}

/// An argon2id hash of `password` with a fresh random salt, computed on the blocking pool.
///
/// # Errors
/// No OS random source; a blocking pool that is shutting down.
pub async fn hash_password(password: String) -> Result<String, Error> {
    tokio::task::spawn_blocking(move || hash_now(&password))
        .await
        .map_err(|e| Error::Internal(format!("password hashing: {e}")))?
}

/// A hash no password matches, verified for unknown emails so that they take as long as
/// wrong passwords (no account enumeration by timing).
static DUMMY_HASH: LazyLock<Option<String>> = LazyLock::new(|| {
    let mut random = [0u8; 32];
    getrandom::fill(&mut random).ok()?;
    hash_now(&format!("{random:?}")).ok()
});

/// Whether `password` matches `hash` (`None`: an unknown user, checked against a dummy hash
/// all the same), on the blocking pool.
pub async fn verify_password(hash: Option<String>, password: String) -> bool {
    tokio::task::spawn_blocking(move || {
        let known = hash.is_some();
        let hash = hash.or_else(|| DUMMY_HASH.clone()).unwrap_or_default();
        let Ok(parsed) = PasswordHash::new(&hash) else {
            return false;
        };
        let matches = Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok();
        known && matches
    })
    .await
    .unwrap_or(false)
}

/// The active user with this email and password; `None` for an unknown email, a wrong
/// password, an account without a password or an inactive one (the caller answers all of
/// them with one message).
///
/// # Errors
/// Database errors.
pub async fn authenticate(
    db: &DatabaseConnection,
    email: &str,
    password: String,
) -> Result<Option<user::Model>, Error> {
    let found = user::Entity::find()
        .filter(user::Column::Email.eq(email.trim()))
        .one(db)
        .await?;
    let hash = found.as_ref().and_then(|u| u.password_hash.clone());
    let verified = verify_password(hash, password).await;
    Ok(found.filter(|u| verified && u.is_active))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_are_salted_argon2id_and_verify() {
        let a = hash_password("correct horse".into()).await.unwrap();
        let b = hash_password("correct horse".into()).await.unwrap();
        assert!(a.starts_with("$argon2id$"), "{a}");
        assert_ne!(a, b, "no salt");
        assert!(verify_password(Some(a.clone()), "correct horse".into()).await);
        assert!(!verify_password(Some(a), "correct horsf".into()).await);
        assert!(!verify_password(None, "correct horse".into()).await);
        assert!(!verify_password(Some("not a hash".into()), "x".into()).await);
    }

    #[test]
    fn password_length() {
        assert!(
            valid_password("1234567")
                .unwrap_err()
                .contains("`password`")
        );
        assert!(valid_password("12345678").is_ok());
        assert!(valid_password(&"x".repeat(129)).is_err());
    }
}
