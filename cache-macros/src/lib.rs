//! Implementation detail of `cache-runtime`: use `cache_runtime::{cached, invalidates}`.
//!
//! Each macro parses its arguments (`args.rs`, templates in `key.rs`), checks them against the
//! function (`valid.rs`), and generates a few calls into `cache_runtime::__private`
//! (`expand.rs`). On bad input the function is emitted unchanged next to the errors.

use proc_macro::TokenStream;

mod args;
mod expand;
mod key;
mod valid;

/// Caches an async function's result under a key built from its arguments.
///
/// ```
/// use cache_runtime::{Cache, cached};
///
/// #[derive(Debug)]
/// pub struct DbErr;
///
/// #[cached(key = "users:<id>", ttl = 300)]
/// pub async fn get_user(id: i32) -> Result<Option<String>, DbErr> {
///     Ok(Some(format!("user {id}"))) // a database query, in real life
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// cache_runtime::install(Cache::builder().build().await.unwrap()).unwrap();
/// assert_eq!(get_user(42).await.unwrap().as_deref(), Some("user 42")); // loads, stores
/// assert_eq!(get_user(42).await.unwrap().as_deref(), Some("user 42")); // served by the cache
/// let cache = cache_runtime::global().unwrap();
/// assert_eq!(cache.get::<Option<String>>("users:42").await, Some(Some("user 42".into())));
/// # }
/// ```
///
/// Calls go through the cache given with [`cache = ..`](#cache), else the one a
/// `cache_runtime::scope` runs in, else the one set by `cache_runtime::install`; with none,
/// the function simply runs. Cache failures never reach the caller: the function runs instead.
/// Concurrent calls with the same key share one execution.
///
/// The function must be `async`; it can be a free function, a method (any receiver), generic,
/// or in a trait impl. Its body is kept as written: `return` and `?` behave as before.
///
/// # `key`
///
/// Required. A template: literal text plus `<param>` placeholders naming parameters, or
/// fields of them (`<filter.name>`, `<self.tenant>`). Segments are separated by `:`; use
/// them to make prefixes that [`invalidates`] can target (`users:*`, `users:<id>:*`).
///
/// Every other argument is hashed: its JSON form goes into a blake3 hash appended as
/// `:<hash>` (in parameter order), so different arguments never share an entry.
///
/// ```
/// # use cache_runtime::{Cache, cached};
/// #[cached(key = "users:list")] // key: users:list:<hash of skip and limit>
/// async fn list_users(skip: u64, limit: u64) -> Vec<u64> {
///     (skip..skip + limit).collect()
/// }
///
/// #[cached(key = "tenants:<tenant>:users:<id>")] // key: tenants:acme:users:7
/// async fn get_user(tenant: &str, id: i32) -> Option<String> {
///     Some(format!("{tenant}/{id}"))
/// }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// # cache_runtime::install(Cache::builder().build().await.unwrap()).unwrap();
/// # let cache = cache_runtime::global().unwrap();
/// get_user("acme", 7).await;
/// assert!(cache.get::<Option<String>>("tenants:acme:users:7").await.is_some());
/// # list_users(0, 10).await;
/// # }
/// ```
///
/// Placeholder values are escaped (`:`, `*`, `?`, `[`, `]`, `{`, `}`, `\`, `%`, whitespace),
/// so a value can never reach outside its segment or act as a pattern; long values are hashed.
/// Placeholder and hashed arguments must implement `serde::Serialize`. The template itself
/// may not be empty, contain `*`, `?`, `[`, `]`, `{`, `}`, `\` or whitespace, have empty
/// segments (`a::b`, a leading or trailing `:`), or start with `__inv:`.
///
/// Generic functions cache each instantiation apart: type and const parameters go into the
/// hash. Parameters of the surrounding `impl` are not visible to the macro: in a generic impl,
/// make the template differ per instantiation. `self` is never hashed; name what matters in
/// the template (`<self.tenant>`).
///
/// # `skip`
///
/// `skip(a, b)` leaves arguments out of the key: ones that cannot change the result (a
/// logger, a flag for tracing). Arguments that are not serializable must be in the template or
/// skipped; the compiler says which. Database connections are skipped without being asked:
/// parameters whose type is (a reference to) a path ending in `DatabaseConnection` or
/// `DatabaseTransaction`, `impl ConnectionTrait`, `dyn ConnectionTrait`, or a type parameter
/// bounded by `ConnectionTrait`; so are the parameters the [`cache`](#cache) expression uses.
/// Anything serializable that is not skipped is hashed, so remember to skip things like
/// counters or clocks that do not change the result.
///
/// ```
/// # use cache_runtime::{Cache, cached};
/// struct DatabaseConnection; // sea_orm::DatabaseConnection, in real life
/// struct Metrics;
///
/// #[cached(key = "users:<id>", skip(metrics))] // db: skipped without being asked
/// async fn get_user(db: &DatabaseConnection, metrics: &Metrics, id: i32) -> Option<i32> {
///     Some(id)
/// }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// # cache_runtime::install(Cache::builder().build().await.unwrap()).unwrap();
/// get_user(&DatabaseConnection, &Metrics, 1).await;
/// # assert!(cache_runtime::global().unwrap().get::<Option<i32>>("users:1").await.is_some());
/// # }
/// ```
///
/// # `ttl`
///
/// Seconds an entry lives: a positive integer literal, or a `u64` const expression (checked
/// at compile time). Without it, the cache's default (`CACHE_TTL`) applies. The cache may
/// clamp it to its maximum.
///
/// ```
/// # use cache_runtime::cached;
/// const FIVE_MINUTES: u64 = 5 * 60;
///
/// #[cached(key = "prices:<sku>", ttl = FIVE_MINUTES)]
/// async fn price(sku: &str) -> Option<u32> {
///     Some(sku.len() as u32)
/// }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() { price("a").await; }
/// ```
///
/// # Return types, `cache_none` and `none_ttl`
///
/// What is cached is chosen from the return type as written:
///
/// | return type | cached | not cached |
/// |---|---|---|
/// | `Result<Option<T>, E>` | `Ok(Some(_))`, and `Ok(None)` with `cache_none` | `Err(_)` |
/// | `Result<T, E>` (any path ending in `Result` with type arguments) | `Ok(_)` | `Err(_)` |
/// | `Option<T>` | `Some(_)`, and `None` with `cache_none` | |
/// | anything else | the value | |
///
/// The cached part must implement `Serialize` and `DeserializeOwned`; an `impl Trait` return
/// type cannot be cached. `cache_none = true` (or just `cache_none`) caches negative results,
/// so that repeated lookups of a missing row stop reaching the database; `none_ttl = <secs>`
/// gives them their own, usually shorter, TTL.
///
/// ```
/// # use cache_runtime::{Cache, cached};
/// #[cached(key = "users:<id>", ttl = 300, cache_none = true, none_ttl = 30)]
/// async fn find_user(id: i32) -> Result<Option<String>, String> {
///     Ok(None) // not found: cached for 30 seconds
/// }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// # cache_runtime::install(Cache::builder().build().await.unwrap()).unwrap();
/// find_user(1).await.unwrap();
/// # assert_eq!(cache_runtime::global().unwrap().get::<Option<String>>("users:1").await, Some(None));
/// # }
/// ```
///
/// # `result`
///
/// `result = true` treats a return type that does not look like `Result` (an alias such as
/// `DbResult<T>`) as one: only `Ok` is cached, and an `Option` first type argument selects
/// the `Result<Option<T>, E>` handling. `result = false` turns the detection off.
///
/// ```
/// # use cache_runtime::cached;
/// type DbResult<T> = Result<T, String>;
///
/// #[cached(key = "users:<id>", result = true)]
/// async fn get_user(id: i32) -> DbResult<Option<String>> {
///     Ok(Some(id.to_string()))
/// }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() { get_user(1).await.unwrap(); }
/// ```
///
/// # `cache`
///
/// `cache = <expr>` uses a specific cache: the expression is evaluated on each call, before
/// the body, and borrowed as `&Cache` (so a `Cache`, a `&Cache` or an `Arc<Cache>` all work).
/// It may use the arguments and `self`, which are then not part of the key; the body must
/// not move what the expression borrows.
///
/// ```
/// use cache_runtime::{Cache, cached};
///
/// struct UserService {
///     cache: Cache,
/// }
///
/// impl UserService {
///     #[cached(key = "users:<id>", cache = self.cache)]
///     async fn get_user(&self, id: i32) -> Option<String> {
///         Some(id.to_string())
///     }
/// }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let service = UserService { cache: Cache::builder().build().await.unwrap() };
/// service.get_user(1).await;
/// assert!(service.cache.get::<Option<String>>("users:1").await.is_some());
/// # }
/// ```
///
/// # `crate`
///
/// `crate = path` names `cache_runtime` when it is renamed or re-exported; the expansion
/// refers to nothing else.
///
/// ```
/// mod infra {
///     pub use cache_runtime as cache;
/// }
///
/// #[infra::cache::cached(key = "users:<id>", crate = infra::cache)]
/// async fn get_user(id: i32) -> Option<i32> {
///     Some(id)
/// }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() { get_user(1).await; }
/// ```
///
/// # Compile-time checks
///
/// Unknown or repeated arguments, placeholders that name no parameter, malformed templates,
/// `ttl = 0`, `skip` of a parameter that does not exist, a non-`async` function and an
/// argument that can be neither hashed nor skipped are compile errors, pointing at the
/// culprit:
///
/// ```compile_fail
/// # use cache_runtime::cached;
/// #[cached(key = "users:<user_id>")] // error: no parameter `user_id`
/// async fn get_user(id: i32) -> Option<i32> {
///     Some(id)
/// }
/// # fn main() {}
/// ```
///
/// # Equivalent code without `#[cached]`
///
/// The expansion builds the key, then reads through the cache with the body as the loader
/// (`cache_runtime::__private` is not public API; this shows what happens, not what to write):
///
/// ```text
/// pub async fn list_users(db: &DatabaseConnection, skip: u64, limit: u64)
///     -> Result<Vec<user::Model>, DbErr>
/// {
///     let key: Result<String, KeyError> = {
///         let mut key = KeyBuilder::new();
///         key.literal("users:list");
///         key.hash("skip", &skip);  // KeyArg-checked: a non-serializable argument
///         key.hash("limit", &limit); // is a compile error at the parameter
///         key.finish()               // "users:list:<hash>"
///     };
///     __private::cached::<ResultShape, Result<Vec<user::Model>, DbErr>, _>(
///         None, // or Some(&cache) with `cache = ..`
///         key,
///         Policy { ttl: Some(Duration::from_secs(60)), cache_none: false, none_ttl: None },
///         async move {
///             // the original body, unchanged
///         },
///     )
///     .await
/// }
/// ```
#[proc_macro_attribute]
pub fn cached(args: TokenStream, item: TokenStream) -> TokenStream {
    let original = item.clone().into();
    valid::cached(syn::parse(args), syn::parse(item))
        .map_or_else(|e| expand::fallback(original, e), expand::cached)
        .into()
}

