//! Connecting to the database and migrating its schema.

use std::path::Path;
use std::time::Duration;

use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{ConnectOptions, Database, DatabaseConnection, DbErr};

/// The database used when `DATABASE_URL` is not set: a SQLite file under `data/`.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://data/app.db?mode=rwc";

/// How long a SQLite statement waits for another connection's write lock before failing with
/// "database is locked".
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Connects to `url` (`sqlite://…` or `postgres://…`) and applies pending migrations. For a
/// SQLite file, creates its directory first.
///
/// SQLite is opened in WAL mode with `synchronous=NORMAL` and a 5 s busy timeout: readers no
/// longer wait for a writer (nor block its commit), a commit no longer syncs the file twice,
/// and a write that meets another one waits for it instead of failing at once. `NORMAL`
/// keeps the database consistent across a crash; the last commits before a power loss may be
/// lost, which a cache-fronted demo API accepts.
///
/// # Errors
/// An unusable URL, an unreachable database, or a failed migration.
pub async fn connect_db(url: &str) -> Result<DatabaseConnection, DbErr> {
    if let Some(dir) = sqlite_dir(url) {
        std::fs::create_dir_all(dir)
            .map_err(|e| DbErr::Custom(format!("cannot create `{}`: {e}", dir.display())))?;
    }
    let mut options = ConnectOptions::new(url);
    // Fail fast when the database is down, instead of sqlx' 30 s default; and do not log every
    // statement at `info` (sqlx' default).
    options
        .acquire_timeout(Duration::from_secs(5))
        .sqlx_logging(false)
        .map_sqlx_sqlite_opts(|sqlite| {
            sqlite
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(SQLITE_BUSY_TIMEOUT)
        });
    let db = Database::connect(options).await?;
    crate::migration::run(&db).await?;
    Ok(db)
}

/// The directory of a SQLite database file, if `url` names one in a directory.
fn sqlite_dir(url: &str) -> Option<&Path> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or_default();
    if path.is_empty() || path == ":memory:" {
        return None;
    }
    Path::new(path)
        .parent()
        .filter(|dir| !dir.as_os_str().is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_sqlite_directories() {
        assert_eq!(sqlite_dir(DEFAULT_DATABASE_URL), Some(Path::new("data")));
        assert_eq!(
            sqlite_dir("sqlite:///tmp/x/app.db"),
            Some(Path::new("/tmp/x"))
        );
        assert_eq!(sqlite_dir("sqlite::memory:"), None);
        assert_eq!(sqlite_dir("sqlite://app.db"), None);
        assert_eq!(sqlite_dir("postgres://localhost/app"), None);
    }
}
