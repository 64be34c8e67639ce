//! Tests of the test harness itself: process control of [`RedisServer`] and the
//! deployment-like configurations of [`RedisServer::builder`].

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use integration_tests::{RedisServer, wait_until, wait_until_blocking};
use redis::{Commands, RedisResult, TlsCertificates, Value};

/// Whether `pid` names a live (non-zombie) process.
fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name: "pid (comm) S ...".
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// Whether `/proc/<pid>` is gone entirely (process exited and was reaped).
fn process_gone(pid: u32) -> bool {
    !PathBuf::from(format!("/proc/{pid}")).exists()
}

fn ping(server: &RedisServer) -> Value {
    server.cli(&["PING"])
}

fn pong() -> Value {
    Value::SimpleString("PONG".into())
}

#[test]
fn start_answers_ping() {
    let server = RedisServer::start();
    assert_eq!(ping(&server), pong());
    assert_ne!(server.port(), 6379);
    assert_eq!(
        server.url(),
        format!("redis://127.0.0.1:{}/", server.port())
    );
    assert!(server.dir().is_dir());
    assert!(
        server.dir().join("redis.log").is_file(),
        "logs go to a file"
    );
    let pid = server.pid().expect("running");
    assert!(process_alive(pid));
    // Without the builder's options: plaintext, no password, no certificates.
    assert_eq!(server.url_without_auth(), server.url());
    assert_eq!(server.password(), None);
    assert_eq!(server.ca_cert_path(), None);
}

#[test]
fn servers_get_distinct_ports() {
    let a = RedisServer::start();
    let b = RedisServer::start();
    assert_ne!(a.port(), b.port());
    assert_ne!(a.dir(), b.dir());
    a.cli(&["SET", "k", "a"]);
    assert_eq!(b.query::<Option<String>>(&["GET", "k"]), None);
}

#[test]
fn kill_refuses_connections() {
    let mut server = RedisServer::start();
    let pid = server.pid().expect("running");
    server.kill();
    assert_eq!(server.pid(), None);
    assert!(process_gone(pid), "killed server must be reaped");
    let err = TcpStream::connect(("127.0.0.1", server.port())).expect_err("port must be closed");
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused);
    let err = server
        .try_cli(&["PING"], Duration::from_millis(500))
        .expect_err("no server");
    assert!(err.is_connection_refusal() || err.is_io_error(), "{err}");
    // Killing twice is harmless.
    server.kill();
}

#[test]
fn restart_uses_same_port() {
    let mut server = RedisServer::start();
    let port = server.port();
    let old_pid = server.pid();
    server.kill();
    server.restart();
    assert_eq!(server.port(), port);
    assert_ne!(server.pid(), old_pid);
    assert_eq!(ping(&server), pong());

    // Restarting a running server kills it first.
    let running_pid = server.pid().expect("running");
    server.restart();
    assert!(process_gone(running_pid));
    assert_eq!(server.port(), port);
    assert_eq!(ping(&server), pong());
}

#[test]
fn non_persistent_restart_loses_data() {
    let mut server = RedisServer::start();
    server.cli(&["SET", "k", "v"]);
    server.kill();
    server.restart();
    assert_eq!(server.query::<Option<String>>(&["GET", "k"]), None);
}

#[test]
fn persistent_server_survives_kill() {
    let mut server = RedisServer::start_persistent();
    assert_eq!(server.cli(&["SET", "key", "value"]), Value::Okay);
    server.cli(&["HSET", "hash", "field", "1"]);
    server.kill();
    server.restart();
    assert_eq!(
        server.query::<Option<String>>(&["GET", "key"]),
        Some("value".to_owned())
    );
    assert_eq!(
        server.query::<Option<String>>(&["HGET", "hash", "field"]),
        Some("1".to_owned())
    );
}

