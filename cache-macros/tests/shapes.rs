//! What is cached, by return type: `Ok` only, `None` only with `cache_none`.

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
