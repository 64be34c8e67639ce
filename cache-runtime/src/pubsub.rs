//! Typed publish/subscribe on the shared Redis client, or in process.
//!
//! [`PubSub::publish`] sends a value as JSON; [`PubSub::subscribe`] (a channel) and
//! [`PubSub::psubscribe`] (a pattern) return a [`Subscription`], a `Stream` of [`Event`]s.
//! Every subscription of a process, on one Redis client, shares one subscriber connection
//! (RESP3, so that it can also answer a heartbeat `PING`), owned by one background task that
//! is alone in sending `SUBSCRIBE` and `UNSUBSCRIBE` on it, so they never race.
//!
//! Delivery is at most once, as Redis pub/sub is: messages published while the subscriber is
//! disconnected are lost. What this module adds is that a loss is never silent: when the
//! connection drops (a Redis restart, `CLIENT KILL TYPE pubsub`, a heartbeat that goes
//! unanswered for a second), the task reconnects (50 ms, doubling to 500 ms), resubscribes
//! everything, and every subscription then yields [`Event::Gap`] before its next message. On
//! a Redis Cluster, redis-rs reconnects each node and resubscribes it by itself; the task
//! turns the node's `Disconnection` and the following confirmation into the same gap notice.
//!
//! A slow subscriber cannot hold up the others or grow memory: each subscription has a
//! bounded buffer ([`PubSub::buffer`]); what does not fit is dropped and counted, and the
//! subscription yields [`Event::Lagged`] with the count. A message that does not decode as
//! the subscription's type is counted ([`PubSubStats::undecodable`]) and skipped.
//!
//! On a cluster, [`Routing::Sharded`] (the default) uses `SPUBLISH`/`SSUBSCRIBE`: a message
//! goes to the channel's shard only, not to every node. Patterns need [`Routing::Broadcast`]
//! (`PUBLISH`/`PSUBSCRIBE`), on one Redis too, so that code tested there behaves the same on a
//! cluster. With Redis disabled, [`PubSub::memory`] is an in-process broadcast with the same
//! API; with Redis enabled but unreachable, publishing and subscribing fail at once with
//! [`PubSubError::Unavailable`] once the breaker is open.
//!
//! ```
//! use cache_runtime::pubsub::{Event, PubSub, PubSubError};
//!
//! #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
//! struct Renamed { id: u32, name: String }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), PubSubError> {
//! let pubsub = PubSub::memory(); // `PubSub::for_cache(&cache)` on the cache's Redis client
//! let mut renames = pubsub.subscribe::<Renamed>("users:renamed").await?;
//! pubsub.publish("users:renamed", &Renamed { id: 7, name: "Ada".into() }).await?;
//! match renames.next().await {
//!     Some(Event::Message { channel, value }) => {
//!         assert_eq!((channel.as_str(), value.id), ("users:renamed", 7));
//!     }
//!     Some(Event::Gap | Event::Lagged(_)) => { /* reload what the messages would have said */ }
//!     other => panic!("{other:?}"),
//! }
//! # Ok(())
//! # }
//! ```

use std::collections::{HashMap, HashSet};
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use ::redis::{PushInfo, PushKind, Value};
use futures_util::Stream;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::{mpsc, oneshot};

use crate::RedisClient;
use crate::redis::{self as foundation, Subscriber, glob_escape};
use crate::sync::lock;

/// The longest channel name or pattern, in bytes (before the prefix).
pub const MAX_CHANNEL_LEN: usize = 1024;
/// A subscription's buffer unless [`PubSub::buffer`] says otherwise.
pub const DEFAULT_BUFFER: usize = 1024;

/// How often the subscriber connection is checked, and how long a check may take.
const HEARTBEAT: Duration = Duration::from_secs(1);
const MIN_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_millis(500);

/// How channels map onto a Redis Cluster (on one Redis both are plain pub/sub).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Routing {
    /// `SPUBLISH`/`SSUBSCRIBE` on a cluster: a message reaches the channel's shard only.
    #[default]
    Sharded,
    /// `PUBLISH`/`SUBSCRIBE`: every node relays every message; needed for patterns.
    Broadcast,
}

/// What a [`Subscription`] yields.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event<T> {
    /// A message, decoded.
    Message {
        /// The channel it was published to (without the prefix).
        channel: String,
        /// The value.
        value: T,
    },
    /// The subscription was lost and is back: messages published meanwhile are gone.
    Gap,
    /// This many messages were dropped because the subscription's buffer was full.
    Lagged(u64),
}