#[test]
fn pause_blocks_until_resume() {
    let server = RedisServer::start();
    let client = server.client();
    let mut con = client.get_connection().expect("connect");
    con.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("set timeout");
    assert_eq!(
        redis::cmd("PING").query::<String>(&mut con).expect("ping"),
        "PONG"
    );

    server.pause();
    // An established connection times out...
    let started = Instant::now();
    let err = redis::cmd("PING")
        .query::<String>(&mut con)
        .expect_err("paused server must not answer");
    assert!(err.is_timeout(), "expected a timeout, got {err}");
    assert!(started.elapsed() < Duration::from_secs(2));
    // ...and so does a fresh one (the handshake is not answered).
    let err = server
        .try_cli(&["PING"], Duration::from_millis(200))
        .expect_err("paused server must not answer");
    assert!(err.is_timeout(), "expected a timeout, got {err}");

    server.resume();
    assert_eq!(ping(&server), pong());
    let mut con = client.get_connection().expect("connect");
    con.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("set timeout");
    assert_eq!(
        redis::cmd("PING").query::<String>(&mut con).expect("ping"),
        "PONG"
    );
}

#[test]
fn drop_leaves_no_process() {
    let server = RedisServer::start();
    let pid = server.pid().expect("running");
    let dir = server.dir().to_owned();
    drop(server);
    assert!(
        wait_until_blocking(Duration::from_secs(5), || process_gone(pid)),
        "redis-server {pid} still exists after drop"
    );
    assert!(!dir.exists(), "temp dir must be removed");
}

#[test]
fn drop_of_paused_server_leaves_no_process() {
    let server = RedisServer::start_persistent();
    let pid = server.pid().expect("running");
    server.pause();
    drop(server);
    assert!(wait_until_blocking(
        Duration::from_secs(5),
        || process_gone(pid)
    ));
}

#[test]
fn drop_during_panic_leaves_no_process() {
    let (tx, rx) = std::sync::mpsc::channel();
    let result = std::thread::spawn(move || {
        let server = RedisServer::start();
        tx.send(server.pid().expect("running")).expect("send pid");
        panic!("test failure while the server runs");
    })
    .join();
    assert!(result.is_err());
    let pid = rx.recv().expect("pid");
    assert!(wait_until_blocking(
        Duration::from_secs(5),
        || process_gone(pid)
    ));
}

#[test]
fn server_outlives_the_thread_that_started_it() {
    // Servers are forked from a long-lived thread, so a parent-death signal
    // does not fire when the (test) thread that called `start` ends.
    let server = std::thread::spawn(RedisServer::start)
        .join()
        .expect("start");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(ping(&server), pong());
}

#[test]
fn stats_helpers() {
    let server = RedisServer::start();
    assert_eq!(server.command_calls("keys"), 0);
    server.cli(&["KEYS", "*"]);
    server.cli(&["keys", "nothing*"]);
    assert_eq!(server.command_calls("keys"), 2);
    assert_eq!(server.command_calls("KEYS"), 2);
    assert_eq!(server.command_calls("get"), 0);

    let before = server.info_stat("total_connections_received");
    server.cli(&["PING"]);
    let after = server.info_stat("total_connections_received");
    assert!(after > before, "{before} -> {after}");

    server.cli(&["SET", "k", "v"]);
    server.cli(&["GET", "k"]);
    assert_eq!(server.info_stat("keyspace_hits"), 1);
    assert!(server.info("server").contains("redis_version:"));
    assert_eq!(
        server.info_field("server", "tcp_port"),
        Some(server.port().to_string())
    );

    server.reset_stats();
    assert_eq!(server.command_calls("keys"), 0);
    assert_eq!(server.info_stat("keyspace_hits"), 0);
}

#[tokio::test]
async fn async_wait_until() {
    let server = RedisServer::start();
    let started = Instant::now();
    assert!(!wait_until(Duration::from_millis(50), || false).await);
    assert!(started.elapsed() >= Duration::from_millis(50));
    let mut polls = 0;
    assert!(
        wait_until(Duration::from_secs(1), || {
            polls += 1;
            polls == 3
        })
        .await
    );
    assert!(
        wait_until(Duration::from_secs(1), || server.query::<String>(&["PING"])
            == "PONG")
        .await
    );
}

#[test]
fn missing_redis_server_panics_with_install_hint() {
    if std::env::var_os("HARNESS_TEST_HELPER").is_some() {
        // The child: no redis-server on its PATH.
        let _server = RedisServer::start();
        return;
    }
    // Run this test again in a child process whose PATH has no redis-server.
    let output = Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", "missing_redis_server_panics_with_install_hint"])
        .env("PATH", "/nonexistent")
        .env("HARNESS_TEST_HELPER", "1")
        .stdin(Stdio::null())
        .output()
        .expect("run helper");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!output.status.success(), "{text}");
    assert!(
        text.contains("redis-server not found: install it with `apt-get install redis-server`"),
        "{text}"
    );
}