/// Invalidates cache entries after an async function succeeds.
///
/// ```
/// use cache_runtime::{Cache, cached, invalidates};
///
/// #[cached(key = "users:<id>")]
/// async fn get_user(id: i32) -> Result<String, String> {
///     Ok(format!("user {id}"))
/// }
///
/// #[invalidates("users:<id>")]
/// async fn rename_user(id: i32, name: String) -> Result<String, String> {
///     Ok(name) // an UPDATE, in real life
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// cache_runtime::install(Cache::builder().build().await.unwrap()).unwrap();
/// let cache = cache_runtime::global().unwrap();
/// get_user(1).await.unwrap();
/// assert!(cache.get::<String>("users:1").await.is_some());
/// rename_user(1, "ann".into()).await.unwrap();
/// assert!(cache.get::<String>("users:1").await.is_none());
/// # }
/// ```
///
/// The patterns are rendered from the arguments before the body runs (the body may move
/// them); the invalidation happens after it completes. Invalidation is O(1) per pattern
/// whatever the number of keys (the cache never scans), and a later read never sees an entry
/// loaded before it. Without a cache, the function simply runs.
///
/// # Patterns
///
/// One or more string literals, each one of:
///
/// - a key (`"users:<id>"`): that entry;
/// - a prefix (`"users:*"`, `"users:<user_id>:tasks:*"`): every key under it, including
///   hashed keys (`"users:list:*"` covers `users:list:<hash>`);
/// - `"*"`: everything in the cache.
///
/// `*` may only be a whole trailing segment. Placeholders name parameters (or their fields)
/// exactly as in [`cached`]'s `key`, and those arguments must implement `Serialize`; other
/// arguments need not.
///
/// ```
/// # use cache_runtime::invalidates;
/// #[invalidates("users:<user_id>:tasks:*", "tasks:<id>")]
/// async fn delete_task(user_id: i32, id: i32) -> Result<(), String> {
///     Ok(())
/// }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() { delete_task(1, 2).await.unwrap(); }
/// ```
///
/// # `result`
///
/// When the return type is written `Result<..>` (any path ending in `Result` with type
/// arguments), entries are invalidated only on `Ok`: a failed write changed nothing. Other
/// functions invalidate whenever they return. `result = true` treats an alias
/// (`DbResult<T>`) as a `Result`; `result = false` invalidates on `Err` too.
///
/// ```
/// # use cache_runtime::invalidates;
/// type DbResult<T> = Result<T, String>;
///
/// #[invalidates("users:*", result = true)]
/// async fn deactivate_all() -> DbResult<u64> {
///     Err("read-only replica".into()) // nothing is invalidated
/// }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() { deactivate_all().await.unwrap_err(); }
/// ```
///
/// # `cache`
///
/// `cache = <expr>`: invalidate in this cache instead, as for [`cached`].
///
/// ```
/// # use cache_runtime::{Cache, invalidates};
/// #[invalidates("users:*", cache = cache)]
/// async fn reset_users(cache: &Cache) {}
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() { reset_users(&Cache::builder().build().await.unwrap()).await; }
/// ```
///
/// # `crate`
///
/// `crate = path` names `cache_runtime` when it is renamed or re-exported, as for [`cached`].
///
/// ```
/// use cache_runtime as cache;
///
/// #[cache::invalidates("users:*", crate = cache)]
/// async fn reset_users() {}
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() { reset_users().await; }
/// ```
///
/// # Compile-time checks
///
/// A missing pattern, a `*` that is not a whole trailing segment, placeholders that name no
/// parameter and a non-`async` function are compile errors:
///
/// ```compile_fail
/// # use cache_runtime::invalidates;
/// #[invalidates("users*")] // error: did you mean `users:*`?
/// async fn update_users() {}
/// # fn main() {}
/// ```
///
/// # Equivalent code without `#[invalidates]`
///
/// ```text
/// pub async fn delete_task(db: &DatabaseConnection, user_id: i32, id: i32) -> Result<(), DbErr> {
///     let patterns: [Result<String, KeyError>; 2] = [
///         { /* KeyBuilder: "users:", user_id, ":tasks:*" */ },
///         { /* KeyBuilder: "tasks:", id */ },
///     ];
///     let out = async move {
///         // the original body, unchanged
///     }
///     .await;
///     if __private::succeeded(&out) {
///         __private::invalidate(None, &patterns).await;
///     }
///     out
/// }
/// ```
#[proc_macro_attribute]
pub fn invalidates(args: TokenStream, item: TokenStream) -> TokenStream {
    let original = item.clone().into();
    valid::invalidates(syn::parse(args), syn::parse(item))
        .map_or_else(|e| expand::fallback(original, e), expand::invalidates)
        .into()
}