/// Why a publish or subscribe did not happen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PubSubError {
    /// Redis is enabled but unreachable (or the breaker is open).
    #[error("redis is unavailable")]
    Unavailable,
    /// Redis answered with an error.
    #[error("redis error: {0}")]
    Redis(String),
    /// The value could not be serialized as JSON.
    #[error("cannot encode the message: {0}")]
    Encode(String),
    /// An empty channel or pattern, or one longer than [`MAX_CHANNEL_LEN`].
    #[error("a channel must be 1 to 1024 bytes, got {0} bytes")]
    InvalidChannel(usize),
    /// [`PubSub::psubscribe`] on a [`Routing::Sharded`] handle.
    #[error("patterns need Routing::Broadcast (sharded pub/sub has no patterns)")]
    PatternsNeedBroadcast,
}

impl From<foundation::Error> for PubSubError {
    fn from(e: foundation::Error) -> Self {
        match e {
            foundation::Error::Redis(e) if !foundation::is_connectivity(&e) => {
                Self::Redis(e.to_string())
            }
            _ => Self::Unavailable,
        }
    }
}

impl From<::redis::RedisError> for PubSubError {
    fn from(e: ::redis::RedisError) -> Self {
        foundation::Error::Redis(e).into()
    }
}

/// Counters of the subscriber connection a [`PubSub`] handle shares (all handles on one
/// Redis client count together).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct PubSubStats {
    /// Messages published.
    pub published: u64,
    /// Publishes refused or failed (Redis unavailable, or an error).
    pub publish_failed: u64,
    /// Messages handed to subscriptions.
    pub delivered: u64,
    /// Messages dropped because a subscription's buffer was full.
    pub lagged: u64,
    /// Messages skipped because they did not decode as the subscription's type.
    pub undecodable: u64,
    /// Resubscriptions after a lost connection (each yields [`Event::Gap`]).
    pub gaps: u64,
    /// Live subscriptions.
    pub subscriptions: u64,
}

/// A publish/subscribe handle: on a Redis client, or in process. Cheap to clone.
#[derive(Clone)]
pub struct PubSub {
    feed: Arc<Feed>,
    prefix: Arc<str>,
    routing: Routing,
    buffer: usize,
}

impl std::fmt::Debug for PubSub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PubSub")
            .field("local", &self.is_local())
            .field("routing", &self.routing)
            .field("buffer", &self.buffer)
            .finish_non_exhaustive()
    }
}

impl PubSub {
    /// Pub/sub on `client`, channels under `prefix` (several handles on one client share
    /// its one subscriber connection).
    pub fn redis(client: RedisClient, prefix: &str) -> Self {
        let feed = {
            let mut slot = lock(client.feed_slot());
            match slot.upgrade() {
                Some(feed) => feed,
                None => {
                    let feed = Feed::new(Some(client.clone()));
                    *slot = Arc::downgrade(&feed);
                    feed
                }
            }
        };
        Self::with(feed, prefix)
    }

    /// An in-process broadcast with the same API: clones of this handle see each other's
    /// messages, nothing else does.
    pub fn memory() -> Self {
        Self::with(Feed::new(None), "")
    }

    /// Pub/sub on `cache`'s Redis client under its key prefix, or in process when it has
    /// none (Redis disabled).
    pub fn for_cache(cache: &crate::Cache) -> Self {
        match cache.redis() {
            Some(client) => Self::redis(client.clone(), &cache.config().key_prefix()),
            None => Self::memory(),
        }
    }

    fn with(feed: Arc<Feed>, prefix: &str) -> Self {
        Self {
            feed,
            prefix: prefix.into(),
            routing: Routing::default(),
            buffer: DEFAULT_BUFFER,
        }
    }

    /// The buffer of the subscriptions this handle makes (at least 1).
    #[must_use]
    pub fn buffer(mut self, messages: usize) -> Self {
        self.buffer = messages.max(1);
        self
    }

    /// How this handle's channels map onto a cluster.
    #[must_use]
    pub fn routing(mut self, routing: Routing) -> Self {
        self.routing = routing;
        self
    }

    /// Whether this is the in-process broadcast.
    pub fn is_local(&self) -> bool {
        self.feed.client.is_none()
    }

