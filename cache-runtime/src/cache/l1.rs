//! The two-level cache's L1: decoded entries in process, in front of Redis, served without a
//! round trip only while this process can prove it has seen every invalidation since.
//!
//! * Every entry records the generations of its markers (as in Redis) and holds the slots of
//!   the local [`Table`] where those markers' generations are kept. It is valid while each
//!   slot still holds what the entry recorded: k atomic loads, no lock, no hashing.
//! * The table learns generations from two sources and keeps the larger one (generations only
//!   grow, REVIEW R1), so order and duplicates do not matter: the reads this process makes
//!   from Redis (entry and markers), and the messages every bump publishes in the same script
//!   (`<time> <marker> <generation> ...` on `<prefix>__inv`). Filling never publishes. The
//!   writing process raises its own slots from the bump's reply before `#[invalidates]`
//!   returns, so it never reads its own write's old value.
//! * The table is trusted only while the feed is provably live: the subscriber connection has
//!   not been lost since the table was last flushed (its state word, [`PubSub::link`], is
//!   unchanged) and a message (every instance publishes a heartbeat each second) arrived in
//!   the last [`SILENCE`]. A lost connection, a resubscription, a lag or a silence flushes
//!   the table, which poisons every slot: every entry is invalid at once.
//! * A read from Redis may be overtaken by the message of a bump that followed it, and be
//!   merged after it: the larger generation wins, so the read's entry is invalid, not stale.
//!   A read may also straddle a flush (it read before the messages it missed): each read
//!   carries a [`Ticket`], the flush count when it was sent, and is merged only if no flush
//!   happened since.
//! * Writers outside the cache (`redis-cli`, `FLUSHALL`) publish nothing: an entry is served
//!   at most `CACHE_L1_MAX_TTL` after the oldest generation it was checked against was read
//!   from Redis.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, Instant};

use foldhash::fast::RandomState;
use moka::sync::Cache as Moka;
use smallvec::SmallVec;

use super::markers::{self, Marker};
use super::stats::L1Stats;
use super::store::memory::{Entry as Kept, Lifetime, PerEntryTtl};
use super::store::{Gens, Typed};
use crate::pubsub::{Event, PubSub, Routing};
use crate::sync::{read, write};

/// How long the feed may stay silent (no message, not even a heartbeat) before the L1 stops
/// serving.
pub(crate) const SILENCE: Duration = Duration::from_secs(3);
/// How often each instance publishes a heartbeat.
const HEARTBEAT: Duration = Duration::from_secs(1);
/// The channel, under the cache prefix (the bump script publishes on the same one).
pub(crate) const CHANNEL: &str = "__inv";
/// Markers the table holds before it is flushed (a full flush is rare and always safe).
const MAX_MARKERS: usize = 1 << 18;
/// A slot's value once flushed: no entry records it.
const POISON: u64 = u64::MAX;

/// One marker's generation, shared by the table and the entries that depend on it.
#[derive(Debug)]
pub(crate) struct Slot {
    generation: AtomicU64,
    /// When its generation was last read from Redis (ms since the L1 started).
    read_at: AtomicU64,
}

type Slots = SmallVec<[Arc<Slot>; 4]>;

/// An L1 entry: the value as the in-process store keeps it, and its markers' slots.
pub(crate) struct Entry {
    pub(crate) kept: Arc<Kept>,
    gens: Gens,
    slots: Slots,
}

impl Entry {
    fn valid(&self) -> bool {
        self.slots
            .iter()
            .zip(&self.gens)
            .all(|(slot, &g)| slot.generation.load(Ordering::Acquire) == g)
    }
}

#[derive(Default)]
struct Table {
    all: Option<Arc<Slot>>,
    prefixes: HashMap<Box<str>, Arc<Slot>, RandomState>,
    exact: HashMap<Box<str>, Arc<Slot>, RandomState>,
    flushes: u64,
}

impl Table {
    fn get(&self, marker: Marker<'_>) -> Option<&Arc<Slot>> {
        match marker {
            Marker::All => self.all.as_ref(),
            Marker::Prefix(p) => self.prefixes.get(p),
            Marker::Exact(k) => self.exact.get(k),
        }
    }

    fn get_or_insert(&mut self, marker: Marker<'_>) -> &Arc<Slot> {
        let new = || {
            Arc::new(Slot {
                generation: AtomicU64::new(0),
                read_at: AtomicU64::new(0),
            })
        };
        match marker {
            Marker::All => self.all.get_or_insert_with(new),
            Marker::Prefix(p) => self.prefixes.entry(p.into()).or_insert_with(new),
            Marker::Exact(k) => self.exact.entry(k.into()).or_insert_with(new),
        }
    }

