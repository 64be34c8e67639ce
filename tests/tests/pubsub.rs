//! Pub/sub on real Redis, on one server and on a cluster, tried the way it could break:
//! - typed messages across two clients, in order; a payload of another shape is skipped and
//!   counted; patterns (broadcast routing); sharded routing on a cluster (`SPUBLISH`);
//! - Redis killed and restarted, and `CLIENT KILL TYPE pubsub`: every subscription is back by
//!   itself, and yields a gap notice before its next message;
//! - a subscriber that does not read: told it lagged, bounded, and the others keep receiving;
//! - the last subscription dropped unsubscribes the channel from Redis;
//! - Redis down: publishing and subscribing fail fast with a clear error.

use std::time::{Duration, Instant};

use cache_runtime::Cache;
use cache_runtime::pubsub::{Event, PubSub, PubSubError, Routing, Subscription};
use integration_tests::{Deployment, Kind, Topology, on_every_topology, wait_until};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Order {
    id: u64,
    item: String,
}

fn order(id: u64) -> Order {
    Order {
        id,
        item: format!("item-{id}"),
    }
}

async fn caches(redis: &Topology, n: usize) -> Vec<Cache> {
    redis
        .caches(n, |b| {
            b.op_timeout(Duration::from_millis(500))
                .connect_timeout(Duration::from_millis(500))
        })
        .await
}

/// The next event within `timeout`.
async fn next<T: serde::de::DeserializeOwned>(
    s: &mut Subscription<T>,
    timeout: Duration,
) -> Option<Event<T>> {
    tokio::time::timeout(timeout, s.next()).await.ok().flatten()
}

async fn message(s: &mut Subscription<Order>) -> (String, Order) {
    match next(s, Duration::from_secs(5)).await {
        Some(Event::Message { channel, value }) => (channel, value),
        other => panic!("expected a message, got {other:?}"),
    }
}

async fn messages_arrive_typed_across_clients(kind: Kind) {
    let redis = Topology::start(kind);
    let caches = caches(&redis, 2).await;
    let (publisher, subscriber) = (PubSub::for_cache(&caches[0]), PubSub::for_cache(&caches[1]));
    let mut orders = subscriber.subscribe::<Order>("orders").await.expect("sub");
    let mut other = subscriber.subscribe::<Order>("refunds").await.expect("sub");
    // Another shape on the same channel: skipped and counted, never a panic.
    publisher
        .publish("orders", &"not an order")
        .await
        .expect("pub");
    for id in 0..100 {
        publisher.publish("orders", &order(id)).await.expect("pub");
    }
    publisher.publish("refunds", &order(7)).await.expect("pub");
    for id in 0..100 {
        assert_eq!(message(&mut orders).await, ("orders".to_owned(), order(id)));
    }
    assert_eq!(message(&mut other).await, ("refunds".to_owned(), order(7)));
    assert_eq!(subscriber.stats().undecodable, 1);
    assert_eq!(publisher.stats().published, 102);
    if kind == Kind::Cluster {
        // Sharded routing: the messages went to their shard only.
        assert!(redis.command_calls("spublish") >= 102);
        assert_eq!(redis.command_calls("publish"), 0);
    }

    // Patterns need broadcast routing, on one Redis as on a cluster.
    let broadcast = subscriber.clone().routing(Routing::Broadcast);
    let mut all = broadcast.psubscribe::<Order>("shop:*").await.expect("psub");
    let publisher = publisher.routing(Routing::Broadcast);
    publisher.publish("shop:1", &order(1)).await.expect("pub");
    publisher
        .publish("elsewhere", &order(2))
        .await
        .expect("pub");
    publisher.publish("shop:3", &order(3)).await.expect("pub");
    // Each channel has its own slot on a cluster, so the two may come in either order.
    let mut got = [message(&mut all).await, message(&mut all).await];
    got.sort_by_key(|(_, o)| o.id);
    assert_eq!(
        got,
        [
            ("shop:1".to_owned(), order(1)),
            ("shop:3".to_owned(), order(3))
        ]
    );
}

/// Publishes every 20 ms until `subscription` yields a message; returns what came before it
/// and how long that took.
async fn resumed(
    publisher: &PubSub,
    subscription: &mut Subscription<Order>,
) -> (Vec<Event<Order>>, Duration) {
    let started = Instant::now();
    let mut before = Vec::new();
    let mut id = 1000;
    while started.elapsed() < Duration::from_secs(20) {
        id += 1;
        let _ = publisher.publish("orders", &order(id)).await;
        match next(subscription, Duration::from_millis(20)).await {
            Some(Event::Message { .. }) => return (before, started.elapsed()),
            Some(event) => before.push(event),
            None => {}
        }
    }
    panic!("no message within 20 s; events before: {before:?}");
}

async fn a_restart_resumes_every_subscription_with_a_gap(kind: Kind) {
    let mut redis = Topology::start(kind);
    let caches = caches(&redis, 2).await;
    let (publisher, subscriber) = (PubSub::for_cache(&caches[0]), PubSub::for_cache(&caches[1]));
    let mut orders = subscriber.subscribe::<Order>("orders").await.expect("sub");
    let mut second = subscriber.subscribe::<Order>("orders").await.expect("sub");
    publisher.publish("orders", &order(1)).await.expect("pub");
    assert_eq!(message(&mut orders).await.1, order(1));
    assert_eq!(message(&mut second).await.1, order(1));

    redis.kill();
    tokio::time::sleep(Duration::from_millis(300)).await;
    redis.restart();
    let (before, took) = resumed(&publisher, &mut orders).await;
    eprintln!("{kind:?}: back {took:?} after the restart, events before: {before:?}");
    assert_eq!(before, [Event::Gap], "a gap notice first, nothing else");
    let (before, _) = resumed(&publisher, &mut second).await;
    assert_eq!(before, [Event::Gap]);
    assert!(subscriber.stats().gaps >= 1);
}