    /// Publishes `value` (as JSON) to `channel`.
    ///
    /// # Errors
    /// [`PubSubError::Unavailable`] when Redis is enabled but unreachable (at once while the
    /// breaker is open), a value that does not serialize, an invalid channel.
    pub async fn publish<T: Serialize + ?Sized>(
        &self,
        channel: &str,
        value: &T,
    ) -> Result<(), PubSubError> {
        let outcome = self.try_publish(channel, value).await;
        let counter = match outcome {
            Ok(()) => &self.feed.counters.published,
            Err(_) => &self.feed.counters.publish_failed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        outcome
    }

    async fn try_publish<T: Serialize + ?Sized>(
        &self,
        channel: &str,
        value: &T,
    ) -> Result<(), PubSubError> {
        validate(channel)?;
        let payload = serde_json::to_vec(value).map_err(|e| PubSubError::Encode(e.to_string()))?;
        let full = format!("{}{channel}", self.prefix);
        let Some(client) = &self.feed.client else {
            self.feed
                .deliver(Kind::Channel, &full, &full, payload.into());
            return Ok(());
        };
        let sharded = client.is_cluster() && self.routing == Routing::Sharded;
        let mut cmd = ::redis::cmd(if sharded { "SPUBLISH" } else { "PUBLISH" });
        cmd.arg(&full).arg(payload);
        client
            .run(|mut c| async move { c.command_at_key(&full, cmd).await.map(drop) })
            .await?;
        Ok(())
    }

    /// Subscribes to `channel`: the subscription is confirmed by Redis when this returns.
    ///
    /// # Errors
    /// [`PubSubError::Unavailable`] when Redis is enabled but unreachable (or does not confirm
    /// within a second), an invalid channel.
    pub async fn subscribe<T: DeserializeOwned>(
        &self,
        channel: &str,
    ) -> Result<Subscription<T>, PubSubError> {
        validate(channel)?;
        let kind = match self.routing {
            Routing::Sharded if self.feed.is_cluster() => Kind::Shard,
            _ => Kind::Channel,
        };
        self.start(kind, format!("{}{channel}", self.prefix)).await
    }

    /// Subscribes to every channel matching the glob `pattern` (`*`, `?`, `[a-z]`, `\`
    /// escapes, as Redis reads them), within this handle's prefix.
    ///
    /// # Errors
    /// As [`PubSub::subscribe`], and [`PubSubError::PatternsNeedBroadcast`] unless this
    /// handle uses [`Routing::Broadcast`].
    pub async fn psubscribe<T: DeserializeOwned>(
        &self,
        pattern: &str,
    ) -> Result<Subscription<T>, PubSubError> {
        validate(pattern)?;
        if self.routing != Routing::Broadcast {
            return Err(PubSubError::PatternsNeedBroadcast);
        }
        let full = format!("{}{pattern}", glob_escape(&self.prefix));
        self.start(Kind::Pattern, full).await
    }

    async fn start<T>(&self, kind: Kind, name: String) -> Result<Subscription<T>, PubSubError> {
        let (tx, rx) = mpsc::channel(self.buffer);
        let notices = Arc::new(Notices::default());
        let key = (kind, name);
        let id = self.feed.add(key.clone(), tx, notices.clone());
        let subscription = Subscription {
            rx,
            notices,
            feed: self.feed.clone(),
            key,
            id,
            prefix_len: self.prefix.len(),
            _value: PhantomData,
        };
        // Dropping `subscription` on an error unregisters it again.
        self.feed.confirm().await?;
        Ok(subscription)
    }

    /// The state word of the subscriber connection (see `Feed::link`).
    #[cfg(feature = "l1")]
    pub(crate) fn link(&self) -> &AtomicU64 {
        &self.feed.link
    }

    /// The counters of this handle's subscriber connection.
    pub fn stats(&self) -> PubSubStats {
        let c = &self.feed.counters;
        PubSubStats {
            published: c.published.load(Ordering::Relaxed),
            publish_failed: c.publish_failed.load(Ordering::Relaxed),
            delivered: c.delivered.load(Ordering::Relaxed),
            lagged: c.lagged.load(Ordering::Relaxed),
            undecodable: c.undecodable.load(Ordering::Relaxed),
            gaps: c.gaps.load(Ordering::Relaxed),
            subscriptions: lock(&self.feed.hub)
                .routes
                .values()
                .map(|r| r.len() as u64)
                .sum(),
        }
    }
}

fn validate(channel: &str) -> Result<(), PubSubError> {
    if channel.is_empty() || channel.len() > MAX_CHANNEL_LEN {
        return Err(PubSubError::InvalidChannel(channel.len()));
    }
    Ok(())
}

/// A stream of [`Event`]s from one channel or pattern; unsubscribes when dropped (the last
/// subscription of a channel in this process unsubscribes it from Redis).
///
/// Use it as a `futures` `Stream`, or call [`Subscription::next`].
pub struct Subscription<T> {
    rx: mpsc::Receiver<Delivery>,
    notices: Arc<Notices>,
    feed: Arc<Feed>,
    key: Key,
    id: u64,
    prefix_len: usize,
    _value: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for Subscription<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("channel", &self.key.1)
            .finish_non_exhaustive()
    }
}

