//! R2: `rediss://` panicked inside rustls (no crypto provider). TLS must work end to end, as
//! must passwords and ACL users, and a TLS setting that would silently connect in plaintext is
//! a configuration error.

use std::time::Duration;

use cache_runtime::{Cache, Config, Fallback, Mode};
use integration_tests::RedisServer;

use crate::support::{Loader, user};

fn config(vars: &[(&str, String)]) -> Result<Config, cache_runtime::ConfigError> {
    Config::from_lookup(|name| {
        vars.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.clone())
    })
}

/// Two reads through a cache: the second must be a hit served by Redis.
async fn hit_served_by_redis(cache: &Cache) {
    assert_eq!(cache.mode(), Mode::Redis, "{:?}", cache.stats());
    let loader = Loader::default();
    for _ in 0..2 {
        let got = cache
            .get_or_load("users:1", None, loader.load(user(1, "tls")))
            .await;
        assert_eq!(got.unwrap(), user(1, "tls"));
    }
    assert_eq!(loader.runs(), 1, "the second read was a hit");
    assert_eq!(cache.stats().totals.hits, 1);
    assert_eq!(cache.stats().totals.errors, 0, "{:?}", cache.stats());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hit_is_served_over_tls() {
    let server = RedisServer::builder().tls().start();
    assert!(server.url().starts_with("rediss://"));
    let cache = Cache::builder()
        .redis_url(server.url())
        .redis_tls_ca(server.ca_cert_path().unwrap())
        .fallback(Fallback::None)
        .op_timeout(Duration::from_secs(2))
        .build()
        .await
        .unwrap();
    hit_served_by_redis(&cache).await;
    let stored: bool = server.query(&["EXISTS", "users:1"]);
    assert!(stored);
}

/// The same from environment variables: host and port, `REDIS_SSL=true`, the CA file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_from_variables() {
    let server = RedisServer::builder().tls().start();
    let config = config(&[
        ("REDIS_ENABLED", "true".into()),
        ("REDIS_PORT", server.port().to_string()),
        ("REDIS_SSL", "true".into()),
        (
            "REDIS_TLS_CA_CERT",
            server.ca_cert_path().unwrap().display().to_string(),
        ),
        ("REDIS_TIMEOUT_MS", "2000".into()),
    ])
    .unwrap();
    let cache = Cache::builder().config(config).build().await.unwrap();
    hit_served_by_redis(&cache).await;
}

/// A server whose certificate the client does not trust: the cache degrades (never panics,
/// never falls back to plaintext) and calls go through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_certificate_degrades() {
    let server = RedisServer::builder().tls().start();
    let cache = Cache::builder()
        .redis_url(server.url())
        .connect_timeout(Duration::from_millis(500))
        .build()
        .await
        .unwrap();
    assert_eq!(cache.mode(), Mode::Memory);
    let loader = Loader::default();
    assert_eq!(
        cache.get_or_load("users:1", None, loader.load(1)).await,
        Ok(1)
    );
}

#[test]
fn tls_settings_that_would_connect_in_plaintext_are_errors() {
    let e = config(&[
        ("REDIS_URL", "redis://127.0.0.1:6379/0".into()),
        ("REDIS_SSL", "true".into()),
    ])
    .unwrap_err();
    assert!(e.to_string().contains("REDIS_SSL"), "{e}");
    let e = config(&[
        ("REDIS_URL", "redis://127.0.0.1:6379/0".into()),
        ("REDIS_TLS_CA_CERT", "/tmp/ca.pem".into()),
    ])
    .unwrap();
    let built = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(Cache::builder().config(e).redis_enabled(true).build());
    let message = built.unwrap_err().to_string();
    assert!(message.contains("REDIS_TLS_CA_CERT"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requirepass_with_the_password() {
    let server = RedisServer::builder().requirepass("s3cret pass").start();
    let config = config(&[
        ("REDIS_ENABLED", "true".into()),
        ("REDIS_PORT", server.port().to_string()),
        ("REDIS_PASSWORD", "s3cret pass".into()),
        ("REDIS_TIMEOUT_MS", "2000".into()),
    ])
    .unwrap();
    let cache = Cache::builder().config(config).build().await.unwrap();
    hit_served_by_redis(&cache).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acl_user_in_the_url() {
    let server = RedisServer::builder()
        .requirepass("admin-only")
        .acl_user("app", "app-pw", "on ~* &* +@all")
        .start();
    let cache = Cache::builder()
        .redis_url(server.url_as("app", "app-pw"))
        .op_timeout(Duration::from_secs(2))
        .build()
        .await
        .unwrap();
    hit_served_by_redis(&cache).await;
    let clients: String = server.query(&["CLIENT", "LIST"]);
    assert!(clients.contains("user=app"), "{clients}");
}

/// A wrong password: degraded, calls go through, the password is in no error message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_degrades() {
    let server = RedisServer::builder()
        .acl_user("app", "app-pw", "on ~* &* +@all")
        .start();
    let cache = Cache::builder()
        .redis_url(server.url_as("app", "not-the-password"))
        .connect_timeout(Duration::from_millis(500))
        .build()
        .await
        .unwrap();
    assert_eq!(cache.mode(), Mode::Memory);
    let loader = Loader::default();
    assert_eq!(
        cache.get_or_load("users:1", None, loader.load(1)).await,
        Ok(1)
    );
    assert!(!format!("{:?}", cache.config()).contains("not-the-password"));
}
