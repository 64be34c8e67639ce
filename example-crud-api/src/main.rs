//! Run with: `cargo run -p example-crud-api` (add `-- --seed 10000` for demo data).
//!
//! Configuration comes from the environment and `.env` (see `.env.example`): `DATABASE_URL`,
//! `HOST`, `PORT`, `SEED_USERS`, `RUST_LOG`, and the cache's `REDIS_*` / `CACHE_*` variables.

use std::error::Error;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use cache_runtime::axum::auth::Auth;
use cache_runtime::session::{Jwt, SessionConfig, SessionStore};
use cache_runtime::{Cache, Config, Environment};
use example_crud_api::{AppState, DEFAULT_DATABASE_URL, RateLimits, app, connect_db, seed};
use tracing_subscriber::EnvFilter;

const USAGE: &str = "\
usage: example-crud-api [--seed N]

  --seed N   insert N demo users with 3 tasks each, unless users exist (or SEED_USERS=N)

Environment (also read from .env): DATABASE_URL (default sqlite://data/app.db?mode=rwc),
HOST (127.0.0.1), PORT (8000), RUST_LOG (info), REDIS_ENABLED, REDIS_URL, CACHE_*,
SESSION_*, JWT_*, LOGIN_RATE_LIMIT, API_RATE_LIMIT, TRUSTED_PROXIES ...";

/// How long shutting down may take to send the cache's queued invalidations to Redis.
const CACHE_SHUTDOWN: Duration = Duration::from_secs(5);

#[tokio::main]
async fn main() -> ExitCode {
    // The environment over `.env`, read without modifying the environment (another thread
    // may read it meanwhile), so that RUST_LOG and DATABASE_URL may come from `.env` too.
    let env = Environment::load();
    let filter = env
        .as_ref()
        .ok()
        .and_then(|env| env.get("RUST_LOG"))
        .unwrap_or_else(|| "info".to_owned());
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_new(&filter).unwrap_or_else(|_| "info".into()))
        .init();
    let env = match env {
        Ok(env) => env,
        Err(e) => {
            tracing::error!(error = %e, "cannot read .env");
            return ExitCode::FAILURE;
        }
    };
    match run(&env).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "exiting");
            ExitCode::FAILURE
        }
    }
}

async fn run(env: &Environment) -> Result<(), Box<dyn Error>> {
    let Some(seed_users) = parse_args(env)? else {
        #[allow(clippy::print_stdout, reason = "--help prints its usage")]
        {
            println!("{USAGE}");
        }
        return Ok(());
    };
    let url = env
        .get("DATABASE_URL")
        .unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned());
    let db = connect_db(&url).await?;
    let config = Config::from_lookup(|name| env.get(name))?;
    let cache = Cache::builder().config(config).build().await?;
    tracing::info!(mode = ?cache.mode(), "cache ready");
    // For annotated functions called outside a request (the seeding below).
    let _ = cache_runtime::install(cache.clone());

    if seed_users > 0 {
        let started = Instant::now();
        let admin_password = env
            .get("ADMIN_PASSWORD")
            .unwrap_or_else(|| "admin-password".to_owned());
        match seed::seed(&db, seed_users, &admin_password).await? {
            0 => tracing::info!("users exist already; not seeding"),
            n => tracing::info!(users = n, elapsed = ?started.elapsed(), "seeded"),
        }
    }

    let host = env.get("HOST").unwrap_or_else(|| "127.0.0.1".to_owned());
    let port = env.get("PORT").unwrap_or_else(|| "8000".to_owned());
    let port: u16 = port
        .parse()
        .map_err(|_| format!("PORT must be a port number, got `{port}`"))?;
    let listener = tokio::net::TcpListener::bind((host.as_str(), port)).await?;
    tracing::info!("listening on http://{}", listener.local_addr()?);
    let auth = auth_from(env, &cache)?;
    let limits = RateLimits::from_lookup(|n| env.get(n), &cache)?;
    let state = AppState::new(db, cache.clone())
        .with_auth(auth)
        .with_rate_limits(limits);
    // The peer's address: the rate limits key by it.
    axum::serve(
        listener,
        app(state).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown_signal())
    .await?;
    // Invalidations that could not reach Redis are sent now, or lost with the process.
    if !cache.shutdown(CACHE_SHUTDOWN).await {
        tracing::error!("stopped with cache invalidations that never reached redis");
    }
    tracing::info!("stopped");
    Ok(())
}

/// Sessions (`SESSION_TTL`, `SESSION_ABSOLUTE_TTL`, `SESSION_TOUCH_INTERVAL`) on the cache's
/// Redis client, tokens (`JWT_SECRET`, `JWT_TTL`) and cookies (`COOKIE_SECURE`).
fn auth_from(env: &Environment, cache: &Cache) -> Result<Auth, Box<dyn Error>> {
    let sessions = SessionStore::for_cache(cache, SessionConfig::from_lookup(|n| env.get(n))?);
    let jwt = match Jwt::from_lookup(|n| env.get(n))? {
        Some(jwt) => jwt,
        None => {
            tracing::warn!(
                "JWT_SECRET is not set: tokens use a random secret, die with this process and \
                 are not valid at other instances"
            );
            example_crud_api::random_jwt()
        }
    };
    let secure = match env.get("COOKIE_SECURE").as_deref().map(str::trim) {
        None | Some("" | "false" | "0") => false,
        Some("true" | "1") => true,
        Some(other) => {
            return Err(format!("COOKIE_SECURE must be `true` or `false`, got `{other}`").into());
        }
    };
    Ok(Auth::new(sessions).with_jwt(jwt).secure_cookies(secure))
}

/// The number of users to seed (`--seed N`, `--seed=N` or `SEED_USERS`), or `None` for `--help`.
fn parse_args(env: &Environment) -> Result<Option<u32>, String> {
    let parse = |v: &str| {
        v.parse::<u32>()
            .map_err(|_| format!("--seed expects a number of users, got `{v}`"))
    };
    let mut seed = match env.get("SEED_USERS") {
        Some(v) if !v.trim().is_empty() => parse(v.trim())
            .map_err(|_| format!("SEED_USERS expects a number of users, got `{v}`"))?,
        _ => 0,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-h" | "--help" => return Ok(None),
            "--seed" => seed = parse(&args.next().unwrap_or_default())?,
            other => match other.strip_prefix("--seed=") {
                Some(v) => seed = parse(v)?,
                None => return Err(format!("unknown argument `{other}`\n\n{USAGE}")),
            },
        }
    }
    Ok(Some(seed))
}

/// Resolves on Ctrl-C or SIGTERM; in-flight requests then finish before the server stops.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
    tracing::info!("shutting down");
}
