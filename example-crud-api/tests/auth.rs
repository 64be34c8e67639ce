//! Accounts, sessions and tokens through the real router (API.md, "Accounts, sessions and
//! tokens"), on a real Redis, a Redis Cluster and in process. Every secret a test sees (session
//! ids, tokens, passwords) is recorded, and each test ends by checking that none of them
//! appears in the `tracing` output captured from every test of this binary, at TRACE level.

mod common;

use std::io::Write;
use std::sync::{Mutex, Once};
use std::time::Duration;

use axum::http::{Method, StatusCode};
use common::{Db, Kind, Resp, TestApp};
use serde_json::{Value, json};

const PASSWORD: &str = "correct horse battery";

/// Everything logged by any test of this binary, and every secret seen so far.
static LOG: Mutex<Vec<u8>> = Mutex::new(Vec::new());
static SECRETS: Mutex<Vec<String>> = Mutex::new(Vec::new());

#[derive(Clone)]
struct Capture;

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOG.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn capture_logs() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(|| Capture)
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("one subscriber");
    });
}

fn secret(s: &str) -> String {
    SECRETS.lock().unwrap().push(s.to_owned());
    s.to_owned()
}

/// No recorded secret in the captured output.
fn assert_no_secret_logged() {
    let log = String::from_utf8_lossy(&LOG.lock().unwrap()).into_owned();
    assert!(
        !log.is_empty(),
        "nothing was captured: the check would pass vacuously"
    );
    for s in SECRETS.lock().unwrap().iter() {
        assert!(!log.contains(s.as_str()), "a secret was logged: {s}");
    }
}

async fn app(kind: Kind) -> TestApp {
    capture_logs();
    secret(PASSWORD);
    TestApp::new(Db::Sqlite, kind).await
}

