//! Tests of the cluster harness itself: [`RedisCluster`] starts a real cluster, routes, fails
//! over, restarts, and leaves nothing behind.

use std::time::{Duration, Instant};

use integration_tests::{RedisCluster, wait_until_blocking};

fn process_gone(pid: u32) -> bool {
    !std::path::Path::new(&format!("/proc/{pid}")).exists()
}

#[test]
fn three_masters_serve_every_slot_and_route_by_key() {
    let started = Instant::now();
    let cluster = RedisCluster::start();
    let took = started.elapsed();
    assert_eq!(cluster.nodes().len(), 3);
    assert_eq!(cluster.masters(), [0, 1, 2]);
    for node in cluster.nodes() {
        assert!(
            node.port() <= 55_535,
            "bus port would overflow: {}",
            node.port()
        );
        let info: String = node.query(&["CLUSTER", "INFO"]);
        assert!(info.contains("cluster_state:ok"), "{info}");
    }
    // Keys spread over the masters, and each lands on the master `master_of` names.
    let mut owners = std::collections::BTreeSet::new();
    for i in 0..30 {
        let key = format!("k{i}");
        let _: () = cluster.query(&["SET", &key, "v"]);
        let owner = cluster.master_of(&key);
        let local: Option<String> = cluster.nodes()[owner].query(&["GET", &key]);
        assert_eq!(local.as_deref(), Some("v"), "{key} on node {owner}");
        owners.insert(owner);
    }
    assert_eq!(owners.len(), 3);
    let dbsize: usize = cluster.query(&["DBSIZE"]);
    assert_eq!(dbsize, 30, "DBSIZE sums the masters");
    eprintln!("3-master cluster ready in {took:?}");
}

#[test]
fn a_replica_takes_over_a_killed_master_and_the_master_rejoins() {
    let mut cluster = RedisCluster::builder()
        .replicas(1)
        .node_timeout_ms(1_000)
        .start();
    assert_eq!(cluster.nodes().len(), 6);
    assert_eq!(cluster.masters().len(), 3);
    let _: () = cluster.query(&["SET", "users:42", "v"]);
    let master = cluster.master_of("users:42");
    let replica = cluster.replica_of(master).expect("a replica");
    cluster.wait_for_replication(master);
    cluster.node_mut(master).kill();
    let started = Instant::now();
    let new_master = cluster.wait_for_master_of("users:42");
    eprintln!("failover took {:?}", started.elapsed());
    assert_eq!(new_master, replica);
    let value: Option<String> = cluster.query(&["GET", "users:42"]);
    assert_eq!(value.as_deref(), Some("v"));
    cluster.node_mut(master).restart();
    cluster.wait_until_ready();
    assert_eq!(
        cluster.masters().len(),
        3,
        "the old master rejoined as a replica"
    );
    assert_eq!(cluster.replica_of(new_master), Some(master));
}

#[test]
fn a_killed_cluster_restarts_with_its_slots() {
    let mut cluster = RedisCluster::builder().persistent().start();
    let _: () = cluster.query(&["SET", "kept", "v"]);
    cluster.kill();
    assert!(
        cluster
            .try_query::<Option<String>>(&["GET", "kept"])
            .is_err()
    );
    cluster.restart();
    let value: Option<String> = cluster.query(&["GET", "kept"]);
    assert_eq!(value.as_deref(), Some("v"));
}

#[test]
fn tls_and_password_clusters() {
    let cluster = RedisCluster::builder().tls().requirepass("s3cret").start();
    assert!(
        cluster
            .nodes_var()
            .starts_with("rediss://:s3cret@127.0.0.1:")
    );
    let _: () = cluster.query(&["SET", "k", "v"]);
    let value: Option<String> = cluster.query(&["GET", "k"]);
    assert_eq!(value.as_deref(), Some("v"));
    // One CA for every node.
    let ca = cluster.ca_cert_path().expect("a CA").to_owned();
    for node in cluster.nodes() {
        assert_eq!(node.ca_cert_path(), Some(ca.as_path()));
    }
}

#[test]
fn drop_leaves_no_process() {
    let cluster = RedisCluster::start();
    let pids: Vec<u32> = cluster.nodes().iter().filter_map(|n| n.pid()).collect();
    let dirs: Vec<_> = cluster.nodes().iter().map(|n| n.dir().to_owned()).collect();
    assert_eq!(pids.len(), 3);
    drop(cluster);
    assert!(wait_until_blocking(Duration::from_secs(5), || pids
        .iter()
        .all(|&p| process_gone(p))));
    assert!(dirs.iter().all(|d| !d.exists()));
}
