//! Passwords: argon2id hashes with random salts, verified off the async workers; stored only as
//! a hash and never answered; validated (8 to 128 characters); logins read from the database;
//! the seed's demo users and admin; `update_user` reporting a password change; migration 2 on a
//! database whose `users` has the columns already.

mod common;

use std::future::Future;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use cache_runtime::Cache;
use common::{Db, Kind, TestApp};
use example_crud_api::connect_db;
use example_crud_api::entities::user;
use example_crud_api::seed::{ADMIN_EMAIL, DEMO_PASSWORD, seed};
use example_crud_api::service::accounts::{authenticate, hash_password, verify_password};
use example_crud_api::service::users::{NewUser, UserPatch, update_user};
use sea_orm::{
    ColumnTrait, ConnectionTrait, Database, DatabaseConnection, EntityTrait, PaginatorTrait,
    QueryFilter,
};
use serde_json::{Value, json};

/// Runs `f` with `cache` as the cache of the annotated service functions (as a request would).
async fn scoped<F: Future>(cache: &Cache, f: F) -> F::Output {
    cache_runtime::scope(cache.clone(), f).await
}

/// The row of `email`, read from the database.
async fn row(db: &DatabaseConnection, email: &str) -> user::Model {
    user::Entity::find()
        .filter(user::Column::Email.eq(email))
        .one(db)
        .await
        .expect("query")
        .unwrap_or_else(|| panic!("no user {email}"))
}

/// Asserts that a response says nothing about passwords.
fn assert_no_password(what: &str, text: &str) {
    for needle in ["password", "$argon2"] {
        assert!(!text.contains(needle), "{what} mentions {needle}: {text}");
    }
}

#[tokio::test]
async fn hashes_are_salted_argon2id_and_verify() {
    let a = hash_password("correct horse battery".into()).await.unwrap();
    let b = hash_password("correct horse battery".into()).await.unwrap();
    assert!(a.starts_with("$argon2id$v=19$"), "{a}");
    assert!(b.starts_with("$argon2id$"), "{b}");
    assert_ne!(a, b, "two hashes of one password must differ (salt)");
    assert!(verify_password(Some(a.clone()), "correct horse battery".into()).await);
    assert!(verify_password(Some(b), "correct horse battery".into()).await);
    assert!(!verify_password(Some(a.clone()), "correct horse batterz".into()).await);
    assert!(!verify_password(Some(a), String::new()).await);
    assert!(!verify_password(None, "correct horse battery".into()).await);
    assert!(!verify_password(Some("not a PHC string".into()), "x".into()).await);
}