/// A user with [`PASSWORD`]; returns its id.
async fn account(app: &TestApp, email: &str) -> i64 {
    let r = app
        .post(
            "/users",
            json!({"name": "Ada", "email": email, "password": PASSWORD}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert!(r.body.get("password").is_none() && r.body.get("password_hash").is_none());
    common::id(&r.body)
}

async fn login_with(app: &TestApp, email: &str, password: &str, headers: &[(&str, &str)]) -> Resp {
    let body = json!({"email": email, "password": password});
    app.request_with(Method::POST, "/auth/login", Some(body), headers)
        .await
}

/// Logs in and returns the new session id (asserting the cookie's attributes).
async fn login(app: &TestApp, email: &str) -> String {
    let r = login_with(app, email, PASSWORD, &[]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let id = secret(r.body["session_id"].as_str().expect("session_id"));
    assert_eq!(id.len(), 64);
    let cookie = r.headers["set-cookie"].to_str().unwrap();
    assert!(
        cookie.starts_with(&format!("session_id={id}; ")),
        "{cookie}"
    );
    for attribute in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    assert!(!cookie.contains("Secure"), "not configured: {cookie}");
    id
}

async fn token(app: &TestApp, email: &str) -> String {
    let r = app
        .post("/auth/token", json!({"email": email, "password": PASSWORD}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["token_type"], "Bearer");
    assert!(r.body["expires_in"].as_u64() > Some(0));
    secret(r.body["access_token"].as_str().unwrap())
}

fn cookie(id: &str) -> (&'static str, String) {
    ("cookie", format!("session_id={id}"))
}

async fn as_(app: &TestApp, method: Method, path: &str, header: (&str, String)) -> Resp {
    app.request_with(method, path, None, &[(header.0, &header.1)])
        .await
}

async fn info(app: &TestApp, header: (&str, String)) -> Resp {
    as_(app, Method::GET, "/cache/session/info", header).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_then_every_credential_form_works() {
    let app = app(Kind::Redis).await;
    let user = account(&app, "ada@example.com").await;
    let id = login(&app, "ada@example.com").await;
    for header in [
        cookie(&id),
        ("cookie", format!("theme=dark; session_id={id}; lang=en")),
        ("authorization", format!("Session {id}")),
        ("x-session-id", id.clone()),
    ] {
        let r = info(&app, header.clone()).await;
        assert_eq!(r.status, StatusCode::OK, "{header:?}: {}", r.text);
        assert_eq!(r.body["authentication_method"], "Session");
        assert_eq!(r.body["session_active"], true);
        assert_eq!(r.body["user_id"], user.to_string());
        assert_eq!(r.body["role"], "user");
    }
    // Redis holds the session under a hash of the id.
    let keys: Vec<String> = app.redis().query(&["KEYS", "session:*"]);
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert!(keys.iter().all(|k| !k.contains(&id)));
    assert_no_secret_logged();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_logins_are_one_401_and_bad_bodies_422() {
    let app = app(Kind::Memory).await;
    account(&app, "ada@example.com").await;
    let wrong = login_with(&app, "ada@example.com", "wrong password", &[]).await;
    let unknown = login_with(&app, "nobody@example.com", PASSWORD, &[]).await;
    for r in [&wrong, &unknown] {
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
        assert_eq!(r.error(), "invalid email or password");
        assert!(r.headers.get("set-cookie").is_none());
    }
    let r = app
        .post("/auth/login", json!({"email": "ada@example.com"}))
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    let r = app
        .post(
            "/users",
            json!({"name": "B", "email": "b@x", "password": "short"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.error().contains("password"), "{}", r.error());
    assert_no_secret_logged();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_rotates_and_never_adopts_a_client_id() {
    let app = app(Kind::Redis).await;
    account(&app, "ada@example.com").await;
    let first = login(&app, "ada@example.com").await;
    // Logging in again with the old cookie: a new id, and the old one is dead.
    let r = login_with(
        &app,
        "ada@example.com",
        PASSWORD,
        &[("cookie", &format!("session_id={first}"))],
    )
    .await;
    let second = secret(r.body["session_id"].as_str().unwrap());
    assert_ne!(second, first);
    assert_eq!(
        info(&app, cookie(&first)).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(info(&app, cookie(&second)).await.status, StatusCode::OK);
    // An id the client made up is neither adopted nor created.
    let chosen = "ab".repeat(32);
    let r = login_with(
        &app,
        "ada@example.com",
        PASSWORD,
        &[("x-session-id", &chosen)],
    )
    .await;
    assert_ne!(secret(r.body["session_id"].as_str().unwrap()), chosen);
    assert_eq!(
        info(&app, ("x-session-id", chosen)).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_no_secret_logged();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_ends_the_session_and_clears_the_cookie() {
    let app = app(Kind::Memory).await;
    account(&app, "ada@example.com").await;
    for (method, path) in [
        (Method::POST, "/auth/logout"),
        (Method::DELETE, "/cache/session"),
    ] {
        let id = login(&app, "ada@example.com").await;
        let r = as_(&app, method.clone(), path, cookie(&id)).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{path}: {}", r.text);
        let cleared = r.headers["set-cookie"].to_str().unwrap();
        assert!(
            cleared.starts_with("session_id=; ") && cleared.contains("Max-Age=0"),
            "{cleared}"
        );
        assert_eq!(
            info(&app, cookie(&id)).await.status,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            as_(&app, method, path, cookie(&id)).await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_no_secret_logged();
}

async fn logout_all_ends_fifty_sessions(kind: Kind) {
    let app = app(kind).await;
    account(&app, "ada@example.com").await;
    account(&app, "bob@example.com").await;
    let bob = login(&app, "bob@example.com").await;
    let mut credentials = Vec::new();
    for i in 0..50 {
        let id = login(&app, "ada@example.com").await;
        credentials.push(match i % 3 {
            0 => cookie(&id),
            1 => ("authorization", format!("Session {id}")),
            _ => ("x-session-id", id),
        });
    }
    let r = as_(&app, Method::GET, "/auth/sessions", credentials[7].clone()).await;
    let list = r.body.as_array().expect("a list");
    assert_eq!(list.len(), 50);
    assert_eq!(list.iter().filter(|s| s["current"] == true).count(), 1);
    assert!(
        !r.text.contains(&credentials[7].1.replace("Session ", "")),
        "an id in the list"
    );
    let r = as_(
        &app,
        Method::POST,
        "/auth/logout-all",
        credentials[10].clone(),
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    for credential in credentials {
        assert_eq!(
            info(&app, credential.clone()).await.status,
            StatusCode::UNAUTHORIZED,
            "{credential:?}"
        );
    }
    assert_eq!(
        info(&app, cookie(&bob)).await.status,
        StatusCode::OK,
        "another user's session ended"
    );
    assert_no_secret_logged();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_all_ends_fifty_sessions_on_redis() {
    logout_all_ends_fifty_sessions(Kind::Redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_all_ends_fifty_sessions_on_a_cluster() {
    logout_all_ends_fifty_sessions(Kind::Cluster).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_all_ends_fifty_sessions_in_process() {
    logout_all_ends_fifty_sessions(Kind::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicting_credentials_are_400() {
    let app = app(Kind::Memory).await;
    account(&app, "ada@example.com").await;
    let a = login(&app, "ada@example.com").await;
    let b = login(&app, "ada@example.com").await;
    let jwt = token(&app, "ada@example.com").await;
    let bearer = format!("Bearer {jwt}");
    let session_cookie = format!("session_id={a}");
    let conflicts: [&[(&str, &str)]; 3] = [
        &[("cookie", &session_cookie), ("x-session-id", &b)],
        &[("cookie", &session_cookie), ("authorization", &bearer)],
        &[("x-session-id", &a), ("authorization", &bearer)],
    ];
    for headers in conflicts {
        let r = app
            .request_with(Method::GET, "/cache/session/info", None, headers)
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{headers:?}");
        assert!(r.error().contains("conflicting"), "{}", r.error());
    }
    // The same id twice is one credential.
    let r = app
        .request_with(
            Method::GET,
            "/cache/session/info",
            None,
            &[("cookie", &session_cookie), ("x-session-id", &a)],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_no_secret_logged();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_authenticate_and_forgeries_do_not() {
    let app = app(Kind::Memory).await;
    let user = account(&app, "ada@example.com").await;
    let jwt = token(&app, "ada@example.com").await;
    let r = info(&app, ("authorization", format!("Bearer {jwt}"))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["authentication_method"], "JWT");
    assert_eq!(r.body["session_active"], false);
    assert_eq!(r.body["user_id"], user.to_string());
    // A token cannot store session data, nor log out a session.
    let r = app
        .request_with(
            Method::POST,
            "/cache/session/update",
            Some(json!({"a": 1})),
            &[("authorization", &format!("Bearer {jwt}"))],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    // Tampered, re-signed with another key, or not a token at all.
    let mut tampered = jwt.clone();
    tampered.pop();
    let other = example_crud_api::random_jwt()
        .issue(&user.to_string(), "Ada", "admin")
        .unwrap()
        .0;
    for bad in [tampered, secret(&other), "x.y.z".to_owned()] {
        let r = info(&app, ("authorization", format!("Bearer {bad}"))).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{bad}");
    }
    assert_eq!(
        app.get("/cache/session/info").await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_no_secret_logged();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_data_merges_and_is_bounded() {
    let app = app(Kind::Redis).await;
    account(&app, "ada@example.com").await;
    let id = login(&app, "ada@example.com").await;
    let update = |body: Value| {
        let app = &app;
        let id = id.clone();
        async move {
            app.request_with(
                Method::POST,
                "/cache/session/update",
                Some(body),
                &[("x-session-id", &id)],
            )
            .await
        }
    };
    assert_eq!(
        update(json!({"theme": "dark", "n": 1})).await.status,
        StatusCode::OK
    );
    let r = update(json!({"n": null, "lang": "en"})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        r.body["session_data"],
        json!({"theme": "dark", "lang": "en"})
    );
    assert_eq!(
        info(&app, cookie(&id)).await.body["session_data"],
        r.body["session_data"]
    );
    for bad in [
        json!([1, 2]),
        json!("text"),
        json!({"big": "x".repeat(5000)}),
    ] {
        assert_eq!(update(bad).await.status, StatusCode::UNPROCESSABLE_ENTITY);
    }
    assert_no_secret_logged();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_administration_needs_an_admin() {
    let app = app(Kind::Redis).await;
    let seeded = cache_runtime::scope(
        app.state.cache.clone(),
        example_crud_api::seed::seed(&app.state.db, 2, "admin-password"),
    )
    .await
    .unwrap();
    assert_eq!(seeded, 3);
    secret("admin-password");
    let user = login_with(&app, "user1@example.com", "password", &[]).await;
    assert_eq!(user.status, StatusCode::OK, "{}", user.text);
    let user = secret(user.body["session_id"].as_str().unwrap());
    let admin = login_with(&app, "admin@example.com", "admin-password", &[]).await;
    assert_eq!(admin.body["user"]["role"], "admin", "{}", admin.text);
    let admin = secret(admin.body["session_id"].as_str().unwrap());
    for (method, path) in [
        (Method::GET, "/cache/stats"),
        (Method::POST, "/cache/invalidate/user/1"),
    ] {
        assert_eq!(
            app.request(method.clone(), path, None).await.status,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            as_(&app, method.clone(), path, cookie(&user)).await.status,
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            as_(&app, method, path, cookie(&admin)).await.status,
            StatusCode::OK,
            "{path}"
        );
    }
    let stats = as_(&app, Method::GET, "/cache/stats", cookie(&admin))
        .await
        .body;
    assert_eq!(stats["sessions"]["backend"], "redis");
    assert_eq!(stats["sessions"]["active"], 2);
    // Clearing sessions logs everyone out.
    let clear = |who: &str| {
        let who = who.to_owned();
        let app = &app;
        async move {
            app.request_with(
                Method::POST,
                "/cache/clear",
                Some(json!({"cache_type": "sessions"})),
                &[("cookie", &format!("session_id={who}"))],
            )
            .await
        }
    };
    assert_eq!(clear(&user).await.status, StatusCode::FORBIDDEN);
    let r = clear(&admin).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body, json!({"cleared": "sessions"}));
    assert_eq!(
        info(&app, cookie(&user)).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        info(&app, cookie(&admin)).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_no_secret_logged();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_change_or_deletion_ends_the_users_sessions() {
    let app = app(Kind::Redis).await;
    let ada = account(&app, "ada@example.com").await;
    let before = login(&app, "ada@example.com").await;
    let r = app
        .put(
            &format!("/users/{ada}"),
            json!({"password": secret("a new password")}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        info(&app, cookie(&before)).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        login_with(&app, "ada@example.com", PASSWORD, &[])
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    let r = login_with(&app, "ada@example.com", "a new password", &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    let after = secret(r.body["session_id"].as_str().unwrap());
    // A change of anything else keeps the sessions.
    assert_eq!(
        app.put(&format!("/users/{ada}"), json!({"name": "Ada L."}))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(info(&app, cookie(&after)).await.status, StatusCode::OK);
    assert_eq!(
        app.delete(&format!("/users/{ada}")).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        info(&app, cookie(&after)).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_no_secret_logged();
}

/// Redis enabled but down: session routes answer 503 with `Retry-After` (never 200 as
/// someone else or anonymous), token routes keep answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_is_503_for_sessions_while_tokens_work() {
    let mut app = app(Kind::Redis).await;
    account(&app, "ada@example.com").await;
    let id = login(&app, "ada@example.com").await;
    let jwt = token(&app, "ada@example.com").await;
    app.redis_mut().kill();
    for _ in 0..3 {
        let r = info(&app, cookie(&id)).await;
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text);
        assert!(
            r.headers["retry-after"]
                .to_str()
                .unwrap()
                .parse::<u64>()
                .unwrap()
                >= 1
        );
        assert!(r.error().contains("unavailable"));
        let r = login_with(&app, "ada@example.com", PASSWORD, &[]).await;
        assert_eq!(
            r.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "a login without a session: {}",
            r.text
        );
        let r = info(&app, ("authorization", format!("Bearer {jwt}"))).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    }
    // The JWT-authenticated session list needs the store: 503 too, not an empty list.
    let r = as_(
        &app,
        Method::GET,
        "/auth/sessions",
        ("authorization", format!("Bearer {jwt}")),
    )
    .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_no_secret_logged();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_expire_idle() {
    capture_logs();
    let mut app = TestApp::new(Db::Sqlite, Kind::Redis).await;
    let mut config = cache_runtime::session::SessionConfig::default();
    config.idle_ttl = Duration::from_millis(800);
    let sessions = cache_runtime::session::SessionStore::for_cache(&app.state.cache, config);
    let auth = app.state.auth.clone();
    let auth = cache_runtime::axum::auth::Auth::new(sessions).with_jwt(auth.jwt().unwrap().clone());
    app.state = app.state.clone().with_auth(auth);
    app.router = example_crud_api::app(app.state.clone());
    account(&app, "ada@example.com").await;
    let id = login(&app, "ada@example.com").await;
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(info(&app, cookie(&id)).await.status, StatusCode::OK, "slid");
    }
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    assert_eq!(
        info(&app, cookie(&id)).await.status,
        StatusCode::UNAUTHORIZED,
        "idle"
    );
    assert_no_secret_logged();
}