    fn len(&self) -> usize {
        self.prefixes.len() + self.exact.len()
    }

    /// Poisons every slot and forgets them.
    fn flush(&mut self) {
        let slots = self.all.take().into_iter();
        let slots = slots.chain(self.prefixes.drain().map(|(_, s)| s));
        for slot in slots.chain(self.exact.drain().map(|(_, s)| s)) {
            slot.generation.store(POISON, Ordering::Release);
        }
        self.flushes += 1;
    }
}

/// The flush count when a read was sent to Redis: what it read is merged only if no flush
/// came in between.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ticket {
    flushes: u64,
    /// Whether the generations come from Redis now (not from the table, for a read that
    /// fetched the entry only).
    fresh: bool,
}

#[derive(Default)]
struct Counters {
    misses: AtomicU64,
    entry_only_reads: AtomicU64,
    fills: AtomicU64,
    flushes: AtomicU64,
    messages: AtomicU64,
    lag_last_us: AtomicU64,
    lag_max_us: AtomicU64,
}

/// The L1 of one cache.
pub(crate) struct L1 {
    entries: Moka<String, Arc<Entry>, RandomState>,
    table: RwLock<Table>,
    pubsub: PubSub,
    /// The feed's state word at the last flush, or odd (never even) while not trusted.
    trusted: AtomicU64,
    /// When the last message arrived (ms since `started`).
    heard_at: AtomicU64,
    started: Instant,
    max_ttl: Duration,
    /// `CACHE_L1_BYTES=0`: the table alone, no entries (a miss still reads the entry alone).
    keeps_entries: bool,
    counters: Counters,
}

impl std::fmt::Debug for L1 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("L1")
            .field("entries", &self.entries.entry_count())
            .field("live", &self.live())
            .finish_non_exhaustive()
    }
}

impl Lifetime for Entry {
    fn ttl(&self) -> Duration {
        self.kept.ttl()
    }
}