#[test]
fn killed_test_process_takes_server_down() {
    if let Some(info_file) = std::env::var_os("HARNESS_ORPHAN_INFO") {
        orphan(&info_file);
        return;
    }
    let setpriv = Command::new("setpriv")
        .args(["--pdeathsig", "KILL", "true"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    assert!(
        setpriv.is_ok_and(|status| status.success()),
        "setpriv --pdeathsig (util-linux) is needed so servers die with a killed test process"
    );
    let info_file = std::env::temp_dir().join(format!(
        "integration-tests-orphan-{}-{}",
        std::process::id(),
        line!()
    ));
    let _ = std::fs::remove_file(&info_file);
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", "killed_test_process_takes_server_down"])
        .env("HARNESS_ORPHAN_INFO", &info_file)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run helper");
    let ready = wait_until_blocking(Duration::from_secs(10), || {
        std::fs::read_to_string(&info_file).is_ok_and(|text| text.ends_with('\n'))
    });
    // SIGKILL the test process: no destructor runs.
    child.kill().expect("kill helper");
    child.wait().expect("reap helper");
    assert!(ready, "helper did not start a server");

    let text = std::fs::read_to_string(&info_file).expect("info");
    let _ = std::fs::remove_file(&info_file);
    let (pid, dir) = text.trim_end().split_once(' ').expect("pid and dir");
    let pid: u32 = pid.parse().expect("pid");
    let gone = wait_until_blocking(Duration::from_secs(5), || !process_alive(pid));
    if !gone {
        // Do not leak the server when the assertion below fails.
        let _ = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
    }
    let _ = std::fs::remove_dir_all(dir);
    assert!(gone, "orphaned redis-server {pid} still alive");
}

/// The child of `killed_test_process_takes_server_down`: starts a server, says where, and waits
/// to be killed.
fn orphan(info_file: &std::ffi::OsStr) {
    let server = RedisServer::start();
    let pid = server.pid().expect("running");
    let tmp = PathBuf::from(info_file).with_extension("tmp");
    std::fs::write(&tmp, format!("{pid} {}\n", server.dir().display())).expect("write info");
    std::fs::rename(&tmp, info_file).expect("publish info");
    std::thread::sleep(Duration::from_secs(60));
}

// ---------------------------------------------------------------------------------------------
// RedisServer::builder: deployment-like configurations
// ---------------------------------------------------------------------------------------------

/// Runs one command on a fresh connection of `client` (1 s timeouts).
fn run(client: &redis::Client, args: &[&str]) -> RedisResult<Value> {
    let mut con = client.get_connection_with_timeout(Duration::from_secs(1))?;
    con.set_read_timeout(Some(Duration::from_secs(1)))?;
    let mut cmd = redis::cmd(args[0]);
    for arg in &args[1..] {
        cmd.arg(*arg);
    }
    cmd.query(&mut con)
}

/// A TLS client for `url` trusting `ca` (PEM), built like an application would.
fn tls_client(url: &str, ca: &std::path::Path) -> redis::Client {
    let root_cert = std::fs::read(ca).expect("read CA");
    redis::Client::build_with_tls(
        url,
        TlsCertificates {
            client_tls: None,
            root_cert: Some(root_cert),
        },
    )
    .expect("TLS client")
}

/// Sends a plaintext `PING` over a raw socket and returns whatever comes back (empty if the
/// server closes the connection).
fn raw_ping(port: u16) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .expect("set timeout");
    stream.write_all(b"PING\r\n").expect("write");
    let mut reply = Vec::new();
    // Read one reply line, or until the server closes the connection (a reset counts as
    // closed, a timeout as no reply).
    let mut buf = [0; 256];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                reply.extend_from_slice(&buf[..n]);
                if reply.ends_with(b"\r\n") {
                    break;
                }
            }
        }
    }
    String::from_utf8_lossy(&reply).into_owned()
}

/// The value of a configuration parameter (`CONFIG GET`), through the harness.
fn config_get(server: &RedisServer, name: &str) -> String {
    let pair: (String, String) = server.query(&["CONFIG", "GET", name]);
    assert_eq!(pair.0, name);
    pair.1
}

