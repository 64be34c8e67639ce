//! Key forms: placeholders, fields, hashed arguments, skipped and connection arguments,
//! methods and generic functions.

use std::collections::HashMap;

use cache_runtime::{Cache, KeyBuilder, cached};
use serde::Serialize;

async fn cache() -> Cache {
    Cache::builder().build().await.unwrap()
}

fn loads(cache: &Cache) -> u64 {
    cache.stats().totals.loads
}

#[cached(key = "users:<id>", cache = cache)]
async fn get_user(cache: &Cache, id: i32) -> Option<String> {
    Some(format!("user {id}"))
}

#[tokio::test]
async fn placeholders_render_into_the_key() {
    let cache = cache().await;
    assert_eq!(get_user(&cache, 42).await.as_deref(), Some("user 42"));
    assert_eq!(
        cache.get::<Option<String>>("users:42").await,
        Some(Some("user 42".to_owned()))
    );
    assert_eq!(get_user(&cache, 42).await.as_deref(), Some("user 42"));
    assert_eq!(loads(&cache), 1);
}

#[cached(key = "names:<name>", cache = cache)]
async fn greet(cache: &Cache, name: &str) -> String {
    format!("hello {name}")
}

#[tokio::test]
async fn placeholder_values_are_escaped() {
    let cache = cache().await;
    greet(&cache, "a:b*").await;
    assert_eq!(
        cache.get::<String>("names:a%3Ab%2A").await.as_deref(),
        Some("hello a:b*")
    );
}

#[derive(Serialize)]
struct Page {
    owner: Owner,
    number: u32,
}

#[derive(Serialize)]
struct Owner {
    id: i32,
}

/// The fields cover the whole of `Page`: `skip(page)` says so.
#[cached(key = "owners:<page.owner.id>:pages:<page.number>", skip(page), cache = cache)]
async fn page(cache: &Cache, page: &Page) -> Vec<u32> {
    vec![page.number]
}

#[tokio::test]
async fn placeholders_read_fields() {
    let cache = cache().await;
    let p = Page {
        owner: Owner { id: 7 },
        number: 3,
    };
    page(&cache, &p).await;
    assert_eq!(
        cache.get::<Vec<u32>>("owners:7:pages:3").await,
        Some(vec![3])
    );
}

#[cached(key = "users:list", cache = cache)]
async fn list_users(cache: &Cache, skip: u64, limit: u64) -> Vec<u64> {
    (skip..skip + limit).collect()
}

#[tokio::test]
async fn other_arguments_are_hashed_in_parameter_order() {
    let cache = cache().await;
    list_users(&cache, 0, 10).await;

    let mut key = KeyBuilder::new();
    key.literal("users:list")
        .hash("skip", &0u64)
        .hash("limit", &10u64);
    let key = key.finish().unwrap();
    assert!(key.starts_with("users:list:"), "{key}");
    assert_eq!(cache.get::<Vec<u64>>(&key).await.map(|v| v.len()), Some(10));
}

#[tokio::test]
async fn hashed_keys_agree_for_equal_arguments_and_differ_otherwise() {
    let cache = cache().await;
    list_users(&cache, 0, 10).await;
    list_users(&cache, 0, 10).await;
    assert_eq!(loads(&cache), 1);
    list_users(&cache, 10, 0).await;
    list_users(&cache, 0, 11).await;
    assert_eq!(loads(&cache), 3);
    assert_eq!(list_users(&cache, 10, 0).await, Vec::<u64>::new());
}

#[cached(key = "reports:<id>", skip(verbose), cache = cache)]
async fn report(cache: &Cache, id: u32, verbose: bool) -> String {
    format!("report {id} {verbose}")
}

#[tokio::test]
async fn skipped_arguments_do_not_change_the_key() {
    let cache = cache().await;
    assert_eq!(report(&cache, 1, false).await, "report 1 false");
    // Served from the entry the first call stored, under the same key.
    assert_eq!(report(&cache, 1, true).await, "report 1 false");
    assert_eq!(
        cache.get::<String>("reports:1").await.as_deref(),
        Some("report 1 false")
    );
}

/// Stand-ins for sea-orm's types: matched by name.
struct DatabaseConnection;
trait ConnectionTrait {}
impl ConnectionTrait for DatabaseConnection {}

#[cached(key = "accounts:<id>", cache = cache)]
async fn account(cache: &Cache, db: &DatabaseConnection, id: i32) -> Option<i32> {
    let _ = db;
    Some(id)
}

#[cached(key = "accounts:<id>:generic", cache = cache)]
async fn account_generic<C: ConnectionTrait>(cache: &Cache, db: &C, id: i32) -> Option<i32> {
    let _ = db;
    Some(id)
}

#[tokio::test]
async fn connections_are_skipped_without_being_asked() {
    let cache = cache().await;
    account(&cache, &DatabaseConnection, 5).await;
    account_generic(&cache, &DatabaseConnection, 5).await;
    // No hash suffix: neither the connection nor its type parameter is part of the key.
    assert_eq!(cache.get::<Option<i32>>("accounts:5").await, Some(Some(5)));
    assert_eq!(
        cache.get::<Option<i32>>("accounts:5:generic").await,
        Some(Some(5))
    );
}

struct Tenant {
    name: String,
    cache: Cache,
}

impl Tenant {
    #[cached(key = "tenants:<self.name>:users:<id>", cache = self.cache)]
    async fn user(&self, id: i32) -> Option<String> {
        Some(format!("{}/{id}", self.name))
    }
}

