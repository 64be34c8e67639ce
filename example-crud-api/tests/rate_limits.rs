//! The API's rate limits (API.md, "Rate limits") through the real router and through real
//! processes: a login limit that two instances share, an API limit per caller, a forged
//! `X-Forwarded-For`, Redis failing under each failure mode, bad settings, and the contract in
//! `/openapi.json`.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::connect_info::MockConnectInfo;
use axum::http::{Method, StatusCode};
use common::instances::{Fleet, SharedRedis};
use common::{Db, Kind, Resp, TestApp};
use example_crud_api::RateLimits;
use serde_json::json;

const PASSWORD: &str = "correct horse battery";

/// `app`'s state with the limits `vars` configure, served as if every request came from `peer`.
fn limited(app: &TestApp, vars: &[(&str, &str)], peer: [u8; 4]) -> (RateLimits, Router) {
    let limits = RateLimits::from_lookup(
        |name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).to_owned())
        },
        &app.state.cache,
    )
    .expect("valid settings");
    (limits.clone(), behind(app, &limits, peer))
}

/// The app under `limits`, for requests from `peer`.
fn behind(app: &TestApp, limits: &RateLimits, peer: [u8; 4]) -> Router {
    let state = app.state.clone().with_rate_limits(limits.clone());
    example_crud_api::app(state).layer(MockConnectInfo(SocketAddr::from((peer, 40_000))))
}

/// `GET /health`, with a bearer token if given.
async fn get(router: &Router, bearer: Option<&str>) -> Resp {
    let headers: Vec<(&str, &str)> = bearer.map(|b| ("authorization", b)).into_iter().collect();
    common::send_with(router, Method::GET, "/health", None, &headers).await
}

async fn login(router: &Router, email: &str, password: &str, headers: &[(&str, &str)]) -> Resp {
    let body = json!({"email": email, "password": password}).to_string();
    common::send_with(
        router,
        Method::POST,
        "/auth/login",
        Some(("application/json", &body)),
        headers,
    )
    .await
}

fn header<'a>(r: &'a Resp, name: &str) -> &'a str {
    r.headers
        .get(name)
        .unwrap_or_else(|| panic!("no {name} in {:?}", r.headers))
        .to_str()
        .expect("text")
}

/// A 429 as API.md says: the error body, an integer `Retry-After` in `1..=max`, the fields.
fn assert_limited(r: &Resp, limiter: &str, max_retry: u64) {
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.text);
    assert!(r.error().contains("rate limit"), "{}", r.text);
    let retry: u64 = header(r, "retry-after")
        .parse()
        .expect("integer Retry-After");
    assert!((1..=max_retry).contains(&retry), "Retry-After {retry}");
    assert!(header(r, "ratelimit-policy").starts_with(&format!("\"{limiter}\";q=")));
    assert!(header(r, "ratelimit").starts_with(&format!("\"{limiter}\";r=0;t=")));
}

#[test]
fn two_instances_share_the_login_limit() {
    // The default LOGIN_RATE_LIMIT (5/60s), from the binary's own configuration.
    let fleet = Fleet::start(2, Db::Sqlite, SharedRedis::start(false));
    let (a, b) = (&fleet.instances[0], &fleet.instances[1]);
    let r = a.post(
        "/users",
        &json!({"name": "Ada", "email": "ada@example.com", "password": PASSWORD}),
    );
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let wrong = json!({"email": "ada@example.com", "password": "guess"});
    for attempt in 0..5 {
        let instance = if attempt % 2 == 0 { a } else { b };
        let r = instance.post("/auth/login", &wrong);
        assert_eq!(
            r.status,
            StatusCode::UNAUTHORIZED,
            "attempt {attempt}: {}",
            r.text
        );
        assert_eq!(header(&r, "ratelimit-policy"), "\"login\";q=5;w=60");
        let state = header(&r, "ratelimit");
        assert!(
            state.starts_with(&format!("\"login\";r={};t=", 4 - attempt)),
            "attempt {attempt}: {state}"
        );
    }
    // The sixth attempt, on either instance and even with the right password, is refused;
    // so is a token request (one limit for both routes).
    let right = json!({"email": "ada@example.com", "password": PASSWORD});
    assert_limited(&b.post("/auth/login", &right), "login", 60);
    assert_limited(&a.post("/auth/token", &right), "login", 60);
    // Other routes are not under the login limit.
    assert_eq!(a.get("/health").status, StatusCode::OK);

    let stats = a.admin_get("/cache/stats");
    let login = &stats.body["rate_limits"][0];
    assert_eq!(login["name"], "login", "{}", stats.text);
    assert_eq!(login["mode"], "redis");
    // Counters are per instance: `a` admitted attempts 0, 2 and 4, and refused the token.
    assert_eq!(
        (login["allowed"].as_u64(), login["limited"].as_u64()),
        (Some(3), Some(1))
    );
    let metrics = b.get("/metrics").text;
    let limited = metrics
        .lines()
        .find(|l| {
            l.starts_with("rate_limit_decisions_total")
                && l.contains("limiter=\"login\"")
                && l.contains("decision=\"limited\"")
        })
        .unwrap_or_else(|| panic!("no login decisions in\n{metrics}"));
    assert!(limited.ends_with(" 1"), "{limited}");

    // In Redis: one key for the one client, with a TTL, that does not show the IP.
    let SharedRedis::Server(redis) = &fleet.redis else {
        unreachable!()
    };
    let keys: Vec<String> = redis.query(&["KEYS", "ratelimit:*"]);
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert!(keys[0].starts_with("ratelimit:login:s:") && !keys[0].contains("127.0.0.1"));
    let ttl: i64 = redis.query(&["PTTL", &keys[0]]);
    assert!(ttl > 0 && ttl <= 60_000, "{ttl}");
}

