//! Test harness: starts and controls real `redis-server` processes.
//!
//! The central type is [`RedisServer`], a throw-away `redis-server` bound to a
//! free loopback port with its own temporary directory. It can be killed,
//! restarted on the same port, paused (`SIGSTOP`) and resumed (`SIGCONT`), and
//! it exposes small blocking helpers ([`RedisServer::cli`],
//! [`RedisServer::info_stat`], [`RedisServer::command_calls`], ...) so tests
//! can inspect the server independently of the code under test.
//!
//! Every server is killed and its directory removed when the handle is
//! dropped, including while a test panics. On Linux the server is also started
//! with a parent-death signal (via `setpriv --pdeathsig KILL` when available),
//! so it does not outlive a test binary that is itself killed.
//!
//! [`RedisServer::builder`] ([`RedisServerBuilder`]) starts servers configured
//! like real deployments: TLS with certificates generated on the fly, a
//! password, ACL users, a memory limit with an eviction policy, persistence
//! and any other directive, all kept across restarts.
//!
//! [`RedisCluster`] is a real local Redis Cluster of such servers (3 masters, optionally with
//! a replica each, TLS, a password), created with `redis-cli --cluster create`: nodes can be
//! killed, paused and restarted one by one or all together.
//!
//! [`Topology`] is either of the two behind one interface, and [`on_every_topology!`] runs a
//! test case written once on both.
//!
//! [`Proxy`] sits between a client and a server to delay every request or cut
//! the link while the server stays up.
//!
//! [`tied_command`] and [`spawn_tied`] start any child that way.
//!
//! [`wait_until`] and [`wait_until_blocking`] poll a condition until it holds
//! or a timeout expires.

mod cluster;
mod process;
mod proxy;
mod redis_server;
mod tls;
mod topology;
mod wait;

pub use cluster::{RedisCluster, RedisClusterBuilder};
pub use process::{spawn_tied, tied_command};
pub use proxy::Proxy;
pub use redis_server::{RedisServer, RedisServerBuilder};
pub use topology::{Deployment, Kind, Topology, l1_on, with_l1};
pub use wait::{wait_until, wait_until_blocking};