impl<T: DeserializeOwned> Subscription<T> {
    /// The next event; `None` only once the subscription can receive nothing more.
    pub async fn next(&mut self) -> Option<Event<T>> {
        std::future::poll_fn(|cx| self.poll_event(cx)).await
    }

    fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<Option<Event<T>>> {
        loop {
            // A notice that did not fit in the buffer comes before what is queued.
            if self.notices.gap.swap(false, Ordering::AcqRel) {
                return Poll::Ready(Some(Event::Gap));
            }
            let lagged = self.notices.lagged.swap(0, Ordering::AcqRel);
            if lagged > 0 {
                return Poll::Ready(Some(Event::Lagged(lagged)));
            }
            let delivery = match self.rx.poll_recv(cx) {
                Poll::Ready(Some(d)) => d,
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            };
            let (channel, payload) = match delivery {
                Delivery::Gap => return Poll::Ready(Some(Event::Gap)),
                Delivery::Message { channel, payload } => (channel, payload),
            };
            match serde_json::from_slice(&payload) {
                Ok(value) => {
                    let channel = channel.get(self.prefix_len..).unwrap_or(&channel);
                    return Poll::Ready(Some(Event::Message {
                        channel: channel.to_owned(),
                        value,
                    }));
                }
                Err(e) => {
                    self.feed
                        .counters
                        .undecodable
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(channel = %channel, error = %e, "pubsub: undecodable message skipped");
                }
            }
        }
    }
}

impl<T: DeserializeOwned> Stream for Subscription<T> {
    type Item = Event<T>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event<T>>> {
        self.get_mut().poll_event(cx)
    }
}

impl<T> Drop for Subscription<T> {
    fn drop(&mut self) {
        self.feed.remove(&self.key, self.id);
    }
}

/// What a subscription listens to: its kind and its full name on Redis (prefix included).
type Key = (Kind, String);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Channel,
    Shard,
    Pattern,
}

enum Delivery {
    Message {
        channel: Arc<str>,
        payload: Arc<[u8]>,
    },
    Gap,
}

/// What could not be queued on a full buffer, yielded before the queue.
#[derive(Default)]
struct Notices {
    gap: AtomicBool,
    lagged: AtomicU64,
}

struct Route {
    id: u64,
    tx: mpsc::Sender<Delivery>,
    notices: Arc<Notices>,
}

#[derive(Default)]
struct Hub {
    routes: HashMap<Key, Vec<Route>>,
    next_id: u64,
}

#[derive(Default)]
struct Counters {
    published: AtomicU64,
    publish_failed: AtomicU64,
    delivered: AtomicU64,
    lagged: AtomicU64,
    undecodable: AtomicU64,
    gaps: AtomicU64,
}

/// The subscriptions of one Redis client (or of one in-process broadcast) and, on Redis, the
/// channel to the task that keeps them subscribed.
pub(crate) struct Feed {
    hub: Mutex<Hub>,
    counters: Counters,
    client: Option<RedisClient>,
    /// The state of the subscriber connection, for the two-level cache: odd while it is down
    /// (or not yet subscribed), even while everything is subscribed; it grows by one at each
    /// change, so a reader that saw an even value and sees it again knows no message was lost
    /// in between.
    #[cfg_attr(not(feature = "l1"), expect(dead_code, reason = "read by the L1 only"))]
    link: AtomicU64,
    /// Asks the task to bring Redis in line with `hub`, and to say when it has.
    sync: Option<mpsc::UnboundedSender<SyncRequest>>,
    /// The task's end of `sync`, until the first subscription starts the task.
    idle: Mutex<Option<mpsc::UnboundedReceiver<SyncRequest>>>,
    me: Weak<Feed>,
}

