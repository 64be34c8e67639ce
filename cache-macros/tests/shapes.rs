//! What is cached, by return type: `Ok` only, `None` only with `cache_none`. The return type's
//! shape is found by the type system, so aliases count as what they stand for.

use std::sync::atomic::{AtomicU32, Ordering};

use cache_runtime::{Cache, cached};

async fn cache() -> Cache {
    Cache::builder().build().await.unwrap()
}

/// Counts body executions, per test.
#[derive(Default)]
struct Calls(AtomicU32);

impl Calls {
    fn next(&self) -> u32 {
        self.0.fetch_add(1, Ordering::SeqCst) + 1
    }
    fn get(&self) -> u32 {
        self.0.load(Ordering::SeqCst)
    }
}

#[cached(key = "plain:<id>", cache = cache, skip(calls))]
async fn plain(cache: &Cache, calls: &Calls, id: u8) -> (u8, u32) {
    (id, calls.next())
}

#[tokio::test]
async fn plain_values_are_cached() {
    let (cache, calls) = (cache().await, Calls::default());
    assert_eq!(plain(&cache, &calls, 1).await, (1, 1));
    assert_eq!(plain(&cache, &calls, 1).await, (1, 1));
    assert_eq!(calls.get(), 1);
}

#[cached(key = "results:<ok>", cache = cache, skip(calls))]
async fn result(cache: &Cache, calls: &Calls, ok: bool) -> Result<u32, String> {
    let n = calls.next();
    if ok {
        Ok(n)
    } else {
        Err(format!("failure {n}"))
    }
}

#[tokio::test]
async fn only_ok_is_cached() {
    let (cache, calls) = (cache().await, Calls::default());
    assert_eq!(
        result(&cache, &calls, false).await,
        Err("failure 1".to_owned())
    );
    assert_eq!(
        result(&cache, &calls, false).await,
        Err("failure 2".to_owned())
    );
    assert_eq!(result(&cache, &calls, true).await, Ok(3));
    assert_eq!(result(&cache, &calls, true).await, Ok(3));
    assert_eq!(cache.get::<u32>("results:true").await, Some(3));
    assert_eq!(cache.get::<u32>("results:false").await, None);
}

#[cached(key = "options:<some>", cache = cache, skip(calls))]
async fn option(cache: &Cache, calls: &Calls, some: bool) -> Option<u32> {
    let n = calls.next();
    some.then_some(n)
}

#[cached(key = "negative:<some>", cache = cache, skip(calls), cache_none = true)]
async fn option_cache_none(cache: &Cache, calls: &Calls, some: bool) -> Option<u32> {
    let n = calls.next();
    some.then_some(n)
}

#[tokio::test]
async fn none_is_cached_only_with_cache_none() {
    let (cache, calls) = (cache().await, Calls::default());
    assert_eq!(option(&cache, &calls, false).await, None);
    assert_eq!(option(&cache, &calls, false).await, None);
    assert_eq!(calls.get(), 2);
    assert_eq!(option(&cache, &calls, true).await, Some(3));
    assert_eq!(option(&cache, &calls, true).await, Some(3));

    assert_eq!(option_cache_none(&cache, &calls, false).await, None);
    assert_eq!(option_cache_none(&cache, &calls, false).await, None);
    assert_eq!(calls.get(), 4);
    assert_eq!(cache.get::<Option<u32>>("negative:false").await, Some(None));
}

#[cached(key = "rows:<id>", cache = cache, skip(calls))]
async fn row(cache: &Cache, calls: &Calls, id: i32) -> Result<Option<i32>, String> {
    calls.next();
    match id {
        0 => Err("database down".to_owned()),
        1 => Ok(None),
        _ => Ok(Some(id)),
    }
}

#[cached(key = "rows:<id>:negative", cache = cache, skip(calls), cache_none)]
async fn row_cache_none(cache: &Cache, calls: &Calls, id: i32) -> Result<Option<i32>, String> {
    calls.next();
    Ok((id > 1).then_some(id))
}

#[tokio::test]
async fn result_option_caches_some_and_none_only_when_asked() {
    let (cache, calls) = (cache().await, Calls::default());
    for _ in 0..2 {
        assert!(row(&cache, &calls, 0).await.is_err());
        assert_eq!(row(&cache, &calls, 1).await, Ok(None));
        assert_eq!(row(&cache, &calls, 2).await, Ok(Some(2)));
    }
    // Err and Ok(None) ran twice, Ok(Some) once.
    assert_eq!(calls.get(), 5);
    assert_eq!(cache.get::<Option<i32>>("rows:2").await, Some(Some(2)));

    row_cache_none(&cache, &calls, 1).await.unwrap();
    row_cache_none(&cache, &calls, 1).await.unwrap();
    assert_eq!(calls.get(), 6);
}

#[derive(Debug, PartialEq)]
struct AppError;

impl From<std::num::ParseIntError> for AppError {
    fn from(_: std::num::ParseIntError) -> Self {
        AppError
    }
}

type AppResult<T> = Result<T, AppError>;