/// Whether `redis-server` refuses a plaintext `PING` on `port` (TLS-only servers do).
fn plaintext_refused(server: &RedisServer) -> bool {
    let plain = redis::Client::open(format!("redis://127.0.0.1:{}/", server.port())).expect("url");
    run(&plain, &["PING"]).is_err() && !raw_ping(server.port()).contains("PONG")
}

#[test]
fn tls_server_answers_tls_clients_and_refuses_plaintext() {
    let server = RedisServer::builder().tls().start();
    let port = server.port();
    assert_eq!(server.url(), format!("rediss://127.0.0.1:{port}/"));
    assert_eq!(server.url_without_auth(), server.url());
    let ca = server
        .ca_cert_path()
        .expect("a TLS server has a CA")
        .to_owned();
    assert!(ca.starts_with(server.dir()), "{}", ca.display());
    let pem = std::fs::read_to_string(&ca).expect("read CA");
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"), "{pem}");

    // The harness's own helpers speak TLS.
    assert_eq!(ping(&server), pong());
    server.cli(&["SET", "k", "v"]);
    assert_eq!(server.query::<String>(&["GET", "k"]), "v");
    assert!(server.info_stat("total_connections_received") > 0);
    // TLS only: the plaintext port is disabled.
    assert_eq!(config_get(&server, "port"), "0");
    assert_eq!(config_get(&server, "tls-port"), port.to_string());

    // An application's TLS client trusting the CA, by IP address and by name.
    let client = tls_client(&server.url(), &ca);
    assert_eq!(
        run(&client, &["GET", "k"]).expect("GET over TLS"),
        Value::BulkString(b"v".to_vec())
    );
    let client = tls_client(&format!("rediss://localhost:{port}/"), &ca);
    assert_eq!(run(&client, &["PING"]).expect("PING via localhost"), pong());
    // OpenSSL clients accept the files too.
    let output = Command::new("redis-cli")
        .args(["--tls", "--cacert"])
        .arg(&ca)
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "PING"])
        .stdin(Stdio::null())
        .output()
        .expect("run redis-cli (Debian's redis-tools, installed with redis-server)");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        "PONG",
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    // A TLS client that does not trust the CA is refused: the certificate is really checked.
    let untrusting = redis::Client::open(server.url()).expect("url");
    let err = run(&untrusting, &["PING"]).expect_err("unknown CA must be refused");
    assert!(
        err.to_string().to_lowercase().contains("certificate"),
        "expected a certificate error, got {err}"
    );
    // So are plaintext clients.
    let plain = redis::Client::open(format!("redis://127.0.0.1:{port}/")).expect("url");
    let err = run(&plain, &["PING"]).expect_err("plaintext must be refused");
    assert!(
        err.is_io_error() || err.is_timeout() || err.is_unrecoverable_error(),
        "{err}"
    );
    assert!(!raw_ping(port).contains("PONG"));
    assert!(plaintext_refused(&server));
}

#[tokio::test]
async fn tls_server_serves_async_clients() {
    let server = RedisServer::builder().tls().start();
    let mut con = server
        .client()
        .get_multiplexed_async_connection()
        .await
        .expect("async TLS connection");
    let () = redis::cmd("SET")
        .arg("k")
        .arg("v")
        .query_async(&mut con)
        .await
        .expect("SET");
    let value: String = redis::cmd("GET")
        .arg("k")
        .query_async(&mut con)
        .await
        .expect("GET");
    assert_eq!(value, "v");
}

#[test]
fn requirepass_refuses_unauthenticated_commands() {
    let password = "pa ss@word:/";
    let server = RedisServer::builder().requirepass(password).start();
    let port = server.port();
    assert_eq!(server.password(), Some(password));
    assert_eq!(
        server.url(),
        format!("redis://:pa%20ss%40word%3A%2F@127.0.0.1:{port}/")
    );
    assert_eq!(
        server.url_without_auth(),
        format!("redis://127.0.0.1:{port}/")
    );

    // Without the password: NOAUTH.
    let anonymous = server.client_for(&server.url_without_auth());
    let err = run(&anonymous, &["PING"]).expect_err("unauthenticated PING must fail");
    assert_eq!(err.code(), Some("NOAUTH"), "{err}");
    assert!(raw_ping(port).starts_with("-NOAUTH"), "{}", raw_ping(port));
    // A wrong password is refused at connect.
    let wrong = server.client_for(&server.url_as("default", "wrong"));
    let err = run(&wrong, &["PING"]).expect_err("wrong password must fail");
    assert_eq!(err.kind(), redis::ErrorKind::AuthenticationFailed, "{err}");

    // The URL's password works, for applications and for the harness.
    let client = redis::Client::open(server.url()).expect("url");
    assert_eq!(run(&client, &["PING"]).expect("authenticated PING"), pong());
    assert_eq!(ping(&server), pong());
    assert_eq!(server.query::<String>(&["ACL", "WHOAMI"]), "default");
    assert!(server.info_stat("total_connections_received") > 0);
}