impl Feed {
    fn new(client: Option<RedisClient>) -> Arc<Self> {
        let (sync, idle) = match client {
            Some(_) => {
                let (tx, rx) = mpsc::unbounded_channel();
                (Some(tx), Some(rx))
            }
            None => (None, None),
        };
        Arc::new_cyclic(|me| Self {
            hub: Mutex::default(),
            counters: Counters::default(),
            client,
            link: AtomicU64::new(1),
            sync,
            idle: Mutex::new(idle),
            me: me.clone(),
        })
    }

    fn is_cluster(&self) -> bool {
        self.client.as_ref().is_some_and(RedisClient::is_cluster)
    }

    fn add(&self, key: Key, tx: mpsc::Sender<Delivery>, notices: Arc<Notices>) -> u64 {
        let mut hub = lock(&self.hub);
        hub.next_id += 1;
        let id = hub.next_id;
        hub.routes
            .entry(key)
            .or_default()
            .push(Route { id, tx, notices });
        id
    }

    fn remove(&self, key: &Key, id: u64) {
        let emptied = {
            let mut hub = lock(&self.hub);
            let Some(routes) = hub.routes.get_mut(key) else {
                return;
            };
            routes.retain(|r| r.id != id);
            let emptied = routes.is_empty();
            if emptied {
                hub.routes.remove(key);
            }
            emptied
        };
        if emptied && let Some(sync) = &self.sync {
            // The task unsubscribes; nobody waits for it.
            let (done, _) = oneshot::channel();
            let _ = sync.send(done);
        }
    }

    /// Waits until the task has subscribed everything in the hub (at once in process).
    async fn confirm(&self) -> Result<(), PubSubError> {
        let (Some(client), Some(sync)) = (&self.client, &self.sync) else {
            return Ok(());
        };
        if !client.available() {
            return Err(PubSubError::Unavailable);
        }
        if let Some(requests) = lock(&self.idle).take() {
            tokio::spawn(run(self.me.clone(), client.clone(), requests));
        }
        let (done, confirmed) = oneshot::channel();
        sync.send(done).map_err(|_| PubSubError::Unavailable)?;
        match tokio::time::timeout(HEARTBEAT, confirmed).await {
            Ok(Ok(outcome)) => outcome,
            _ => Err(PubSubError::Unavailable),
        }
    }

    /// Hands a message to every subscription of `(kind, name)`; in process, also to every
    /// matching pattern.
    fn deliver(&self, kind: Kind, name: &str, channel: &str, payload: Arc<[u8]>) {
        let channel: Arc<str> = channel.into();
        let hub = lock(&self.hub);
        let local = self.client.is_none();
        let routes = hub.routes.iter().filter(|((k, n), _)| {
            if local {
                match k {
                    Kind::Pattern => glob_match(n.as_bytes(), channel.as_bytes()),
                    Kind::Channel | Kind::Shard => n == name,
                }
            } else {
                *k == kind && n == name
            }
        });
        for route in routes.flat_map(|(_, routes)| routes) {
            let message = Delivery::Message {
                channel: channel.clone(),
                payload: payload.clone(),
            };
            match route.tx.try_send(message) {
                Ok(()) => {
                    self.counters.delivered.fetch_add(1, Ordering::Relaxed);
                }
                Err(mpsc::error::TrySendError::Full(_)) => {
                    route.notices.lagged.fetch_add(1, Ordering::AcqRel);
                    self.counters.lagged.fetch_add(1, Ordering::Relaxed);
                }
                // Its subscription is being dropped.
                Err(mpsc::error::TrySendError::Closed(_)) => {}
            }
        }
    }

    /// The connection is lost (or refused): messages may be lost from now on.
    fn lose(&self) {
        let _ = self
            .link
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |w| {
                w.is_multiple_of(2).then_some(w + 1)
            });
    }

    /// Everything is subscribed again.
    fn restore(&self) {
        let _ = self
            .link
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |w| {
                (!w.is_multiple_of(2)).then_some(w + 1)
            });
    }

    /// Tells every subscription that messages may have been lost.
    fn gap(&self) {
        self.counters.gaps.fetch_add(1, Ordering::Relaxed);
        for route in lock(&self.hub).routes.values().flatten() {
            if route.tx.try_send(Delivery::Gap).is_err() {
                route.notices.gap.store(true, Ordering::Release);
            }
        }
        tracing::info!("pubsub: resubscribed after a lost connection; messages may be lost");
    }

    fn wanted(&self) -> HashSet<Key> {
        lock(&self.hub).routes.keys().cloned().collect()
    }
}

/// A request to bring Redis in line with the hub, answered once it is.
type SyncRequest = oneshot::Sender<Result<(), PubSubError>>;

