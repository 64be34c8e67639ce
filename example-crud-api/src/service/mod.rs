//! The service layer: every database access of the API, cached declaratively.
//!
//! Reads carry `#[cached]`, writes carry `#[invalidates]`; handlers call these functions and
//! never touch the cache. The user reads return their result as [`JsonText`] (serialized when
//! loaded, so a hit is answered without decoding and re-encoding rows); an entry holds the same
//! JSON either way. The keys (with `CACHE_PREFIX` empty):
//!
//! | key | written by | invalidated by |
//! |---|---|---|
//! | `users:<id>` | [`users::get_user`] | updating or deleting that user |
//! | `users:list:<hash>` | [`users::list_users`] | every user write (`users:list:*`) |
//! | `users:filter:<hash>` | [`users::filter_users`] | every user write (`users:filter:*`) |
//! | `users:filter:paginated:<hash>` | [`users::filter_users_paginated`] | every user write (`users:filter:*`) |
//! | `users:<user_id>:tasks` | [`tasks::list_tasks`] | writes of that user's tasks; deleting the user |
//! | `tasks:<id>` | [`tasks::get_task`] | writes of that task; deleting a user (`tasks:*`) |
//!
//! API.md's source documents invalidate `users:*` on every user write. That is correct but
//! flushes every cached user on each write, so under a steady write rate nothing stays cached;
//! the patterns above invalidate exactly what a write can change.

use chrono::{SubsecRound, Utc};
use sea_orm::DbErr;
use sea_orm::prelude::DateTimeUtc;
use serde::{Deserialize, Serialize};

use crate::JsonText;
use crate::error::Error;

pub mod tasks;
pub mod users;

/// TTL (seconds) of single-row entries (`users:<id>`, `tasks:<id>`).
pub const ROW_TTL: u64 = 300;
/// TTL (seconds) of lists and filter results, which every write to their table invalidates.
pub const LIST_TTL: u64 = 60;

/// One page of a filtered list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Page<T> {
    /// The rows of this page.
    pub items: Vec<T>,
    /// How many rows match in all.
    pub total: u64,
    /// Rows skipped before this page.
    pub skip: u64,
    /// Page size.
    pub limit: u64,
}

/// `value` as [`JsonText`], what the cached reads return: the cache stores that text and the
/// handlers answer with it as it is.
pub(crate) fn json<T: Serialize>(value: &T) -> Result<JsonText<T>, DbErr> {
    JsonText::encode(value).map_err(|e| DbErr::Json(e.to_string()))
}

/// The current time at the precision every supported database stores (microseconds), so that
/// the row a write returns equals the row a later read returns.
pub(crate) fn now() -> DateTimeUtc {
    Utc::now().trunc_subsecs(6)
}

/// Deserializes a field that may be absent (outer `None`), `null` (`Some(None)`) or a value.
pub(crate) fn nullable<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// Collects validation problems, so that one 422 names every invalid field.
#[derive(Debug, Default)]
pub(crate) struct Problems(Vec<String>);

impl Problems {
    /// The value if `result` is `Ok`; otherwise records the problem.
    pub(crate) fn check<T>(&mut self, result: Result<T, String>) -> Option<T> {
        result.map_err(|problem| self.0.push(problem)).ok()
    }

    /// The 422 listing every recorded problem.
    pub(crate) fn into_error(self) -> Error {
        Error::Invalid(self.0.join("; "))
    }
}