#[test]
fn acl_users_authenticate_with_their_passwords() {
    let server = RedisServer::builder()
        .acl_user("app", "s3cret", "on ~* &* +@all")
        .acl_user("reader", "re ad", "on ~* +@read +@connection")
        .start();

    let app = server.client_for(&server.url_as("app", "s3cret"));
    let mut con = app.get_connection().expect("log in as app");
    let whoami: String = redis::cmd("ACL")
        .arg("WHOAMI")
        .query(&mut con)
        .expect("WHOAMI");
    assert_eq!(whoami, "app");
    let () = con.set("k", "v").expect("app may write");

    let err = run(
        &server.client_for(&server.url_as("app", "wrong")),
        &["PING"],
    )
    .expect_err("wrong password must fail");
    assert_eq!(err.kind(), redis::ErrorKind::AuthenticationFailed, "{err}");
    let err = run(
        &server.client_for(&server.url_as("nobody", "s3cret")),
        &["PING"],
    )
    .expect_err("unknown user must fail");
    assert_eq!(err.kind(), redis::ErrorKind::AuthenticationFailed, "{err}");

    // The rules apply: `reader` (password with a space) may read but not write.
    let reader = server.client_for(&server.url_as("reader", "re ad"));
    assert_eq!(
        run(&reader, &["GET", "k"]).expect("reader may read"),
        Value::BulkString(b"v".to_vec())
    );
    let err = run(&reader, &["SET", "k", "w"]).expect_err("reader must not write");
    assert_eq!(err.code(), Some("NOPERM"), "{err}");

    // The harness keeps using the default user.
    assert_eq!(server.query::<String>(&["ACL", "WHOAMI"]), "default");
    let mut users: Vec<String> = server.query(&["ACL", "USERS"]);
    users.sort();
    assert_eq!(users, ["app", "default", "reader"]);
}

#[test]
fn acl_users_with_requirepass() {
    let server = RedisServer::builder()
        .requirepass("admin")
        .acl_user("app", "s3cret", "on ~app:* +@all")
        .start();
    // The helpers authenticate as the default user with `requirepass`.
    assert_eq!(server.query::<String>(&["ACL", "WHOAMI"]), "default");
    let app = server.client_for(&server.url_as("app", "s3cret"));
    assert_eq!(
        run(&app, &["SET", "app:k", "v"]).expect("own key"),
        Value::Okay
    );
    let err = run(&app, &["SET", "other", "v"]).expect_err("foreign key");
    assert_eq!(err.code(), Some("NOPERM"), "{err}");
    let err = run(&server.client_for(&server.url_without_auth()), &["PING"]).expect_err("NOAUTH");
    assert_eq!(err.code(), Some("NOAUTH"), "{err}");
}

/// Writes `count` keys with values of `size` bytes through one pipelined connection; returns
/// the first error reply, if any.
fn fill(server: &RedisServer, count: usize, size: usize) -> RedisResult<()> {
    let mut con = server.client().get_connection().expect("connect");
    let value = vec![b'x'; size];
    for chunk in (0..count).collect::<Vec<_>>().chunks(100) {
        let mut pipe = redis::pipe();
        for i in chunk {
            pipe.set(format!("key:{i}"), &value).ignore();
        }
        pipe.exec(&mut con)?;
    }
    Ok(())
}

