//! Passwords and logins. Hashes are argon2id (PHC strings); hashing and verifying run on the
//! blocking pool, never on the async workers. Credentials are always read from the database,
//! never from a cache.

use std::sync::LazyLock;

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter};

use crate::entities::user;
use crate::error::Error;

/// Checks a password's length (8 to 128 characters); the message names `password`.
pub(crate) fn valid_password(password: &str) -> Result<(), String> {
    match password.chars().count() {
        8..=128 => Ok(()),
        n => Err(format!("`password` must be 8 to 128 characters, got {n}")),
    }
}

/// Argon2id (version 19) with the crate's default parameters.
fn argon2() -> Argon2<'static> {
    Argon2::default()
}

/// Hashes `password` with a fresh 16-byte salt from the OS CSPRNG (blocking: tens of
/// milliseconds of CPU).
fn hash_now(password: &str) -> Result<String, Error> {
    let hash: PasswordHash = argon2()
        .hash_password(password.as_bytes())
        .map_err(|e| Error::Internal(format!("password hashing: {e}")))?;
    Ok(hash.to_string())
}

/// An argon2id hash of `password` (a PHC string, `$argon2id$v=19$...`) with a fresh random
/// salt, so that two hashes of one password differ. Computed on the blocking pool, never on
/// an async worker.
///
/// # Errors
/// [`Error::Internal`] (500) without an OS random source, or when the blocking pool is
/// shutting down.
pub async fn hash_password(password: String) -> Result<String, Error> {
    tokio::task::spawn_blocking(move || hash_now(&password))
        .await
        .map_err(|e| Error::Internal(format!("password hashing: {e}")))?
}

/// A hash that [`verify_password`] checks when there is no usable hash (unknown email, an
/// account without a password), so that those take as long as a wrong password: no account
/// enumeration by timing. Computed once, on first use, with the same parameters as every
/// other hash. Its password is never accepted either way (see [`verify_password`]).
static DUMMY_HASH: LazyLock<Option<PasswordHash>> = LazyLock::new(|| {
    let hash = hash_now("a dummy password nobody logs in with").ok()?;
    PasswordHash::new(&hash).ok()
});

/// Whether `password` matches `hash`, on the blocking pool.
///
/// `None` (an unknown user, or one without a password) and a hash that does not parse are
/// never a match, but still cost one argon2 computation, against a dummy hash: every failed
/// login takes the same time.
pub async fn verify_password(hash: Option<String>, password: String) -> bool {
    tokio::task::spawn_blocking(move || {
        let parsed = hash.as_deref().and_then(|h| PasswordHash::new(h).ok());
        let known = parsed.is_some();
        let Some(target) = parsed.as_ref().or(DUMMY_HASH.as_ref()) else {
            // No OS random source for the dummy hash, and nothing else to check.
            return false;
        };
        let matches = argon2()
            .verify_password(password.as_bytes(), target)
            .is_ok();
        known && matches
    })
    .await
    .unwrap_or(false)
}

/// The user with this email and password, if it may log in; `None` otherwise.
///
/// `None` covers an unknown email, a wrong password, an account without a password and an
/// inactive account (`is_active: false`: its password is checked, then refused all the same),
/// so that the caller answers all of them with one message, and all of them take one argon2
/// verification (see [`verify_password`]).
///
/// The row is read from the database, never from the cache: credentials, the active flag and
/// the role must be current, and the password hash is not even in the cached JSON.
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
