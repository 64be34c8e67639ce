//! [`Degrading`]: Redis while its breaker is closed, else the in-process store (if any), else
//! nothing; a fill goes back to the store (and outage) its read came from, and an invalidation
//! that cannot reach Redis waits in the outage queue.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::memory::MemoryStore;
#[cfg(feature = "redis")]
use super::redis::RedisCacheStore;
use super::{Budget, CacheStore, Fetched, Fill, Origin, StoreError};
use crate::cache::key::Pattern;
#[cfg(feature = "l1")]
use crate::cache::l1::L1;
#[cfg(feature = "redis")]
use crate::cache::outage::OutageQueue;
use crate::cache::stats::Mode;

#[derive(Debug)]
pub(crate) struct Degrading {
    #[cfg(feature = "redis")]
    redis: Option<(RedisCacheStore, Arc<OutageQueue>)>,
    /// In front of Redis, with `CACHE_L1`.
    #[cfg(feature = "l1")]
    l1: Option<Arc<L1>>,
    memory: Option<MemoryStore>,
    /// While Redis is enabled but not serving, in-process entries live at most this long
    /// (REVIEW R9): other instances may be writing through Redis meanwhile.
    fallback_ttl: Duration,
}

impl Degrading {
    /// The stores; with Redis, its outage queue is created and registered with the client as a
    /// gate the breaker closes through. `outage_file`: see [`crate::Config::outage_file`].
    pub(crate) fn new(
        #[cfg(feature = "redis")] redis: Option<RedisCacheStore>,
        #[cfg(feature = "l1")] l1: Option<Arc<L1>>,
        memory: Option<MemoryStore>,
        fallback_ttl: Duration,
        outage_file: Option<PathBuf>,
    ) -> Self {
        #[cfg(feature = "redis")]
        let redis = redis.map(|redis| {
            let queue = Arc::new(OutageQueue::new(redis.clone(), outage_file));
            let gate: Arc<dyn crate::redis::CloseGate> = queue.clone();
            redis.client().add_gate(Arc::downgrade(&gate));
            queue.adopt_leftovers();
            (redis, queue)
        });
        #[cfg(not(feature = "redis"))]
        let _ = outage_file;
        Self {
            #[cfg(feature = "redis")]
            redis,
            #[cfg(feature = "l1")]
            l1,
            memory,
            fallback_ttl,
        }
    }

    #[cfg(feature = "redis")]
    pub(crate) fn redis(&self) -> Option<&RedisCacheStore> {
        self.redis.as_ref().map(|(redis, _)| redis)
    }

    #[cfg(feature = "redis")]
    pub(crate) fn outage(&self) -> Option<&OutageQueue> {
        self.redis.as_ref().map(|(_, queue)| &**queue)
    }

    /// The store that serves now: one atomic load.
    pub(crate) fn serving(&self) -> Origin {
        #[cfg(feature = "redis")]
        if let Some(redis) = self.redis() {
            let state = redis.client().serving_epoch();
            return match (state & 1 == 0, &self.memory) {
                (true, _) => Origin::Redis,
                (false, Some(_)) => Origin::Memory { epoch: state },
                (false, None) => Origin::Nowhere,
            };
        }
        match self.memory {
            Some(_) => Origin::Memory { epoch: 0 },
            None => Origin::Nowhere,
        }
    }

    /// The read when it needs no I/O (the in-process store serves, or nothing does), without a
    /// detour through a future: such a call costs a few hundred nanoseconds, and awaiting would
    /// be a good part of it. `None` when Redis serves.
    pub(crate) fn fetch_without_io(&self, key: &str) -> Option<Fetched> {
        match (self.serving(), &self.memory) {
            (Origin::Redis, _) => None,
            (Origin::Memory { epoch }, Some(memory)) => Some(memory.fetch_at(key, epoch)),
            _ => Some(Fetched::default()),
        }
    }

    /// The L1's entry under `key` while Redis serves (the L1 checked its generations).
    #[cfg(feature = "l1")]
    pub(crate) fn l1_get(&self, key: &str) -> Option<Arc<crate::cache::l1::Entry>> {
        let l1 = self.l1.as_ref()?;
        if self.serving() != Origin::Redis {
            return None;
        }
        l1.get(key)
    }

    /// The L1, when there is one.
    #[cfg(feature = "l1")]
    pub(crate) fn l1(&self) -> Option<&L1> {
        self.l1.as_deref()
    }