/// An unknown email costs one argon2 verification too (against the dummy hash), not a lookup
/// only: the two failures cannot be told apart by their time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_users_take_as_long_as_wrong_passwords() {
    let hash = hash_password("the right password".into()).await.unwrap();
    // The dummy hash is computed on first use: not part of the measurement.
    assert!(!verify_password(None, "warm up".into()).await);
    let mut wrong = Duration::MAX;
    let mut unknown = Duration::MAX;
    for _ in 0..3 {
        let started = Instant::now();
        assert!(!verify_password(Some(hash.clone()), "a wrong password".into()).await);
        wrong = wrong.min(started.elapsed());
        let started = Instant::now();
        assert!(!verify_password(None, "a wrong password".into()).await);
        unknown = unknown.min(started.elapsed());
        let started = Instant::now();
        assert!(!verify_password(Some("garbage".into()), "a wrong password".into()).await);
        unknown = unknown.min(started.elapsed());
    }
    eprintln!("wrong password: {wrong:?}, unknown user: {unknown:?}");
    assert!(
        unknown * 4 >= wrong,
        "an unknown user is much faster ({unknown:?}) than a wrong password ({wrong:?})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_is_stored_as_a_hash_and_never_answered() {
    let app = TestApp::new(Db::Sqlite, Kind::Memory).await;
    let r = app
        .post(
            "/users",
            json!({"name": "Ada", "email": "ada@example.com", "password": "lovelace-1843"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_no_password("POST /users", &r.text);
    assert_eq!(r.body["role"], "user");
    let id = common::id(&r.body);

    let stored = row(&app.state.db, "ada@example.com").await;
    let hash = stored
        .password_hash
        .clone()
        .expect("a hash in the database");
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    assert!(!hash.contains("lovelace-1843"));
    assert!(verify_password(Some(hash.clone()), "lovelace-1843".into()).await);

    // Every read, twice (the second from the cache).
    for _ in 0..2 {
        for path in [format!("/users/{id}"), "/users".to_owned()] {
            let r = app.get(&path).await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.text);
            assert_no_password(&path, &r.text);
        }
        for path in ["/users/filter", "/users/filter-paginated"] {
            let r = app.post(path, json!({})).await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.text);
            assert_no_password(path, &r.text);
        }
    }

    // A new password: a new hash, the old password no longer verifies.
    let r = app
        .put(
            &format!("/users/{id}"),
            json!({"password": "analytical-engine"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_no_password("PUT /users/{id}", &r.text);
    let new_hash = row(&app.state.db, "ada@example.com")
        .await
        .password_hash
        .expect("a hash");
    assert_ne!(new_hash, hash);
    assert!(verify_password(Some(new_hash.clone()), "analytical-engine".into()).await);
    assert!(!verify_password(Some(new_hash.clone()), "lovelace-1843".into()).await);

    // A change of another field keeps the hash.
    let r = app.put(&format!("/users/{id}"), json!({"age": 36})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        row(&app.state.db, "ada@example.com").await.password_hash,
        Some(new_hash)
    );

    // Without a password: no hash.
    let r = app
        .post(
            "/users",
            json!({"name": "Alan", "email": "alan@example.com"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(
        row(&app.state.db, "alan@example.com").await.password_hash,
        None
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_passwords_are_422_naming_password() {
    let app = TestApp::new(Db::Sqlite, Kind::Memory).await;
    for password in [json!("short"), json!("1234567"), json!("x".repeat(129))] {
        let r = app
            .post(
                "/users",
                json!({"name": "Ada", "email": "ada@example.com", "password": password}),
            )
            .await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
        assert!(r.error().contains("password"), "{}", r.text);
    }
    // Several problems at once: all named.
    let r = app
        .post(
            "/users",
            json!({"name": "", "email": "ada@example.com", "password": "short"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert!(r.error().contains("`name`"), "{}", r.text);
    assert!(r.error().contains("`password`"), "{}", r.text);
    assert_eq!(
        user::Entity::find().count(&app.state.db).await.unwrap(),
        0,
        "nothing stored"
    );

    // Multi-byte characters count as one each: 8 of them is long enough.
    let r = app
        .post(
            "/users",
            json!({"name": "Ada", "email": "ada@example.com", "password": "éééééééé"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let id = common::id(&r.body);
    let before = row(&app.state.db, "ada@example.com").await.password_hash;
    assert!(verify_password(before.clone(), "éééééééé".into()).await);

    for body in [
        json!({"password": "short"}),
        json!({"password": "x".repeat(129)}),
        json!({"password": null}),
        json!({"password": 12_345_678}),
    ] {
        let r = app.put(&format!("/users/{id}"), body.clone()).await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}: {}",
            r.text
        );
        assert!(r.error().contains("password"), "{body}: {}", r.text);
    }
    // `role` is not a field of either body.
    let r = app
        .put(&format!("/users/{id}"), json!({"role": "admin"}))
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    let stored = row(&app.state.db, "ada@example.com").await;
    assert_eq!(stored.password_hash, before, "unchanged");
    assert_eq!(stored.role, "user");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_user_reports_a_password_change() {
    let app = TestApp::new(Db::Sqlite, Kind::Memory).await;
    let id = common::id(&app.user("Ada", "ada@example.com", None).await);
    let id = i32::try_from(id).unwrap();
    let db = &app.state.db;
    let cache = &app.state.cache;

    let patch = UserPatch {
        name: Some("Ada L.".into()),
        ..UserPatch::default()
    };
    let updated = scoped(cache, update_user(db, id, patch)).await.unwrap();
    assert!(!updated.password_changed);
    assert!(!updated.password_changed());
    assert_eq!(updated.user.name, "Ada L.");
    assert_eq!(updated.user.password_hash, None);

    let patch = UserPatch {
        password: Some("a new password".into()),
        ..UserPatch::default()
    };
    let updated = scoped(cache, update_user(db, id, patch)).await.unwrap();
    assert!(updated.password_changed);
    assert!(verify_password(updated.user.password_hash.clone(), "a new password".into()).await);
    assert_eq!(updated.user.name, "Ada L.");

    // Setting the same password again is a change too (a new salt; sessions end).
    let patch = UserPatch {
        password: Some("a new password".into()),
        ..UserPatch::default()
    };
    let again = scoped(cache, update_user(db, id, patch)).await.unwrap();
    assert!(again.password_changed);
    assert_ne!(again.user.password_hash, updated.user.password_hash);

    // An empty patch changes nothing.
    let same = scoped(cache, update_user(db, id, UserPatch::default()))
        .await
        .unwrap();
    assert!(!same.password_changed);
    assert_eq!(same.user, again.user);

    // Errors store nothing.
    let patch = UserPatch {
        password: Some("another password".into()),
        ..UserPatch::default()
    };
    let missing = scoped(cache, update_user(db, id + 100, patch)).await;
    assert!(missing.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authenticate_reads_the_database_and_refuses_inactive_users() {
    let app = TestApp::new(Db::Sqlite, Kind::Memory).await;
    let db = &app.state.db;
    let app_ref = &app;
    let create = |email: &'static str, active: bool, password: Option<&'static str>| {
        let body = json!({"name": "U", "email": email, "is_active": active, "password": password});
        async move {
            let r = app_ref.post("/users", body).await;
            assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
            common::id(&r.body)
        }
    };
    let ada = create("ada@example.com", true, Some("ada's password")).await;
    create("off@example.com", false, Some("off's password")).await;
    create("nopw@example.com", true, None).await;

    let found = authenticate(db, "ada@example.com", "ada's password".into())
        .await
        .unwrap()
        .expect("the right password");
    assert_eq!(i64::from(found.id), ada);
    assert_eq!(found.role, "user");
    // Surrounding whitespace of the email is ignored, as when the user was created.
    assert!(
        authenticate(db, " ada@example.com ", "ada's password".into())
            .await
            .unwrap()
            .is_some()
    );
    for (email, password) in [
        ("ada@example.com", "a wrong password"),
        ("ada@example.com", ""),
        ("nobody@example.com", "ada's password"),
        ("off@example.com", "off's password"),
        ("nopw@example.com", ""),
        ("nopw@example.com", "anything at all"),
    ] {
        let r = authenticate(db, email, password.into()).await.unwrap();
        assert!(r.is_none(), "{email} / {password:?} logged in");
    }

    // The user's GET is cached now; a password change goes straight to the database and
    // authenticate sees it at once.
    assert_eq!(
        app.get(&format!("/users/{ada}")).await.status,
        StatusCode::OK
    );
    let r = app
        .put(
            &format!("/users/{ada}"),
            json!({"password": "changed password"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(
        authenticate(db, "ada@example.com", "ada's password".into())
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        authenticate(db, "ada@example.com", "changed password".into())
            .await
            .unwrap()
            .is_some()
    );
    // Deactivated: refused with the right password.
    let r = app
        .put(&format!("/users/{ada}"), json!({"is_active": false}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(
        authenticate(db, "ada@example.com", "changed password".into())
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_gives_passwords_and_an_admin() {
    let app = TestApp::new(Db::Sqlite, Kind::Memory).await;
    let db = &app.state.db;
    let cache = &app.state.cache;
    let inserted = scoped(cache, seed(db, 5, "the admin's password"))
        .await
        .unwrap();
    assert_eq!(inserted, 6, "5 demo users and the admin");

    let demo: Vec<user::Model> = user::Entity::find()
        .filter(user::Column::Role.eq("user"))
        .all(db)
        .await
        .unwrap();
    assert_eq!(demo.len(), 5);
    for (i, u) in (1..).zip(&demo) {
        assert_eq!(u.id, i, "user{i} has id {i}");
        assert_eq!(u.email, format!("user{i}@example.com"));
        let hash = u.password_hash.as_deref().expect("a hash");
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert_eq!(
            u.password_hash, demo[0].password_hash,
            "one hash for every demo user"
        );
    }
    for u in &demo {
        let found = authenticate(db, &u.email, DEMO_PASSWORD.into())
            .await
            .unwrap();
        assert_eq!(found.is_some(), u.is_active, "{}", u.email);
    }

    let admin = row(db, ADMIN_EMAIL).await;
    assert_eq!(admin.role, "admin");
    assert_eq!(admin.name, "Admin");
    assert!(admin.is_active);
    assert_ne!(admin.password_hash, demo[0].password_hash);
    let found = authenticate(db, ADMIN_EMAIL, "the admin's password".into())
        .await
        .unwrap()
        .expect("the admin logs in");
    assert_eq!(found.role, "admin");
    assert!(
        authenticate(db, ADMIN_EMAIL, DEMO_PASSWORD.into())
            .await
            .unwrap()
            .is_none()
    );
    // Over HTTP: the role is answered, the hash is not.
    let r = app.get(&format!("/users/{}", admin.id)).await;
    assert_eq!(r.body["role"], "admin", "{}", r.text);
    assert_no_password("GET the admin", &r.text);

    // Seeded already: nothing more.
    assert_eq!(
        scoped(cache, seed(db, 5, "the admin's password"))
            .await
            .unwrap(),
        0
    );
    assert_eq!(user::Entity::find().count(db).await.unwrap(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_adds_a_missing_admin_and_never_promotes_an_account() {
    // Users but no admin (a database from before accounts): the admin alone is added.
    let app = TestApp::new(Db::Sqlite, Kind::Memory).await;
    let (db, cache) = (&app.state.db, &app.state.cache);
    app.user("Ada", "ada@example.com", None).await;
    assert_eq!(
        scoped(cache, seed(db, 10, "admin-password")).await.unwrap(),
        1
    );
    assert_eq!(user::Entity::find().count(db).await.unwrap(), 2);
    let admin = row(db, ADMIN_EMAIL).await;
    assert_eq!(admin.role, "admin");
    assert!(verify_password(admin.password_hash, "admin-password".into()).await);
    // The users list (cached before) shows it at once.
    let r = app.get("/users").await;
    assert_eq!(common::ids(&r.body).len(), 2, "{}", r.text);
    assert_eq!(
        scoped(cache, seed(db, 10, "admin-password")).await.unwrap(),
        0
    );

    // Someone registered the admin's email through the API: it stays an ordinary user.
    let app = TestApp::new(Db::Sqlite, Kind::Memory).await;
    let (db, cache) = (&app.state.db, &app.state.cache);
    let r = app
        .post(
            "/users",
            json!({"name": "Mallory", "email": ADMIN_EMAIL, "password": "mallory's password"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(
        scoped(cache, seed(db, 10, "admin-password")).await.unwrap(),
        0
    );
    let account = row(db, ADMIN_EMAIL).await;
    assert_eq!(account.role, "user");
    assert!(
        authenticate(db, ADMIN_EMAIL, "admin-password".into())
            .await
            .unwrap()
            .is_none()
    );

    // An admin password the API would refuse is refused by the seed, naming the variable.
    let app = TestApp::new(Db::Sqlite, Kind::Memory).await;
    let err = scoped(&app.state.cache, seed(&app.state.db, 3, "short"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("ADMIN_PASSWORD"), "{err}");
    assert_eq!(user::Entity::find().count(&app.state.db).await.unwrap(), 0);
}

/// 10,000 users with one hash: seconds, not the minutes 10,000 argon2 hashes would take.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeding_ten_thousand_users_is_fast() {
    let db = connect_db("sqlite::memory:")
        .await
        .expect("in-memory SQLite");
    let cache = Cache::builder().build().await.expect("cache");
    let started = Instant::now();
    let inserted = scoped(&cache, seed(&db, 10_000, "admin-password"))
        .await
        .unwrap();
    let elapsed = started.elapsed();
    eprintln!("seeded 10,000 users (30,000 tasks) on in-memory SQLite in {elapsed:?}");
    assert_eq!(inserted, 10_001);
    assert_eq!(user::Entity::find().count(&db).await.unwrap(), 10_001);
    let last = row(&db, "user10000@example.com").await;
    assert_eq!(last.id, 10_000);
    assert!(
        authenticate(&db, "user9999@example.com", DEMO_PASSWORD.into())
            .await
            .unwrap()
            .is_some()
    );
}

/// The bodies never show a password: not serialized, not in `Debug`.
#[test]
fn bodies_neither_serialize_nor_debug_a_password() {
    let new = NewUser {
        name: "Ada".into(),
        email: "ada@example.com".into(),
        age: None,
        is_active: true,
        password: Some("s3cret-pa55".into()),
    };
    let patch = UserPatch {
        password: Some("s3cret-pa55".into()),
        ..UserPatch::default()
    };
    for text in [
        serde_json::to_string(&new).unwrap(),
        serde_json::to_string(&patch).unwrap(),
        format!("{new:?}"),
        format!("{patch:?}"),
    ] {
        assert!(!text.contains("s3cret"), "{text}");
    }
    assert!(format!("{patch:?}").contains("<redacted>"));
    let parsed: NewUser =
        serde_json::from_value(json!({"name": "A", "email": "a@b", "password": "s3cret-pa55"}))
            .unwrap();
    assert_eq!(parsed.password.as_deref(), Some("s3cret-pa55"));
}

#[tokio::test]
async fn the_openapi_document_shows_the_role_and_hides_the_hash() {
    let doc: Value = serde_json::to_value(example_crud_api::openapi()).unwrap();
    let schemas = &doc["components"]["schemas"];
    let user = &schemas["User"];
    assert!(user["properties"]["password_hash"].is_null(), "{user}");
    assert!(user["properties"]["password"].is_null(), "{user}");
    let role = &user["properties"]["role"];
    assert_eq!(role["enum"], json!(["user", "admin"]), "{role}");
    let required = user["required"].as_array().expect("required");
    assert!(required.contains(&json!("role")), "{user}");
    assert!(!required.contains(&json!("password_hash")), "{user}");
    for body in ["NewUser", "UserPatch"] {
        let password = &schemas[body]["properties"]["password"];
        assert_eq!(password["writeOnly"], true, "{body}: {password}");
        assert_eq!(password["minLength"], 8, "{body}: {password}");
        assert_eq!(password["maxLength"], 128, "{body}: {password}");
        assert!(schemas[body]["properties"]["role"].is_null(), "{body}");
        let required = schemas[body]["required"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert!(!required.contains(&json!("password")), "{body}");
    }
    let text = doc.to_string();
    assert!(
        !text.contains("password_hash"),
        "the hash is in the document"
    );
}

/// Migration 2 adds only the columns that are missing: a version-1 database whose `users`
/// table already has `role` (made by a development build) is upgraded all the same.
#[tokio::test]
async fn migration_2_skips_columns_that_exist() {
    let (url, _guard) = common::DbGuard::create(Db::Sqlite).await;
    let old = Database::connect(&url).await.expect("sqlite");
    for statement in [
        "CREATE TABLE schema_migrations (version bigint NOT NULL PRIMARY KEY, description varchar NOT NULL, applied_at timestamp_with_timezone_text NOT NULL)",
        "CREATE TABLE users (id integer NOT NULL PRIMARY KEY AUTOINCREMENT, name varchar NOT NULL, email varchar NOT NULL UNIQUE, age integer, is_active boolean NOT NULL, role varchar NOT NULL DEFAULT 'user', created_at timestamp_with_timezone_text NOT NULL)",
        "CREATE TABLE tasks (id integer NOT NULL PRIMARY KEY AUTOINCREMENT, user_id integer NOT NULL, title varchar NOT NULL, done boolean NOT NULL, created_at timestamp_with_timezone_text NOT NULL, FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE)",
        "INSERT INTO schema_migrations VALUES (1, 'create users and tasks', '2026-01-01T00:00:00Z')",
        "INSERT INTO users (name, email, age, is_active, created_at) VALUES ('Ada', 'ada@example.com', 36, 1, '2026-01-01T00:00:00Z')",
    ] {
        old.execute_unprepared(statement).await.expect(statement);
    }
    old.close().await.expect("close");

    let db = connect_db(&url).await.expect("the upgrade");
    let ada = row(&db, "ada@example.com").await;
    assert_eq!(ada.role, "user");
    assert_eq!(ada.password_hash, None);
    // And again: nothing left to apply.
    db.close().await.expect("close");
    let db = connect_db(&url).await.expect("a second start");
    assert_eq!(row(&db, "ada@example.com").await.name, "Ada");
    db.close().await.expect("close");
}