impl L1 {
    /// An L1 of `capacity_bytes` fed by `pubsub` (the cache's, under its prefix); starts the
    /// tasks that follow the feed and publish heartbeats.
    pub(crate) fn start(pubsub: PubSub, capacity_bytes: u64, max_ttl: Duration) -> Arc<Self> {
        let l1 = Arc::new(Self {
            entries: Moka::builder()
                .max_capacity(capacity_bytes)
                .weigher(|k: &String, e: &Arc<Entry>| e.kept.weight(k))
                .expire_after(PerEntryTtl)
                .build_with_hasher(RandomState::default()),
            table: RwLock::default(),
            pubsub: pubsub.routing(Routing::Broadcast),
            trusted: AtomicU64::new(1),
            heard_at: AtomicU64::new(0),
            started: Instant::now(),
            max_ttl,
            keeps_entries: capacity_bytes > 0,
            counters: Counters::default(),
        });
        tokio::spawn(follow(Arc::downgrade(&l1)));
        tokio::spawn(beat(Arc::downgrade(&l1)));
        l1
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Whether the table can be trusted now: no loss since the last flush, and not silent
    /// (the heartbeat task withdraws the trust after [`SILENCE`]; see [`L1::check_silence`]).
    pub(crate) fn live(&self) -> bool {
        let trusted = self.trusted.load(Ordering::Acquire);
        trusted.is_multiple_of(2) && self.pubsub.link().load(Ordering::Acquire) == trusted
    }

    /// Withdraws the trust when no message arrived for [`SILENCE`]: the next message then
    /// flushes the table before it is trusted again.
    fn check_silence(&self) {
        if self.silent() {
            self.trusted.store(1, Ordering::Release);
        }
    }

    fn silent(&self) -> bool {
        let last = self.heard_at.load(Ordering::Acquire);
        self.now_ms().saturating_sub(last) >= millis(SILENCE)
    }

    /// The entry under `key`, if the feed is live and it is still valid (a hit is counted by
    /// the caller, in the prefix's counters).
    pub(crate) fn get(&self, key: &str) -> Option<Arc<Entry>> {
        let found = self
            .live()
            .then(|| self.entries.get(key).filter(|e| e.valid()))
            .flatten();
        if found.is_none() {
            self.counters.misses.fetch_add(1, Ordering::Relaxed);
        }
        found
    }

    /// A ticket for a read about to be sent, if the feed is live.
    pub(crate) fn ticket(&self) -> Option<Ticket> {
        self.live().then(|| Ticket {
            flushes: read(&self.table).flushes,
            fresh: true,
        })
    }

    /// The generations of `key`'s markers, if the table knows them all from reads of the last
    /// `CACHE_L1_MAX_TTL` and the feed is live: then the entry alone needs reading. With a
    /// ticket when what it reads can go into the L1 (not when the L1 keeps no entries: the
    /// table knows these generations already).
    pub(crate) fn known(&self, key: &str) -> Option<(Gens, Option<Ticket>)> {
        if !self.live() {
            return None;
        }
        let oldest = self.now_ms().saturating_sub(millis(self.max_ttl));
        let table = read(&self.table);
        let mut gens = Gens::new();
        for marker in markers::of_key(key) {
            let slot = table.get(marker)?;
            let g = slot.generation.load(Ordering::Acquire);
            if g == 0 || g == POISON || slot.read_at.load(Ordering::Acquire) < oldest {
                return None;
            }
            gens.push(g);
        }
        self.counters
            .entry_only_reads
            .fetch_add(1, Ordering::Relaxed);
        let ticket = Ticket {
            flushes: table.flushes,
            fresh: false,
        };
        Some((gens, self.keeps_entries.then_some(ticket)))
    }

    /// Stores `key`'s value, loaded or read under `gens` with `ticket`, for at most `ttl` (and
    /// `CACHE_L1_MAX_TTL` after its generations were read): merges the generations into the
    /// table, and keeps the entry only if they are still current there.
    pub(crate) fn fill(
        &self,
        key: &str,
        bytes: Arc<[u8]>,
        typed: Option<Typed>,
        gens: &[u64],
        ticket: Ticket,
        ttl: Duration,
    ) {
        if gens.len() != markers::count(key) || gens.contains(&0) {
            return;
        }
        let Some((slots, read_at)) = self.merge(key, gens, ticket) else {
            return;
        };
        if !self.keeps_entries {
            return;
        }
        let age = Duration::from_millis(self.now_ms().saturating_sub(read_at));
        let ttl = ttl.min(self.max_ttl.saturating_sub(age));
        if ttl.is_zero() {
            return;
        }
        let entry = Entry {
            kept: Kept::new(bytes, typed, ttl),
            gens: gens.into(),
            slots,
        };
        if entry.valid() {
            self.entries.insert(key.to_owned(), Arc::new(entry));
            self.counters.fills.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Raises `key`'s markers to `gens` (read with `ticket`); their slots and the oldest time
    /// one of them was read, unless a flush came in between or the feed is not live.
    fn merge(&self, key: &str, gens: &[u64], ticket: Ticket) -> Option<(Slots, u64)> {
        let now = self.now_ms();
        let raise = |slot: &Arc<Slot>, g: u64, read_at: &mut u64| {
            slot.generation.fetch_max(g, Ordering::AcqRel);
            if ticket.fresh {
                slot.read_at.fetch_max(now, Ordering::AcqRel);
            }
            *read_at = (*read_at).min(slot.read_at.load(Ordering::Acquire));
            slot.clone()
        };
        {
            // Usually every marker has a slot already: slots are atomics, a read lock will do.
            let table = read(&self.table);
            if table.flushes != ticket.flushes || !self.live() {
                return None;
            }
            let mut read_at = now;
            let slots: Option<Slots> = markers::of_key(key)
                .zip(gens)
                .map(|(marker, &g)| Some(raise(table.get(marker)?, g, &mut read_at)))
                .collect();
            if let Some(slots) = slots {
                return Some((slots, read_at));
            }
        }
        let mut table = write(&self.table);
        if table.flushes != ticket.flushes || !self.live() {
            return None;
        }
        if table.len() >= MAX_MARKERS {
            tracing::warn!(markers = table.len(), "L1 marker table full; flushed");
            self.flush_table(&mut table);
            return None;
        }
        let mut read_at = now;
        let slots = markers::of_key(key)
            .zip(gens)
            .map(|(marker, &g)| raise(table.get_or_insert(marker), g, &mut read_at))
            .collect();
        Some((slots, read_at))
    }

    /// Applies generations from a message or from this process's own bump.
    pub(crate) fn raise<'k>(&self, bumped: impl IntoIterator<Item = (Marker<'k>, u64)>) {
        let now = self.now_ms();
        let mut table = write(&self.table);
        for (marker, g) in bumped {
            let slot = table.get_or_insert(marker);
            slot.generation.fetch_max(g, Ordering::AcqRel);
            // A bump's generation is as current as a read's.
            slot.read_at.fetch_max(now, Ordering::AcqRel);
        }
        if table.len() >= MAX_MARKERS {
            self.flush_table(&mut table);
        }
    }

    /// Forgets every entry and generation (after a bump whose outcome is unknown): reads
    /// learn them again from Redis.
    pub(crate) fn flush(&self) {
        self.flush_table(&mut write(&self.table));
    }

    fn flush_table(&self, table: &mut Table) {
        table.flush();
        self.entries.invalidate_all();
        self.counters.flushes.fetch_add(1, Ordering::Relaxed);
    }

    /// After a (re)subscription or a gap: flushes, then trusts the table from the feed's
    /// current state on (if it is up; a later loss changes the state word).
    fn resync(&self) {
        let link = self.pubsub.link().load(Ordering::Acquire);
        self.trusted.store(1, Ordering::Release);
        self.flush();
        self.heard_at.store(self.now_ms(), Ordering::Release);
        if link.is_multiple_of(2) {
            self.trusted.store(link, Ordering::Release);
        }
    }

    /// A message: a heartbeat (`[]`), or a bump's `[time, name, generation, ...]`.
    fn on_message(&self, message: &[String]) {
        if self.silent() {
            // Silent for too long: messages may have been lost on the way.
            self.resync();
        }
        let now = self.now_ms();
        self.heard_at.store(now, Ordering::Release);
        let Some((time, pairs)) = message.split_first() else {
            return;
        };
        self.raise(pairs.chunks_exact(2).filter_map(|pair| {
            let g = pair[1].parse::<u64>().ok()?;
            let marker = match pair[0].split_at_checked(1)? {
                ("*", "") => Marker::All,
                ("p", prefix) if !prefix.is_empty() => Marker::Prefix(prefix),
                ("e", key) if !key.is_empty() => Marker::Exact(key),
                _ => return None,
            };
            Some((marker, g))
        }));
        let c = &self.counters;
        c.messages.fetch_add(1, Ordering::Relaxed);
        if let Ok(t) = time.parse::<u64>() {
            let lag = now_us().saturating_sub(t);
            c.lag_last_us.store(lag, Ordering::Relaxed);
            c.lag_max_us.fetch_max(lag, Ordering::Relaxed);
        }
    }

    pub(crate) fn stats(&self) -> L1Stats {
        let c = &self.counters;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        L1Stats {
            hits: 0,
            misses: load(&c.misses),
            entry_only_reads: load(&c.entry_only_reads),
            fills: load(&c.fills),
            flushes: load(&c.flushes),
            live: self.live(),
            messages: load(&c.messages),
            markers: read(&self.table).len() as u64,
            entries: self.entries.entry_count(),
            lag_last_us: load(&c.lag_last_us),
            lag_max_us: load(&c.lag_max_us),
        }
    }
}

/// Follows the feed: subscribes (retrying while Redis is away), then applies messages, and
/// resynchronizes after every gap or lag. Ends with the L1.
async fn follow(l1: Weak<L1>) {
    loop {
        let Some(pubsub) = l1.upgrade().map(|l1| l1.pubsub.clone()) else {
            return;
        };
        let mut feed = match pubsub.subscribe::<Vec<String>>(CHANNEL).await {
            Ok(feed) => feed,
            Err(e) => {
                tracing::debug!(error = %e, "L1: cannot subscribe to invalidations; retrying");
                tokio::time::sleep(Duration::from_millis(250)).await;
                continue;
            }
        };
        match l1.upgrade() {
            Some(l1) => l1.resync(),
            None => return,
        }
        while let Some(event) = feed.next().await {
            let Some(l1) = l1.upgrade() else { return };
            match event {
                Event::Message { value, .. } => l1.on_message(&value),
                Event::Gap | Event::Lagged(_) => l1.resync(),
            }
        }
    }
}

/// Publishes a heartbeat every second (the feed is live only while some message arrives), and
/// checks for silence four times as often.
async fn beat(l1: Weak<L1>) {
    let mut ticks = tokio::time::interval(HEARTBEAT / 4);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for tick in 0u64.. {
        ticks.tick().await;
        let Some(pubsub) = l1.upgrade().map(|l1| {
            l1.check_silence();
            l1.pubsub.clone()
        }) else {
            return;
        };
        if tick.is_multiple_of(4) {
            // Not awaited here: a publish that hangs on a frozen server must not hold up the
            // silence checks.
            tokio::spawn(async move {
                if let Err(e) = pubsub.publish(CHANNEL, &[] as &[String]).await {
                    tracing::debug!(error = %e, "L1: heartbeat not published");
                }
            });
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}