    /// [`CacheStore::fetch_one`], through the L1's table when `l1`: when it knows the key's
    /// markers, the entry alone is read; otherwise the read takes a ticket, so that what it
    /// finds can go into the L1.
    pub(crate) async fn fetch_one_for(
        &self,
        key: &str,
        budget: &mut Budget,
        l1: bool,
    ) -> Result<Fetched, StoreError> {
        #[cfg(feature = "l1")]
        if let (true, Origin::Redis, Some(redis), Some(cache)) =
            (l1, self.serving(), self.redis(), &self.l1)
        {
            if let Some((gens, ticket)) = cache.known(key) {
                return Ok(Fetched {
                    value: redis.get_entry(key, budget).await?,
                    gens,
                    origin: Origin::Redis,
                    l1: ticket,
                });
            }
            let ticket = cache.ticket();
            let mut fetched = redis.fetch_one(key, budget).await?;
            fetched.l1 = ticket;
            return Ok(fetched);
        }
        let _ = l1;
        self.fetch_one(key, budget).await
    }

    /// Keeps a value read or loaded from Redis in the L1 (when its read had a ticket).
    pub(crate) fn fill_l1(
        &self,
        key: &str,
        fetched: &Fetched,
        bytes: &Arc<[u8]>,
        typed: Option<super::Typed>,
        ttl: Duration,
    ) {
        #[cfg(feature = "l1")]
        if let (Some(ticket), Some(l1)) = (fetched.l1, &self.l1) {
            l1.fill(key, bytes.clone(), typed, &fetched.gens, ticket, ttl);
        }
        #[cfg(not(feature = "l1"))]
        let _ = (key, fetched, bytes, typed, ttl);
    }

    pub(crate) fn mode(&self) -> Mode {
        match self.serving() {
            Origin::Redis => Mode::Redis,
            Origin::Memory { .. } => Mode::Memory,
            Origin::Nowhere => Mode::Disabled,
        }
    }

    /// In-process TTLs are capped while the in-process store stands in for Redis.
    fn memory_ttl(&self, ttl: Duration) -> Duration {
        #[cfg(feature = "redis")]
        if self.redis.is_some() {
            return ttl.min(self.fallback_ttl);
        }
        let _ = self.fallback_ttl;
        ttl
    }
}

impl Degrading {
    /// [`CacheStore::bump`] for administration (`clear`): within `timeout` rather than the
    /// operation timeout, and a timeout does not count against Redis (a failure still queues
    /// the patterns and stops Redis from serving until they are replayed).
    pub(crate) async fn bump_for_admin(
        &self,
        patterns: &[Pattern],
        timeout: std::time::Duration,
    ) -> Result<(), StoreError> {
        self.bump_as(patterns, Some(timeout)).await
    }

    async fn bump_as(
        &self,
        patterns: &[Pattern],
        admin: Option<std::time::Duration>,
    ) -> Result<(), StoreError> {
        if let Some(memory) = &self.memory {
            memory.bump_now(patterns);
        }
        #[cfg(feature = "redis")]
        if let Some((redis, queue)) = &self.redis {
            if queue.hold_if_down(patterns) {
                tracing::debug!(?patterns, "redis down; invalidation queued");
                if redis.client().answers_while_open() {
                    // Redis answers but may not serve (its replicas could not confirm an
                    // invalidation): other instances read from it, so tell them now too.
                    let best_effort = super::redis::Mode::BestEffort(redis.client().op_timeout());
                    let bumped = redis.bump_in(patterns, best_effort).await;
                    self.raise_l1(patterns, bumped.as_deref().ok());
                } else {
                    self.raise_l1(patterns, None);
                }
                return Ok(());
            }
            let mode = admin.map_or(super::redis::Mode::Guarded, super::redis::Mode::Unguarded);
            match redis.bump_in(patterns, mode).await {
                Ok(gens) => self.raise_l1(patterns, Some(&gens)),
                Err(e) => {
                    self.raise_l1(patterns, None);
                    queue.hold_failed(patterns);
                    return Err(e);
                }
            }
        }
        #[cfg(not(feature = "redis"))]
        let _ = admin;
        Ok(())
    }
}