/// The subscriber task: connects, keeps Redis subscribed to what the hub holds, delivers
/// messages, and reconnects (then reports a gap) when the connection is lost. Ends when the
/// feed is dropped.
async fn run(
    feed: Weak<Feed>,
    client: RedisClient,
    mut sync: mpsc::UnboundedReceiver<SyncRequest>,
) {
    let single = !client.is_cluster();
    let mut backoff = MIN_BACKOFF;
    // Whether subscriptions may have missed messages: a gap is due once they are back.
    let mut lost = false;
    loop {
        let (tx, mut pushes) = mpsc::unbounded_channel();
        let mut session = match client.subscriber(tx).await {
            Ok(conn) => Session {
                conn,
                active: HashSet::new(),
                timeout: HEARTBEAT,
            },
            Err(e) => {
                tracing::debug!(error = %e, "pubsub: subscriber cannot connect; retrying");
                lost = true;
                if let Some(feed) = feed.upgrade() {
                    feed.lose();
                }
                if !refuse_for(&mut sync, backoff).await {
                    return;
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        let Some(first) = feed.upgrade() else { return };
        let synced = session.sync(&first).await;
        if let Err(e) = synced {
            tracing::debug!(error = %e, "pubsub: resubscribing failed; reconnecting");
            first.lose();
            lost = true;
            continue;
        }
        first.restore();
        drop(first);
        backoff = MIN_BACKOFF;
        if lost && let Some(feed) = feed.upgrade() {
            feed.gap();
            lost = false;
        }
        let mut heartbeat = tokio::time::interval(HEARTBEAT);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        heartbeat.tick().await;
        loop {
            tokio::select! {
                push = pushes.recv() => {
                    let Some(feed) = feed.upgrade() else { return };
                    if !push.is_some_and(|push| on_push(&feed, push, single, &mut lost)) {
                        feed.lose();
                        lost = true;
                        break;
                    }
                }
                request = sync.recv() => {
                    let (Some(request), Some(feed)) = (request, feed.upgrade()) else { return };
                    // One sync answers everyone who asked before it read the hub (not those
                    // who ask while it runs: their subscriptions may not be in its snapshot).
                    let mut waiting = vec![request];
                    while let Ok(request) = sync.try_recv() {
                        waiting.push(request);
                    }
                    let outcome = session.sync(&feed).await;
                    let failed = outcome.is_err();
                    for request in waiting {
                        let _ = request.send(outcome.clone());
                    }
                    if failed && single {
                        feed.lose();
                        lost = true;
                        break;
                    }
                }
                _ = heartbeat.tick(), if single => {
                    if let Err(e) = session.ping().await {
                        tracing::debug!(error = %e, "pubsub: heartbeat failed; reconnecting");
                        if let Some(feed) = feed.upgrade() {
                            feed.lose();
                        }
                        lost = true;
                        break;
                    }
                }
            }
        }
    }
}

/// Sleeps `pause` while answering every request with `Unavailable`; false once the feed is
/// gone.
async fn refuse_for(sync: &mut mpsc::UnboundedReceiver<SyncRequest>, pause: Duration) -> bool {
    let until = tokio::time::Instant::now() + pause;
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(until) => return true,
            request = sync.recv() => match request {
                Some(request) => {
                    let _ = request.send(Err(PubSubError::Unavailable));
                }
                None => return false,
            },
        }
    }
}

/// Handles one push: false when the connection is gone (one Redis: reconnect).
fn on_push(feed: &Feed, push: PushInfo, single: bool, lost: &mut bool) -> bool {
    fn text(v: Option<&Value>) -> Option<&str> {
        match v {
            Some(Value::BulkString(b)) => std::str::from_utf8(b).ok(),
            _ => None,
        }
    }
    fn payload(v: Option<&Value>) -> Option<Arc<[u8]>> {
        match v {
            Some(Value::BulkString(b)) => Some(b.as_slice().into()),
            _ => None,
        }
    }
    let data = &push.data;
    match push.kind {
        PushKind::Message | PushKind::SMessage => {
            let kind = if push.kind == PushKind::Message {
                Kind::Channel
            } else {
                Kind::Shard
            };
            if let (Some(channel), Some(body)) = (text(data.first()), payload(data.get(1))) {
                feed.deliver(kind, channel, channel, body);
            }
        }
        PushKind::PMessage => {
            if let (Some(pattern), Some(channel), Some(body)) =
                (text(data.first()), text(data.get(1)), payload(data.get(2)))
            {
                feed.deliver(Kind::Pattern, pattern, channel, body);
            }
        }
        PushKind::Disconnection if single => return false,
        // A cluster node's connection dropped; redis-rs reconnects and resubscribes it.
        PushKind::Disconnection => {
            feed.lose();
            *lost = true;
        }
        PushKind::Subscribe | PushKind::SSubscribe | PushKind::PSubscribe if *lost => {
            feed.restore();
            feed.gap();
            *lost = false;
        }
        _ => {}
    }
    true
}

/// One subscriber connection and what it is subscribed to.
struct Session {
    conn: Subscriber,
    active: HashSet<Key>,
    timeout: Duration,
}

impl Session {
    /// Subscribes what the hub wants and this connection lacks, unsubscribes the rest.
    async fn sync(&mut self, feed: &Feed) -> Result<(), PubSubError> {
        let wanted = feed.wanted();
        let add: Vec<Key> = wanted.difference(&self.active).cloned().collect();
        let drop: Vec<Key> = self.active.difference(&wanted).cloned().collect();
        for key in add {
            self.change(&key, true).await?;
            self.active.insert(key);
        }
        for key in drop {
            self.change(&key, false).await?;
            self.active.remove(&key);
        }
        Ok(())
    }

    async fn change(&mut self, (kind, name): &Key, on: bool) -> Result<(), PubSubError> {
        let name = name.as_str();
        let changing = async {
            match (&mut self.conn, kind, on) {
                (Subscriber::Single(c), Kind::Pattern, true) => c.psubscribe(name).await,
                (Subscriber::Single(c), Kind::Pattern, false) => c.punsubscribe(name).await,
                (Subscriber::Single(c), _, true) => c.subscribe(name).await,
                (Subscriber::Single(c), _, false) => c.unsubscribe(name).await,
                (Subscriber::Cluster(c), Kind::Pattern, true) => c.psubscribe(name).await,
                (Subscriber::Cluster(c), Kind::Pattern, false) => c.punsubscribe(name).await,
                (Subscriber::Cluster(c), Kind::Shard, true) => c.ssubscribe(name).await,
                (Subscriber::Cluster(c), Kind::Shard, false) => c.sunsubscribe(name).await,
                (Subscriber::Cluster(c), Kind::Channel, true) => c.subscribe(name).await,
                (Subscriber::Cluster(c), Kind::Channel, false) => c.unsubscribe(name).await,
            }
        };
        match tokio::time::timeout(self.timeout, changing).await {
            Ok(outcome) => Ok(outcome?),
            Err(_) => Err(PubSubError::Unavailable),
        }
    }

    async fn ping(&mut self) -> Result<(), PubSubError> {
        let Subscriber::Single(conn) = &mut self.conn else {
            return Ok(());
        };
        let ping = ::redis::cmd("PING");
        match tokio::time::timeout(self.timeout, ping.exec_async(conn)).await {
            Ok(outcome) => Ok(outcome?),
            Err(_) => Err(PubSubError::Unavailable),
        }
    }
}

/// Redis' glob (`stringmatchlen`): `*`, `?`, `[...]` with ranges and `^`, `\` escapes.
fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    // Where the last `*` was, and the text position it currently stands for.
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        let step = match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
                continue;
            }
            Some(b'?') => Some(1),
            Some(b'[') => class(pattern, p, text[t]),
            Some(b'\\') if p + 1 < pattern.len() => (pattern[p + 1] == text[t]).then_some(2),
            Some(&c) => (c == text[t]).then_some(1),
            None => None,
        };
        match (step, star) {
            (Some(len), _) => {
                p += len;
                t += 1;
            }
            (None, Some((sp, st))) => {
                p = sp + 1;
                t = st + 1;
                star = Some((sp, st + 1));
            }
            (None, None) => return false,
        }
    }
    pattern[p.min(pattern.len())..].iter().all(|&c| c == b'*')
}