#[test]
fn maxmemory_with_allkeys_lru_evicts() {
    let limit: u64 = 4 << 20;
    let server = RedisServer::builder()
        .maxmemory(limit, "allkeys-lru")
        .start();
    assert_eq!(config_get(&server, "maxmemory"), limit.to_string());
    assert_eq!(config_get(&server, "maxmemory-policy"), "allkeys-lru");
    assert_eq!(server.info_stat("evicted_keys"), 0);

    // 16 MiB of values into 4 MiB.
    let count = 4000;
    fill(&server, count, 4096).expect("allkeys-lru never refuses writes");
    let evicted = server.info_stat("evicted_keys");
    assert!(evicted > 0, "no key evicted");
    let dbsize: usize = server.query(&["DBSIZE"]);
    assert!(dbsize < count, "{dbsize} keys kept");
    let used: u64 = server
        .info_field("memory", "used_memory")
        .expect("used_memory")
        .parse()
        .expect("number");
    assert!(
        used <= limit + (1 << 20),
        "used_memory {used} far above the limit"
    );
}

#[test]
fn maxmemory_with_noeviction_refuses_writes() {
    let server = RedisServer::builder()
        .maxmemory(4 << 20, "noeviction")
        .start();
    let err = fill(&server, 4000, 4096).expect_err("a full noeviction server refuses writes");
    // A pipeline error lists the failed commands' replies.
    assert!(err.to_string().contains("OOM"), "{err}");
    assert_eq!(server.info_stat("evicted_keys"), 0);
    let dbsize: usize = server.query(&["DBSIZE"]);
    assert!(dbsize > 0, "the first writes fit");
}

#[test]
fn arg_passes_any_directive() {
    let server = RedisServer::builder()
        .arg("hz", "25")
        .arg("--notify-keyspace-events", "Kx")
        .start();
    assert_eq!(config_get(&server, "hz"), "25");
    assert_eq!(config_get(&server, "notify-keyspace-events"), "xK");
}

#[test]
fn rejected_configuration_panics_with_the_log() {
    let result =
        std::panic::catch_unwind(|| RedisServer::builder().arg("no-such-directive", "1").start());
    let err = result.expect_err("an unknown directive must fail the start");
    let message = err
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| err.downcast_ref::<&str>().copied())
        .unwrap_or_default();
    assert!(
        message.contains("failed to start redis-server"),
        "{message}"
    );
    assert!(message.contains("no-such-directive"), "{message}");
}

#[test]
fn restart_keeps_the_configuration() {
    let limit: u64 = 8 << 20;
    let mut server = RedisServer::builder()
        .tls()
        .persistent()
        .requirepass("pw")
        .acl_user("app", "s3cret", "on ~* &* +@all")
        .maxmemory(limit, "allkeys-lru")
        .arg("hz", "25")
        .start();
    let port = server.port();
    let url = server.url();
    let ca = server.ca_cert_path().expect("CA").to_owned();
    let ca_pem = std::fs::read(&ca).expect("read CA");
    server.cli(&["SET", "k", "v"]);

    for restart in 0..2 {
        // First after a kill, then of a running server.
        if restart == 0 {
            server.kill();
        }
        server.restart();
        assert_eq!(server.port(), port);
        assert_eq!(server.url(), url);
        assert_eq!(
            std::fs::read(&ca).expect("read CA"),
            ca_pem,
            "certificates kept"
        );

        // Same TLS certificate: a client trusting the original CA still connects.
        let app = tls_client(&server.url_as("app", "s3cret"), &ca);
        assert_eq!(
            run(&app, &["ACL", "WHOAMI"]).expect("app logs in"),
            Value::BulkString(b"app".to_vec())
        );
        let wrong = tls_client(&server.url_as("app", "wrong"), &ca);
        let err = run(&wrong, &["PING"]).expect_err("wrong password");
        assert_eq!(err.kind(), redis::ErrorKind::AuthenticationFailed, "{err}");
        let anonymous = tls_client(&server.url_without_auth(), &ca);
        let err = run(&anonymous, &["PING"]).expect_err("NOAUTH");
        assert_eq!(err.code(), Some("NOAUTH"), "{err}");
        assert!(plaintext_refused(&server));

        assert_eq!(config_get(&server, "maxmemory"), limit.to_string());
        assert_eq!(config_get(&server, "maxmemory-policy"), "allkeys-lru");
        assert_eq!(config_get(&server, "hz"), "25");
        assert_eq!(config_get(&server, "appendonly"), "yes");
        assert_eq!(
            server.query::<Option<String>>(&["GET", "k"]).as_deref(),
            Some("v")
        );
    }
}
