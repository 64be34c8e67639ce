//! The in-process store keeps `Clone` values as themselves (a hit clones, never decodes) and
//! other values encoded (a hit decodes); the expansion picks by the value type.

use std::sync::atomic::{AtomicU32, Ordering};

use cache_runtime::{Cache, cached};
use serde::{Deserialize, Deserializer, Serialize};

/// Counts decodes of [`Row`] and [`Unclonable`]; one per type, tests run concurrently.
static ROW_DECODES: AtomicU32 = AtomicU32::new(0);
static UNCLONABLE_DECODES: AtomicU32 = AtomicU32::new(0);

#[derive(Debug, Clone, PartialEq, Serialize)]
struct Row(u32);

impl<'de> Deserialize<'de> for Row {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        ROW_DECODES.fetch_add(1, Ordering::SeqCst);
        u32::deserialize(d).map(Row)
    }
}

#[derive(Debug, PartialEq, Serialize)]
struct Unclonable(u32);

impl<'de> Deserialize<'de> for Unclonable {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        UNCLONABLE_DECODES.fetch_add(1, Ordering::SeqCst);
        u32::deserialize(d).map(Unclonable)
    }
}

#[cached(key = "rows:<id>", cache = cache)]
async fn row(cache: &Cache, id: u32) -> Result<Option<Row>, String> {
    Ok(Some(Row(id)))
}

#[cached(key = "unclonables:<id>", cache = cache)]
async fn unclonable(cache: &Cache, id: u32) -> Unclonable {
    Unclonable(id)
}

async fn memory() -> Cache {
    Cache::builder().build().await.unwrap()
}

#[tokio::test]
async fn clone_values_are_cloned_out() {
    let cache = memory().await;
    for _ in 0..3 {
        assert_eq!(row(&cache, 7).await, Ok(Some(Row(7))));
    }
    assert_eq!(cache.stats().totals.hits, 2);
    assert_eq!(ROW_DECODES.load(Ordering::SeqCst), 0);
    // An invalidated kept value is stale like an encoded one.
    cache.invalidate("rows:*").await.unwrap();
    assert_eq!(row(&cache, 7).await, Ok(Some(Row(7))));
    assert_eq!(cache.stats().totals.loads, 2);
    // Readers that only know the type through serde still find the encoding.
    assert_eq!(cache.get::<Option<Row>>("rows:7").await, Some(Some(Row(7))));
    assert_eq!(ROW_DECODES.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn other_values_are_decoded() {
    let cache = memory().await;
    for _ in 0..3 {
        assert_eq!(unclonable(&cache, 7).await, Unclonable(7));
    }
    assert_eq!(cache.stats().totals.hits, 2);
    assert_eq!(UNCLONABLE_DECODES.load(Ordering::SeqCst), 2);
}
