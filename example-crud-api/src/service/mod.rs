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
//! The source documents of this API invalidate `users:*` on every user write. That is correct
//! but flushes every cached user on each write, so under a steady write rate nothing stays
//! cached; the patterns above invalidate exactly what a write can change.
//!
//! # Deep pages are not cached
//!
//! Lists and filter results with a `skip` above [`MAX_CACHED_SKIP`] (ten pages of the largest
//! size) are read from the database without the cache: the handlers call the `*_uncached`
//! variant of the read (e.g. [`users::list_users_uncached`]), which the cached function also
//! uses as its loader. The cache key of a list or a filter result hashes every argument, so
//! each distinct `skip` (and each distinct filter body) is a new entry of up to 1,000 rows.
//! Clients choose those values: without a bound, one client walking `skip=10001, 10002, ...`
//! fills Redis and makes the in-process store evict the entries that are read again (single
//! rows, first pages). Deep pages are rarely read twice within a TTL, so caching them buys
//! nothing; shallow pages are where the repeats are, and stay cached.

use chrono::{SubsecRound, Utc};
use sea_orm::DbErr;
use sea_orm::prelude::DateTimeUtc;
use serde::de::Error as _;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::JsonText;
use crate::error::Error;
use crate::filter::MAX_LIMIT;

pub mod accounts;
pub mod imports;
pub mod tasks;
pub mod users;

/// TTL (seconds) of single-row entries (`users:<id>`, `tasks:<id>`).
pub const ROW_TTL: u64 = 300;
/// TTL (seconds) of lists and filter results, which every write to their table invalidates.
pub const LIST_TTL: u64 = 60;
/// Deepest `skip` whose page is cached: ten pages of [`MAX_LIMIT`] rows. Deeper pages are read
/// uncached (see the module's documentation).
pub const MAX_CACHED_SKIP: u64 = 10 * MAX_LIMIT;

/// Whether a page starting after `skip` rows goes through the cache.
pub fn is_cached_page(skip: u64) -> bool {
    skip <= MAX_CACHED_SKIP
}

/// One page of a filtered list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
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

/// Deserializes a field that may be absent (`None`, with `#[serde(default)]`) or a value, but
/// not `null`: for a field that cannot be null, `null` is an error (422), not "unchanged".
pub(crate) fn non_null<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    match Option::<T>::deserialize(deserializer)? {
        Some(value) => Ok(Some(value)),
        None => Err(D::Error::custom(
            "must not be null (leave the field out to keep its value)",
        )),
    }
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
