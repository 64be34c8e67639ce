//! Tests of the test harness itself: process control of [`RedisServer`].

use std::io::ErrorKind;
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use integration_tests::{RedisServer, wait_until, wait_until_blocking};
use redis::Value;

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