#[tokio::test]
async fn the_api_limit_is_per_caller() {
    let app = TestApp::new(Db::Sqlite, Kind::Redis).await;
    let vars = [("API_RATE_LIMIT", "3/60s")];
    let (limits, from_x) = limited(&app, &vars, [203, 0, 113, 1]);
    let from_y = behind(&app, &limits, [203, 0, 113, 2]);
    let jwt = app.state.auth.jwt().expect("a signer");
    let ada = format!("Bearer {}", jwt.issue("1", "ada", "user").unwrap().0);
    let bob = format!("Bearer {}", jwt.issue("2", "bob", "user").unwrap().0);
    for left in (0..3).rev() {
        let r = get(&from_x, Some(&ada)).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(header(&r, "ratelimit-policy"), "\"api\";q=3;w=60");
        assert!(header(&r, "ratelimit").starts_with(&format!("\"api\";r={left};")));
    }
    // Ada is over her limit wherever she comes from; Bob and anonymous callers are not.
    assert_limited(&get(&from_y, Some(&ada)).await, "api", 60);
    assert_eq!(get(&from_x, Some(&bob)).await.status, StatusCode::OK);
    for _ in 0..3 {
        assert_eq!(get(&from_x, None).await.status, StatusCode::OK);
    }
    assert_limited(&get(&from_x, None).await, "api", 60);
    assert_eq!(get(&from_y, None).await.status, StatusCode::OK);
    // An unknown path is not a limited route.
    let r = common::send(&from_x, Method::GET, "/nowhere", None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.headers.get("ratelimit").is_none());
    // The login route has its own limit (the default), not the API's.
    let r = login(&from_x, "nobody@example.com", "x", &[]).await;
    assert_eq!(header(&r, "ratelimit-policy"), "\"login\";q=5;w=60");
    let keys: Vec<String> = app.redis().query(&["KEYS", "ratelimit:api:*"]);
    assert_eq!(keys.len(), 4, "ada, bob, two IPs: {keys:?}");
    assert!(
        keys.iter()
            .all(|k| !k.contains("203.0.113") && !k.contains(":1"))
    );
}