/// Matches `c` against the class opening at `pattern[open]`: the class's length if it
/// matches.
fn class(pattern: &[u8], open: usize, c: u8) -> Option<usize> {
    let mut i = open + 1;
    let negate = pattern.get(i) == Some(&b'^');
    if negate {
        i += 1;
    }
    let mut matched = false;
    while let Some(&b) = pattern.get(i) {
        match b {
            b']' => break,
            b'\\' if i + 1 < pattern.len() => {
                matched |= pattern[i + 1] == c;
                i += 2;
            }
            _ if pattern.get(i + 1) == Some(&b'-') && i + 2 < pattern.len() => {
                let (lo, hi) = (b.min(pattern[i + 2]), b.max(pattern[i + 2]));
                matched |= (lo..=hi).contains(&c);
                i += 3;
            }
            _ => {
                matched |= b == c;
                i += 1;
            }
        }
    }
    // An unclosed class ends with the pattern, as in Redis.
    let len = (i + 1).min(pattern.len()) - open;
    (matched != negate).then_some(len.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_as_redis_reads_them() {
        let cases: &[(&str, &str, bool)] = &[
            ("events:*", "events:users", true),
            ("events:*", "event:users", false),
            ("*", "", true),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxbyy", false),
            ("h?llo", "hello", true),
            ("h?llo", "hllo", false),
            ("h[ae]llo", "hallo", true),
            ("h[ae]llo", "hillo", false),
            ("h[^e]llo", "hallo", true),
            ("h[^e]llo", "hello", false),
            ("h[a-c]llo", "hbllo", true),
            ("h[a-c]llo", "hdllo", false),
            ("a\\*b", "a*b", true),
            ("a\\*b", "axb", false),
            ("users:\\[1\\]:*", "users:[1]:x", true),
        ];
        for &(pattern, text, want) in cases {
            assert_eq!(
                glob_match(pattern.as_bytes(), text.as_bytes()),
                want,
                "{pattern} ~ {text}"
            );
        }
        let prefix = "app:[v1]*?";
        let escaped = format!("{}*", glob_escape(prefix));
        assert!(glob_match(escaped.as_bytes(), b"app:[v1]*?events"));
        assert!(!glob_match(escaped.as_bytes(), b"app:v*xevents"));
    }

    #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
    struct Note {
        n: u32,
    }

    async fn message(s: &mut Subscription<Note>) -> (String, u32) {
        match tokio::time::timeout(Duration::from_secs(1), s.next()).await {
            Ok(Some(Event::Message { channel, value })) => (channel, value.n),
            other => panic!("expected a message, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn memory_broadcasts_to_channels_and_patterns() {
        let pubsub = PubSub::memory().routing(Routing::Broadcast);
        let mut exact = pubsub.subscribe::<Note>("a:1").await.unwrap();
        let mut all = pubsub.psubscribe::<Note>("a:*").await.unwrap();
        pubsub.publish("a:1", &Note { n: 1 }).await.unwrap();
        pubsub.publish("a:2", &Note { n: 2 }).await.unwrap();
        pubsub.publish("b:1", &Note { n: 3 }).await.unwrap();
        assert_eq!(message(&mut exact).await, ("a:1".to_owned(), 1));
        assert_eq!(message(&mut all).await, ("a:1".to_owned(), 1));
        assert_eq!(message(&mut all).await, ("a:2".to_owned(), 2));
        assert_eq!(pubsub.stats().delivered, 3);
        assert_eq!(pubsub.stats().subscriptions, 2);
        drop(exact);
        assert_eq!(pubsub.stats().subscriptions, 1);
    }

    #[tokio::test]
    async fn a_full_buffer_lags_and_bad_payloads_are_skipped() {
        let pubsub = PubSub::memory().buffer(2);
        let mut slow = pubsub.subscribe::<Note>("c").await.unwrap();
        pubsub.publish("c", "not a note").await.unwrap();
        for n in 0..4 {
            pubsub.publish("c", &Note { n }).await.unwrap();
        }
        // The buffer held the bad payload and note 0; notes 1 to 3 were dropped.
        assert_eq!(slow.next().await, Some(Event::Lagged(3)));
        assert_eq!(message(&mut slow).await, ("c".to_owned(), 0));
        assert_eq!(pubsub.stats().undecodable, 1);
        assert_eq!(pubsub.stats().lagged, 3);
    }

    #[tokio::test]
    async fn bad_channels_and_sharded_patterns_are_refused() {
        let pubsub = PubSub::memory();
        let long = "x".repeat(MAX_CHANNEL_LEN + 1);
        assert_eq!(
            pubsub.publish(&long, &1).await,
            Err(PubSubError::InvalidChannel(MAX_CHANNEL_LEN + 1))
        );
        assert_eq!(
            pubsub.subscribe::<u32>("").await.unwrap_err(),
            PubSubError::InvalidChannel(0)
        );
        assert_eq!(
            pubsub.psubscribe::<u32>("a:*").await.unwrap_err(),
            PubSubError::PatternsNeedBroadcast
        );
    }
}