async fn client_kill_type_pubsub_resumes_with_a_gap(kind: Kind) {
    let redis = Topology::start(kind);
    let caches = caches(&redis, 2).await;
    let (publisher, subscriber) = (PubSub::for_cache(&caches[0]), PubSub::for_cache(&caches[1]));
    let mut orders = subscriber.subscribe::<Order>("orders").await.expect("sub");
    publisher.publish("orders", &order(1)).await.expect("pub");
    assert_eq!(message(&mut orders).await.1, order(1));

    let killed = Instant::now();
    redis.on_every_node(&["CLIENT", "KILL", "TYPE", "pubsub"]);
    let (before, took) = resumed(&publisher, &mut orders).await;
    eprintln!(
        "{kind:?}: back {took:?} ({:?} after the kill), events before: {before:?}",
        killed.elapsed()
    );
    assert_eq!(before, [Event::Gap]);
    // Only the subscriber connection was killed: the cache kept serving.
    assert!(caches[1].redis().expect("redis").available());
}

async fn a_slow_subscriber_lags_and_the_others_keep_receiving(kind: Kind) {
    let redis = Topology::start(kind);
    let caches = caches(&redis, 2).await;
    let publisher = PubSub::for_cache(&caches[0]);
    let subscriber = PubSub::for_cache(&caches[1]);
    let mut slow = subscriber
        .clone()
        .buffer(8)
        .subscribe::<Order>("orders")
        .await
        .expect("sub");
    let mut fast = subscriber.subscribe::<Order>("orders").await.expect("sub");
    for id in 0..200 {
        publisher.publish("orders", &order(id)).await.expect("pub");
    }
    for id in 0..200 {
        assert_eq!(message(&mut fast).await.1, order(id));
    }
    // The slow one held 8 and was told about the other 192, before its queue.
    assert_eq!(
        next(&mut slow, Duration::from_secs(1)).await,
        Some(Event::Lagged(192))
    );
    for id in 0..8 {
        assert_eq!(message(&mut slow).await.1, order(id));
    }
    assert!(next(&mut slow, Duration::from_millis(100)).await.is_none());
    assert_eq!(subscriber.stats().lagged, 192);
}

/// A subscription is confirmed only once Redis has it, also while the task is busy
/// unsubscribing the channel just dropped (a confirmation once answered requests that came in
/// during a sync that had not seen them: every message of the new channel was lost).
async fn subscribing_while_another_is_dropped_loses_nothing(kind: Kind) {
    let redis = Topology::start(kind);
    let caches = caches(&redis, 2).await;
    let (publisher, subscriber) = (PubSub::for_cache(&caches[0]), PubSub::for_cache(&caches[1]));
    for round in 0..10 {
        let channel = format!("orders:{round}");
        let mut orders = subscriber.subscribe::<Order>(&channel).await.expect("sub");
        for id in 0..20 {
            publisher.publish(&channel, &order(id)).await.expect("pub");
        }
        for id in 0..20 {
            assert_eq!(
                message(&mut orders).await,
                (channel.clone(), order(id)),
                "round {round}"
            );
        }
        // Unsubscribed by the task while the next round subscribes.
        drop(orders);
    }
}

on_every_topology!(
    subscribing_while_another_is_dropped_loses_nothing,
    messages_arrive_typed_across_clients,
    a_restart_resumes_every_subscription_with_a_gap,
    client_kill_type_pubsub_resumes_with_a_gap,
    a_slow_subscriber_lags_and_the_others_keep_receiving,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_subscription_dropped_unsubscribes() {
    let redis = Topology::start(Kind::Single);
    let caches = caches(&redis, 1).await;
    let pubsub = PubSub::for_cache(&caches[0]);
    let numsub = || -> i64 {
        let (_, n): (String, i64) = redis.query(&["PUBSUB", "NUMSUB", "orders"]);
        n
    };
    let a = pubsub.subscribe::<Order>("orders").await.expect("sub");
    let b = pubsub.subscribe::<Order>("orders").await.expect("sub");
    // One subscriber connection carries both.
    assert_eq!(numsub(), 1);
    drop(a);
    assert!(!wait_until(Duration::from_millis(300), || numsub() == 0).await);
    drop(b);
    assert!(wait_until(Duration::from_secs(2), || numsub() == 0).await);
    assert_eq!(pubsub.stats().subscriptions, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_down_publish_and_subscribe_fail_fast() {
    let mut redis = Topology::start(Kind::Single);
    let caches = caches(&redis, 1).await;
    let pubsub = PubSub::for_cache(&caches[0]);
    let mut orders = pubsub.subscribe::<Order>("orders").await.expect("sub");
    redis.kill();
    let mut slowest = Duration::ZERO;
    for _ in 0..20 {
        let started = Instant::now();
        let outcome = pubsub.publish("orders", &order(1)).await;
        slowest = slowest.max(started.elapsed());
        assert_eq!(outcome, Err(PubSubError::Unavailable));
    }
    eprintln!("slowest refused publish with Redis down: {slowest:?}");
    assert!(slowest < Duration::from_secs(3), "{slowest:?}");
    assert_eq!(
        pubsub.subscribe::<Order>("other").await.unwrap_err(),
        PubSubError::Unavailable
    );
    assert!(pubsub.stats().publish_failed >= 20);

    redis.restart();
    let (before, took) = resumed(&pubsub, &mut orders).await;
    eprintln!("back {took:?} after the restart");
    assert_eq!(before, [Event::Gap]);
}