#[tokio::test]
async fn forwarded_for_is_believed_only_from_trusted_proxies() {
    let app = TestApp::new(Db::Sqlite, Kind::Memory).await;
    let vars = [
        ("LOGIN_RATE_LIMIT", "2/60s"),
        ("TRUSTED_PROXIES", "10.0.0.0/8"),
    ];
    let (limits, stranger) = limited(&app, &vars, [198, 51, 100, 9]);
    // A client that forges a new X-Forwarded-For on every attempt is still one client.
    for (i, status) in [StatusCode::UNAUTHORIZED, StatusCode::UNAUTHORIZED]
        .into_iter()
        .enumerate()
    {
        let forged = format!("192.0.2.{i}");
        let r = login(
            &stranger,
            "x@example.com",
            "x",
            &[("x-forwarded-for", &forged)],
        )
        .await;
        assert_eq!(r.status, status, "{}", r.text);
    }
    let r = login(
        &stranger,
        "x@example.com",
        "x",
        &[("x-forwarded-for", "192.0.2.99")],
    )
    .await;
    assert_limited(&r, "login", 60);

    // Behind a trusted proxy, the right-most untrusted entry is the client.
    let proxy = behind(&app, &limits, [10, 0, 0, 1]);
    let via = |xff: &'static str| {
        let proxy = proxy.clone();
        async move { login(&proxy, "x@example.com", "x", &[("x-forwarded-for", xff)]).await }
    };
    assert_eq!(via("203.0.113.1").await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        via("203.0.113.1, 10.0.0.7").await.status,
        StatusCode::UNAUTHORIZED
    );
    // What the client prepends does not make it someone else.
    assert_limited(&via("6.6.6.6, 203.0.113.1").await, "login", 60);
    assert_eq!(via("203.0.113.2").await.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn redis_down_fails_as_configured() {
    let mut app = TestApp::new(Db::Sqlite, Kind::Redis).await;
    let login_limit = ("LOGIN_RATE_LIMIT", "3/60s");
    let (_, closed) = limited(
        &app,
        &[login_limit, ("RATE_LIMIT_ON_FAILURE", "closed")],
        [203, 0, 113, 1],
    );
    let (local_limits, local) = limited(&app, &[login_limit], [203, 0, 113, 1]);
    let (_, open) = limited(
        &app,
        &[login_limit, ("RATE_LIMIT_ON_FAILURE", "open")],
        [203, 0, 113, 1],
    );
    app.redis_mut().kill();
    for _ in 0..6 {
        let r = login(&closed, "x@example.com", "x", &[]).await;
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text);
        assert!(r.error().contains("unavailable"), "{}", r.text);
        let retry: u64 = header(&r, "retry-after").parse().expect("integer");
        assert!(retry >= 1);
        assert_eq!(
            login(&open, "x@example.com", "x", &[]).await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    // `local`: the limit holds in this instance.
    let statuses: Vec<StatusCode> = attempts(&local, 6).await;
    assert_eq!(
        statuses,
        [
            [StatusCode::UNAUTHORIZED; 3],
            [StatusCode::TOO_MANY_REQUESTS; 3]
        ]
        .concat()
    );
    let stats = &local_limits.stats()[0];
    assert_eq!((stats.mode, stats.local, stats.limited), ("local", 6, 3));
}

/// `n` login attempts one after the other, their statuses.
async fn attempts(router: &Router, n: usize) -> Vec<StatusCode> {
    let mut statuses = Vec::with_capacity(n);
    for _ in 0..n {
        statuses.push(login(router, "x@example.com", "x", &[]).await.status);
    }
    statuses
}

#[tokio::test]
async fn bad_settings_name_their_variable() {
    let cache = cache_runtime::Cache::builder().build().await.unwrap();
    for (name, value) in [
        ("LOGIN_RATE_LIMIT", "5 per minute"),
        ("LOGIN_RATE_LIMIT", "5/60s burst 2"),
        ("LOGIN_RATE_LIMIT", "0/60s"),
        ("API_RATE_LIMIT", "100/10"),
        ("API_RATE_LIMIT", "100/10s burst 0"),
        ("TRUSTED_PROXIES", "10.0.0.0/8, proxy.internal"),
        ("TRUSTED_PROXIES", "10.0.0.0/33"),
        ("RATE_LIMIT_ON_FAILURE", "maybe"),
    ] {
        let e = RateLimits::from_lookup(|n| (n == name).then(|| value.to_owned()), &cache)
            .expect_err(value);
        let text = e.to_string();
        assert!(text.contains(name) && text.contains(value), "{text}");
    }
    let off = RateLimits::from_lookup(|n| (n == "LOGIN_RATE_LIMIT").then(|| "off".into()), &cache);
    assert!(off.unwrap().login.is_none());
    let both = RateLimits::from_lookup(
        |n| (n == "API_RATE_LIMIT").then(|| "100/10s burst 20".into()),
        &cache,
    )
    .unwrap();
    assert_eq!(both.api.unwrap().policy().capacity(), 20);
    // The memory-only cache: limits in process.
    assert_eq!(both.login.unwrap().mode(), "memory");
}

#[tokio::test]
async fn openapi_documents_the_limits() {
    let app = TestApp::new(Db::Sqlite, Kind::Memory).await;
    let doc = common::send(&app.router, Method::GET, "/openapi.json", None)
        .await
        .body;
    let mut operations = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let limited = &operation["responses"]["429"];
            assert!(
                limited["headers"]["Retry-After"].is_object(),
                "{method} {path}"
            );
            assert!(
                limited["headers"]["RateLimit"].is_object(),
                "{method} {path}"
            );
            operations += 1;
        }
    }
    assert!(operations > 20, "{operations}");
    let login = &doc["paths"]["/auth/login"]["post"]["responses"];
    assert!(
        login["200"]["headers"]["RateLimit-Policy"].is_object(),
        "{login}"
    );
    let text = login["429"]["description"].as_str().unwrap();
    assert!(text.contains("LOGIN_RATE_LIMIT"), "{text}");
}

#[tokio::test]
async fn retry_after_is_honest() {
    // A client that waits `Retry-After` gets through; one that comes back at half is refused.
    let app = TestApp::new(Db::Sqlite, Kind::Redis).await;
    let (_, router) = limited(&app, &[("LOGIN_RATE_LIMIT", "2/3s")], [203, 0, 113, 1]);
    assert_eq!(attempts(&router, 2).await, [StatusCode::UNAUTHORIZED; 2]);
    let r = login(&router, "x@example.com", "x", &[]).await;
    let refused = Instant::now();
    assert_limited(&r, "login", 3);
    let retry = Duration::from_secs(header(&r, "retry-after").parse().unwrap());
    tokio::time::sleep(retry / 2).await;
    assert_limited(&login(&router, "x@example.com", "x", &[]).await, "login", 3);
    tokio::time::sleep(retry.saturating_sub(refused.elapsed())).await;
    assert_eq!(attempts(&router, 1).await, [StatusCode::UNAUTHORIZED]);
}