impl Degrading {
    /// This process's own bump, before it returns: the L1 raises the markers to the bump's
    /// generations, or forgets everything when they are unknown (the bump failed, or was
    /// queued).
    #[cfg(feature = "redis")]
    fn raise_l1(&self, patterns: &[Pattern], gens: Option<&[u64]>) {
        #[cfg(feature = "l1")]
        if let Some(l1) = &self.l1 {
            match gens {
                Some(gens) if gens.len() == patterns.len() => {
                    l1.raise(
                        patterns
                            .iter()
                            .map(Pattern::marker)
                            .zip(gens.iter().copied()),
                    );
                }
                _ => l1.flush(),
            }
        }
        #[cfg(not(feature = "l1"))]
        let _ = (patterns, gens);
    }
}

impl CacheStore for Degrading {
    async fn fetch(&self, keys: &[&str], budget: &mut Budget) -> Result<Vec<Fetched>, StoreError> {
        #[cfg(not(feature = "redis"))]
        let _ = budget;
        match (self.serving(), &self.memory) {
            #[cfg(feature = "redis")]
            (Origin::Redis, _) => match self.redis() {
                Some(redis) => redis.fetch(keys, budget).await,
                None => Ok(keys.iter().map(|_| Fetched::default()).collect()),
            },
            (Origin::Memory { epoch }, Some(memory)) => {
                Ok(keys.iter().map(|k| memory.fetch_at(k, epoch)).collect())
            }
            _ => Ok(keys.iter().map(|_| Fetched::default()).collect()),
        }
    }

    async fn fetch_one(&self, key: &str, budget: &mut Budget) -> Result<Fetched, StoreError> {
        #[cfg(not(feature = "redis"))]
        let _ = budget;
        match (self.serving(), &self.memory) {
            #[cfg(feature = "redis")]
            (Origin::Redis, _) => match self.redis() {
                Some(redis) => redis.fetch_one(key, budget).await,
                None => Ok(Fetched::default()),
            },
            (Origin::Memory { epoch }, Some(memory)) => Ok(memory.fetch_at(key, epoch)),
            _ => Ok(Fetched::default()),
        }
    }

    async fn prepare_fill(
        &self,
        keys: &[&str],
        fetched: &mut [Fetched],
        budget: &mut Budget,
    ) -> Result<(), StoreError> {
        #[cfg(feature = "redis")]
        if let Some(redis) = self.redis()
            && fetched.iter().any(|f| f.origin == Origin::Redis)
        {
            return redis.prepare_fill(keys, fetched, budget).await;
        }
        let _ = (keys, fetched, budget);
        Ok(())
    }

    async fn put(
        &self,
        fills: &[Fill<'_>],
        ttl: Duration,
        budget: &mut Budget,
    ) -> Result<(), StoreError> {
        let serving = self.serving();
        match (serving, &self.memory) {
            #[cfg(feature = "redis")]
            (Origin::Redis, _) => {
                let Some(redis) = self.redis() else {
                    return Ok(());
                };
                if fills.iter().all(|f| f.origin == serving) {
                    return redis.put(fills, ttl, budget).await;
                }
                let same: Vec<Fill<'_>> = fills
                    .iter()
                    .filter(|f| f.origin == serving)
                    .cloned()
                    .collect();
                if same.is_empty() {
                    return Ok(());
                }
                redis.put(&same, ttl, budget).await
            }
            (Origin::Memory { epoch }, Some(memory)) => {
                let ttl = self.memory_ttl(ttl);
                for fill in fills.iter().filter(|f| f.origin == serving) {
                    memory.put_at(fill, ttl, epoch);
                }
                Ok(())
            }
            _ => {
                let _ = budget;
                Ok(())
            }
        }
    }

    /// Bumps the in-process markers whatever serves (this process then never reads its own
    /// write's old value, even if Redis fails right after), then Redis'; while Redis is down
    /// the patterns wait in the outage queue (`Ok`). `Err` means the send failed: the patterns
    /// are queued then too, and Redis stops serving until they are replayed.
    async fn bump(&self, patterns: &[Pattern]) -> Result<(), StoreError> {
        self.bump_as(patterns, None).await
    }

    async fn sweep(&self, under: &str) -> Result<u64, StoreError> {
        let in_memory = self.memory.as_ref().map_or(0, |m| m.sweep_now(under));
        #[cfg(feature = "redis")]
        if let (Origin::Redis, Some(redis)) = (self.serving(), self.redis()) {
            return Ok(in_memory + redis.sweep(under).await?);
        }
        Ok(in_memory)
    }
}
