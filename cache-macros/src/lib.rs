//! Implementation detail of `cache-runtime`: use `cache_runtime::{cached, invalidates}`.
//!
//! Each macro parses its arguments (`args.rs`, templates in `key.rs`), checks them against the
//! function (`valid.rs`, with `signature.rs`, `ret.rs` and `ttl.rs`), and generates a few calls
//! into `cache_runtime::__private` (`expand.rs`). On bad input the function is emitted
//! unchanged next to the errors.

use proc_macro::TokenStream;

mod args;
mod expand;
mod key;
mod ret;
mod signature;
mod ttl;
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
/// Every other argument is hashed: its JSON form (with its name, and map keys sorted) goes
/// into a blake3 hash appended as `:<hash>` (in parameter order), so different arguments never
/// share an entry. An argument the template uses only through fields (`<q.account>`) must be
/// named in [`hash(..)`](#hash) or [`skip(..)`](#skip): its other fields would otherwise be
/// left out of the key, and calls differing in them would share an entry.
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
/// # `hash`
///
/// `hash(q)` hashes the whole of an argument that the template uses only through fields, in
/// addition to those fields: the key keeps a readable, invalidatable prefix
/// (`reports:acme:*`) and calls that differ in the other fields still get entries of their
/// own. Naming an argument the template does not use, or uses whole, is an error (it is hashed
/// already, or entirely in the key).
///
/// ```
/// # use cache_runtime::{Cache, cached};
/// #[derive(serde::Serialize)]
/// struct Query {
///     account: String,
///     month: u32,
/// }
///
/// #[cached(key = "reports:<q.account>", hash(q))] // key: reports:acme:<hash of q>
/// async fn report(q: &Query) -> String {
///     format!("{} in month {}", q.account, q.month)
/// }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// # cache_runtime::install(Cache::builder().build().await.unwrap()).unwrap();
/// let january = Query { account: "acme".into(), month: 1 };
/// let february = Query { account: "acme".into(), month: 2 };
/// assert_eq!(report(&january).await, "acme in month 1");
/// assert_eq!(report(&february).await, "acme in month 2"); // another entry
/// # assert_eq!(cache_runtime::global().unwrap().stats().totals.loads, 2);
/// # }
/// ```
///
/// # `skip`
///
/// `skip(a, b)` leaves arguments out of the key: ones that cannot change the result (a
/// logger, a flag for tracing). Arguments that are not serializable must be in the template or
/// skipped; the compiler says which. An argument the template uses only through fields may be
/// skipped too, when those fields are all that can change the result (`key =
/// "users:<user.id>", skip(user)`); one it uses whole may not.
///
/// Database connections are skipped without being asked: parameters whose type is (a
/// reference to) a path ending in `DatabaseConnection`, `RestrictedConnection` or
/// `DatabaseExecutor`, `impl`/`dyn ConnectionTrait` or `TransactionTrait`, or a type parameter
/// bounded by one of them; so are the parameters the [`cache`](#cache) expression uses.
/// Anything serializable that is not skipped is hashed, so remember to skip things like
/// counters or clocks that do not change the result.
///
/// **Transactions.** A parameter whose type ends in `DatabaseTransaction` (or
/// `RestrictedTransaction`) is a compile error: a read inside a transaction sees its
/// uncommitted rows, and caching it would serve them to everyone, even after a rollback. The
/// macro cannot see through the generic forms: **an `impl ConnectionTrait`, a `C:
/// ConnectionTrait` or a `DatabaseExecutor` may be a transaction at run time**, and then the
/// same applies. Only call such cached functions with a connection, and keep reads inside a
/// transaction uncached.
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
/// What is cached depends on the return type, as the compiler sees it: aliases such as
/// `type ApiResult<T> = Result<T, ApiError>` or `io::Result<T>` are what they stand for, and a
/// type of your own named `Result` is a plain value.
///
/// | return type | cached | not cached |
/// |---|---|---|
/// | `Result<Option<T>, E>` | `Ok(Some(_))`, and `Ok(None)` with `cache_none` | `Err(_)` |
/// | `Result<T, E>` | `Ok(_)` | `Err(_)` |
/// | `Option<T>` | `Some(_)`, and `None` with `cache_none` | |
/// | anything else | the value | |
///
/// In a generic function, a return type that is a type parameter (`-> T`) is a plain value,
/// even when `T` is a `Result`.
///
/// The cached part must implement `Serialize` and `DeserializeOwned`; an `impl Trait` return
/// type cannot be cached. `cache_none = true` (or just `cache_none`) caches negative results,
/// so that repeated lookups of a missing row stop reaching the database (a return type
/// without `None` is then a compile error); `none_ttl = <secs>` gives them their own, usually
/// shorter, TTL.
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
/// Aliases need nothing: `result = true` only asserts that the return type is a `Result`
/// (a compile error otherwise). `result = false` treats a `Result` as a plain value: `Err` is
/// cached too, and must then be serializable.
///
/// ```
/// # use cache_runtime::{Cache, cached};
/// #[derive(Debug, serde::Serialize, serde::Deserialize)]
/// enum ApiError {
///     NotFound,
/// }
/// type ApiResult<T> = Result<T, ApiError>;
///
/// #[cached(key = "users:<id>")] // a `Result`: only `Ok` is cached, though `ApiError` could be
/// async fn get_user(id: i32) -> ApiResult<String> {
///     Err(ApiError::NotFound)
/// }
///
/// #[cached(key = "checks:<id>", result = false)] // `Err` is cached too
/// async fn check(id: i32) -> Result<(), String> {
///     Err(format!("{id} is unknown"))
/// }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// # cache_runtime::install(Cache::builder().build().await.unwrap()).unwrap();
/// # let cache = cache_runtime::global().unwrap();
/// get_user(1).await.unwrap_err();
/// assert!(cache.get::<String>("users:1").await.is_none());
/// check(1).await.unwrap_err();
/// assert!(cache.get::<Result<(), String>>("checks:1").await.is_some());
/// # }
/// ```
///
/// # `l1`
///
/// With the two-level cache on (`CACHE_L1=true`), another instance's write reaches this
/// instance's L1 one message later (well under a millisecond on a LAN, seconds at most when the
/// feed fails). `l1 = false` keeps a function's values out of the L1: every call reads Redis,
/// entry and markers, and so sees every write that completed before it began. For permissions,
/// balances and the like.
///
/// ```
/// # use cache_runtime::cached;
/// #[cached(key = "permissions:<user_id>", ttl = 60, l1 = false)]
/// async fn permissions(user_id: i32) -> Vec<String> {
///     vec!["read".into()]
/// }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() { permissions(1).await; }
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
/// `ttl = 0`, `skip` or `hash` of a parameter that does not exist, an argument in the template
/// only through fields and neither hashed nor skipped, a transaction parameter, a non-`async`
/// function, `cache_none` without a `None` in the return type, `result = true` on a type that
/// is not a `Result`, and an argument that can be neither hashed nor skipped are compile
/// errors, pointing at the culprit:
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
/// The expansion builds the key, lets the compiler pick the return type's shape and how the
/// in-process store keeps the value (autoref specialization: `__private::ShapeProbe`,
/// `KeepProbe`), then reads through the cache with the body as the loader
/// (`cache_runtime::__private` is not public API; this shows what happens, not what to write):
///
/// ```text
/// pub async fn list_users(db: &DatabaseConnection, skip: u64, limit: u64)
///     -> Result<Vec<user::Model>, DbErr>
/// {
///     let key: Result<String, KeyError> = {
///         let mut key = KeyBuilder::new();
///         key.literal("users:list");
///         key.hash("skip", &skip);   // KeyArg-checked: a non-serializable argument
///         key.hash("limit", &limit); // is a compile error at the parameter
///         key.finish()               // "users:list:<hash>"
///     };
///     type R = Result<Vec<user::Model>, DbErr>; // written out in the expansion
///     let shape = (&&&&ShapeProbe::<R, Detect>::NEW).shape(); // ResultShape
///     __private::cached::<_, R, _, _>(
///         None, // or Some(&cache) with `cache = ..`
///         key,
///         Policy {
///             ttl: Some(secs(60)),
///             cache_none: false, // `cache_none`: `cache_none(&shape)`, true if it compiles
///             none_ttl: None,
///             bypass_l1: false, // `l1 = false`: true
///         },
///         shape,
///         (&KeepProbe::<_, R>::of(&shape)).keeping(), // ByClone if the value is Clone
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
/// The invalidation survives cancellation: if the call's future is dropped once the body has
/// started (a client disconnects, a timeout fires while `commit().await` is in flight), the
/// invalidation runs in a task spawned on the current tokio runtime, since the write may have
/// committed. An extra invalidation for a write that did not commit only costs a reload.
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
/// When the return type is a `Result`, as the compiler sees it (aliases included), entries are
/// invalidated only on `Ok`: a failed write changed nothing. Other functions invalidate
/// whenever they return. `result = true` asserts that the return type is a `Result` (a compile
/// error otherwise); `result = false` invalidates on `Err` too. Telling needs the return type
/// by name: with an `impl Trait` in it, write `result = false`.
///
/// ```
/// # use cache_runtime::invalidates;
/// type DbResult<T> = Result<T, String>;
///
/// #[invalidates("users:*")]
/// async fn deactivate_all() -> DbResult<u64> {
///     Err("read-only replica".into()) // nothing is invalidated
/// }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() { deactivate_all().await.unwrap_err(); }
/// ```
///
/// # `deferred`
///
/// A function that writes through its caller's transaction must not invalidate when it
/// returns: the caller has not committed yet, and a concurrent read could load the old rows
/// and cache them again, for their whole TTL. So a parameter whose type ends in
/// `DatabaseTransaction` (or `RestrictedTransaction`) is a compile error, unless the attribute
/// says `deferred` (or `deferred = true`): the invalidation is then handed to the enclosing
/// `cache_runtime::defer_invalidations(..)`, which runs it when its future completes (after
/// the commit) or is dropped. Outside one, a deferred invalidation runs at once and logs a
/// warning. Write `deferred` too when an `impl ConnectionTrait` or `C: ConnectionTrait`
/// parameter may be a transaction: the macro cannot tell.
///
/// ```
/// use cache_runtime::{Cache, cached, defer_invalidations, invalidates};
///
/// struct DatabaseTransaction; // sea_orm::DatabaseTransaction, in real life
/// impl DatabaseTransaction {
///     async fn commit(self) -> Result<(), String> { Ok(()) }
/// }
///
/// #[cached(key = "users:<id>")]
/// async fn get_user(id: i32) -> Option<String> {
///     Some(id.to_string())
/// }
///
/// #[invalidates("users:<id>", deferred)]
/// async fn rename_user(txn: &DatabaseTransaction, id: i32, name: &str) -> Result<(), String> {
///     Ok(()) // an UPDATE in `txn`, in real life
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), String> {
/// # cache_runtime::install(Cache::builder().build().await.unwrap()).unwrap();
/// let cache = cache_runtime::global().unwrap();
/// get_user(1).await;
/// defer_invalidations(async {
///     let txn = DatabaseTransaction; // db.begin().await?
///     rename_user(&txn, 1, "ann").await?;
///     assert!(cache.get::<Option<String>>("users:1").await.is_some()); // not yet
///     txn.commit().await
/// })
/// .await?;
/// assert!(cache.get::<Option<String>>("users:1").await.is_none()); // after the commit
/// # Ok(())
/// # }
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
/// parameter, a transaction parameter without `deferred`, `result = true` on a type that is
/// not a `Result` and a non-`async` function are compile errors:
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
/// The guard holds the rendered patterns and the cache; dropped while armed, it spawns the
/// invalidation:
///
/// ```text
/// pub async fn delete_task(db: &DatabaseConnection, user_id: i32, id: i32) -> Result<(), DbErr> {
///     let guard = __private::InvalidationGuard::arm( // `arm_deferred` with `deferred`
///         None, // or Some(&cache) with `cache = ..`
///         [
///             { /* KeyBuilder: "users:", user_id, ":tasks:*" */ },
///             { /* KeyBuilder: "tasks:", id */ },
///         ],
///     );
///     let out = async move {
///         // the original body, unchanged
///     }
///     .await;
///     let shape = (&&&&ShapeProbe::<Result<(), DbErr>, Detect>::NEW).shape(); // ResultShape
///     guard.finish(__private::succeeded(shape, &out)).await; // `true` with `result = false`
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