#[cached(key = "parsed:<text>", cache = cache, skip(calls), result = true)]
async fn parse(cache: &Cache, calls: &Calls, text: &str) -> AppResult<Option<u64>> {
    calls.next();
    if text.is_empty() {
        return Ok(None);
    }
    Ok(Some(text.parse::<u64>()?))
}

#[tokio::test]
async fn result_aliases_with_result_true_and_question_mark() {
    let (cache, calls) = (cache().await, Calls::default());
    assert_eq!(parse(&cache, &calls, "x").await, Err(AppError));
    assert_eq!(parse(&cache, &calls, "x").await, Err(AppError));
    assert_eq!(parse(&cache, &calls, "").await, Ok(None));
    assert_eq!(parse(&cache, &calls, "7").await, Ok(Some(7)));
    assert_eq!(parse(&cache, &calls, "7").await, Ok(Some(7)));
    assert_eq!(calls.get(), 4);
}

/// A JSON API's error: serializable, so a `Result` alias would be cacheable as a whole.
#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
enum ApiError {
    NotFound,
}

type ApiResult<T> = Result<T, ApiError>;

#[cached(key = "api:<ok>", cache = cache, skip(calls))]
async fn api(cache: &Cache, calls: &Calls, ok: bool) -> ApiResult<u32> {
    let n = calls.next();
    if ok { Ok(n) } else { Err(ApiError::NotFound) }
}

/// R16: an `Err` of a `Result` alias is not cached, although it could be serialized.
#[tokio::test]
async fn r16_errors_of_a_result_alias_are_not_cached() {
    let (cache, calls) = (cache().await, Calls::default());
    assert_eq!(api(&cache, &calls, false).await, Err(ApiError::NotFound));
    assert_eq!(api(&cache, &calls, false).await, Err(ApiError::NotFound));
    assert_eq!(calls.get(), 2);
    assert_eq!(cache.get::<serde_json::Value>("api:false").await, None);
    assert_eq!(api(&cache, &calls, true).await, Ok(3));
    assert_eq!(api(&cache, &calls, true).await, Ok(3));
    assert_eq!(cache.get::<u32>("api:true").await, Some(3));
}

type Maybe<T> = Option<T>;

#[cached(key = "maybe:<some>", cache = cache, skip(calls))]
async fn maybe(cache: &Cache, calls: &Calls, some: bool) -> Maybe<u32> {
    let n = calls.next();
    some.then_some(n)
}

#[cached(key = "maybe:<some>:negative", cache = cache, skip(calls), cache_none)]
async fn maybe_cache_none(cache: &Cache, calls: &Calls, some: bool) -> Maybe<u32> {
    let n = calls.next();
    some.then_some(n)
}

/// R16: `None` of an `Option` alias is cached only with `cache_none`, which the alias allows.
#[tokio::test]
async fn r16_none_of_an_option_alias_is_cached_only_with_cache_none() {
    let (cache, calls) = (cache().await, Calls::default());
    assert_eq!(maybe(&cache, &calls, false).await, None);
    assert_eq!(maybe(&cache, &calls, false).await, None);
    assert_eq!(calls.get(), 2);
    assert_eq!(cache.get::<serde_json::Value>("maybe:false").await, None);

    assert_eq!(maybe_cache_none(&cache, &calls, false).await, None);
    assert_eq!(maybe_cache_none(&cache, &calls, false).await, None);
    assert_eq!(calls.get(), 3);
    assert_eq!(
        cache.get::<Option<u32>>("maybe:false:negative").await,
        Some(None)
    );
}

#[cached(key = "nested:<id>", cache = cache, skip(calls), cache_none)]
async fn nested(cache: &Cache, calls: &Calls, id: u32) -> ApiResult<Maybe<u32>> {
    calls.next();
    match id {
        0 => Err(ApiError::NotFound),
        1 => Ok(None),
        _ => Ok(Some(id)),
    }
}

#[tokio::test]
async fn r16_aliases_nest() {
    let (cache, calls) = (cache().await, Calls::default());
    for _ in 0..2 {
        assert_eq!(nested(&cache, &calls, 0).await, Err(ApiError::NotFound));
        assert_eq!(nested(&cache, &calls, 1).await, Ok(None));
        assert_eq!(nested(&cache, &calls, 2).await, Ok(Some(2)));
    }
    // Err twice, Ok(None) (cache_none) and Ok(Some) once each.
    assert_eq!(calls.get(), 4);
}

#[cached(key = "whole:<ok>", cache = cache, skip(calls), result = false)]
async fn whole(cache: &Cache, calls: &Calls, ok: bool) -> Result<u32, String> {
    let n = calls.next();
    if ok {
        Ok(n)
    } else {
        Err(format!("failure {n}"))
    }
}

#[tokio::test]
async fn result_false_caches_errors_too() {
    let (cache, calls) = (cache().await, Calls::default());
    assert_eq!(
        whole(&cache, &calls, false).await,
        Err("failure 1".to_owned())
    );
    assert_eq!(
        whole(&cache, &calls, false).await,
        Err("failure 1".to_owned())
    );
    assert_eq!(calls.get(), 1);
}