#[tokio::test]
async fn methods_can_key_on_self_and_use_its_cache() {
    let tenant = Tenant {
        name: "acme".to_owned(),
        cache: cache().await,
    };
    assert_eq!(tenant.user(1).await.as_deref(), Some("acme/1"));
    assert_eq!(tenant.user(1).await.as_deref(), Some("acme/1"));
    assert_eq!(loads(&tenant.cache), 1);
    assert_eq!(
        tenant
            .cache
            .get::<Option<String>>("tenants:acme:users:1")
            .await,
        Some(Some("acme/1".to_owned()))
    );
}

#[cached(key = "defaults", cache = cache)]
async fn default_of<T>(cache: &Cache) -> T
where
    T: Default + Serialize + serde::de::DeserializeOwned,
{
    T::default()
}

#[cached(key = "filled:<fill>", cache = cache)]
async fn filled<const N: usize>(cache: &Cache, fill: u8) -> Vec<u8> {
    vec![fill; N]
}

#[tokio::test]
async fn generic_instantiations_are_cached_apart() {
    let cache = cache().await;
    assert_eq!(default_of::<u8>(&cache).await, 0u8);
    assert_eq!(default_of::<String>(&cache).await, String::new());
    assert_eq!(default_of::<u8>(&cache).await, 0u8);
    assert_eq!(loads(&cache), 2);

    assert_eq!(filled::<2>(&cache, 1).await, vec![1, 1]);
    assert_eq!(filled::<3>(&cache, 1).await, vec![1, 1, 1]);
    assert_eq!(loads(&cache), 4);
}

#[derive(Serialize)]
struct Query {
    account: String,
    month: u32,
}

fn query(month: u32) -> Query {
    Query {
        account: "acme".to_owned(),
        month,
    }
}

#[cached(key = "reports:<q.account>", hash(q), cache = cache)]
async fn report_hashed(cache: &Cache, q: &Query) -> String {
    format!("{} {}", q.account, q.month)
}

/// R6: with `hash(q)`, the fields outside the template still tell calls apart.
#[tokio::test]
async fn r6_hash_keeps_the_other_fields_in_the_key() {
    let cache = cache().await;
    assert_eq!(report_hashed(&cache, &query(1)).await, "acme 1");
    assert_eq!(report_hashed(&cache, &query(2)).await, "acme 2");
    assert_eq!(report_hashed(&cache, &query(1)).await, "acme 1");
    assert_eq!(loads(&cache), 2);

    let mut key = KeyBuilder::new();
    key.literal("reports:")
        .value("q.account", "acme")
        .hash("q", &query(2));
    let key = key.finish().unwrap();
    assert!(key.starts_with("reports:acme:"), "{key}");
    assert_eq!(cache.get::<String>(&key).await.as_deref(), Some("acme 2"));
}

/// Only the account can change this report (say, the month is for display).
#[cached(key = "reports:<q.account>:summary", skip(q), cache = cache)]
async fn report_skipped(cache: &Cache, q: &Query) -> String {
    format!("{} {}", q.account, q.month)
}

/// R6: `skip(q)` says the fields in the template are all that matter: one entry.
#[tokio::test]
async fn r6_skip_keys_on_the_template_fields_only() {
    let cache = cache().await;
    assert_eq!(report_skipped(&cache, &query(1)).await, "acme 1");
    assert_eq!(report_skipped(&cache, &query(2)).await, "acme 1");
    assert_eq!(loads(&cache), 1);
    assert_eq!(
        cache.get::<String>("reports:acme:summary").await.as_deref(),
        Some("acme 1")
    );
}

#[cached(key = "nicknames:<nickname>", cache = cache)]
async fn by_nickname(cache: &Cache, nickname: Option<String>) -> String {
    format!("{nickname:?}")
}

/// R23: `None` and `Some("null")` render to different keys.
#[tokio::test]
async fn r23_none_and_the_string_null_are_different_keys() {
    let cache = cache().await;
    assert_eq!(by_nickname(&cache, None).await, "None");
    assert_eq!(
        by_nickname(&cache, Some("null".to_owned())).await,
        "Some(\"null\")"
    );
    assert_eq!(loads(&cache), 2);
    assert_eq!(
        cache.get::<String>("nicknames:%00n").await.as_deref(),
        Some("None")
    );
    assert_eq!(
        cache.get::<String>("nicknames:null").await.as_deref(),
        Some("Some(\"null\")")
    );
}

#[cached(key = "scores", cache = cache)]
async fn total(cache: &Cache, scores: &HashMap<String, u32>) -> u32 {
    scores.values().sum()
}

/// R23: a `HashMap` argument hashes the same whatever the order it iterates in (which differs
/// from map to map, and from process to process).
#[tokio::test]
async fn r23_a_hash_map_hashes_the_same_in_any_order() {
    let cache = cache().await;
    let forward: HashMap<String, u32> = (0..32).map(|i| (format!("k{i}"), i)).collect();
    let backward: HashMap<String, u32> = (0..32).rev().map(|i| (format!("k{i}"), i)).collect();
    assert_eq!(forward, backward);
    assert_ne!(
        forward.keys().collect::<Vec<_>>(),
        backward.keys().collect::<Vec<_>>(),
        "the two maps happen to iterate alike: the test proves nothing"
    );
    assert_eq!(total(&cache, &forward).await, 496);
    assert_eq!(total(&cache, &backward).await, 496);
    assert_eq!(loads(&cache), 1);
}
