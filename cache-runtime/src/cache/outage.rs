//! Invalidations that could not reach Redis: queued, and replayed before Redis serves again.
//!
//! While the queue holds anything the breaker stays open (the queue is a [`CloseGate`]), so no
//! instance of this process reads from Redis an entry that one of these invalidations would
//! have made stale. Replay takes the whole queue out under the lock and merges back what did
//! not get through, so an invalidation queued during a replay is never lost (REVIEW R4); it
//! goes in chunks under its own, longer timeout (R11); past [`MAX_PENDING`] patterns, one epoch
//! bump replaces them all.

use std::collections::BTreeSet;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::key::Pattern;
use super::store::redis::{Mode, RedisCacheStore};
use crate::redis::{CloseGate, RedisClient};
use crate::sync::lock;

/// Distinct patterns the queue keeps; beyond, one bump of the epoch stands for all of them.
pub(crate) const MAX_PENDING: usize = 1_000;
/// Patterns per replayed script call.
const REPLAY_CHUNK: usize = 256;

#[derive(Debug, Default)]
struct Pending {
    patterns: BTreeSet<Pattern>,
    overflowed: bool,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.patterns.is_empty() && !self.overflowed
    }

    fn add(&mut self, patterns: impl IntoIterator<Item = Pattern>) {
        if self.overflowed {
            return;
        }
        self.patterns.extend(patterns);
        if self.patterns.len() > MAX_PENDING {
            self.patterns.clear();
            self.overflowed = true;
        }
    }
}

/// The queue, and the store it replays into.
#[derive(Debug)]
pub(crate) struct OutageQueue {
    pending: Mutex<Pending>,
    /// Patterns taken out for a replay that has not finished: still pending for everyone who
    /// asks.
    replaying: AtomicUsize,
    store: RedisCacheStore,
    /// `CACHE_OUTAGE_FILE`: exists while the queue is not empty (REVIEW R10).
    file: Option<PathBuf>,
}

impl OutageQueue {
    pub(crate) fn new(store: RedisCacheStore, file: Option<PathBuf>) -> Self {
        Self {
            pending: Mutex::default(),
            replaying: AtomicUsize::new(0),
            store,
            file,
        }
    }

    fn client(&self) -> &RedisClient {
        self.store.client()
    }

    /// Queues `patterns` if Redis does not serve now; false when it does (send them then).
    /// The check and the push happen under the lock the breaker closes under.
    pub(crate) fn hold_if_down(&self, patterns: &[Pattern]) -> bool {
        let mut pending = lock(&self.pending);
        if self.client().available() {
            return false;
        }
        self.add(&mut pending, patterns.iter().cloned());
        true
    }

    /// Queues `patterns` that failed to reach Redis, and opens the breaker so that Redis stops
    /// serving until they are replayed.
    pub(crate) fn hold_failed(&self, patterns: &[Pattern]) {
        self.add(&mut lock(&self.pending), patterns.iter().cloned());
        self.client()
            .trip("an invalidation did not reach redis; queued");
    }

    fn add(&self, pending: &mut Pending, patterns: impl IntoIterator<Item = Pattern>) {
        let was_empty = pending.is_empty();
        pending.add(patterns);
        if was_empty
            && let Some(file) = &self.file
            && let Err(e) = std::fs::write(file, std::process::id().to_string())
        {
            tracing::warn!(file = %file.display(), error = %e, "cannot write CACHE_OUTAGE_FILE");
        }
    }

    /// Patterns waiting for Redis, those being replayed included.
    pub(crate) fn len(&self) -> usize {
        let pending = lock(&self.pending);
        let queued = if pending.overflowed {
            MAX_PENDING + 1
        } else {
            pending.patterns.len()
        };
        queued + self.replaying.load(Ordering::Acquire)
    }

    fn emptied(&self, pending: &Pending) {
        if pending.is_empty()
            && let Some(file) = &self.file
        {
            let _ = std::fs::remove_file(file);
        }
    }

    /// Sends everything queued, whatever the breaker says, each chunk within `timeout`; true
    /// when the queue was emptied (new arrivals aside).
    pub(crate) async fn replay(&self, timeout: Duration) -> bool {
        let (patterns, overflowed) = {
            let mut pending = lock(&self.pending);
            let taken = std::mem::take(&mut *pending);
            if taken.is_empty() {
                return true;
            }
            let patterns: Vec<Pattern> = if taken.overflowed {
                vec![Pattern::All]
            } else {
                taken.patterns.into_iter().collect()
            };
            self.replaying.fetch_add(patterns.len(), Ordering::AcqRel);
            (patterns, taken.overflowed)
        };
        let mut sent = 0;
        for chunk in patterns.chunks(REPLAY_CHUNK) {
            if let Err(e) = self.store.bump_in(chunk, Mode::Unguarded(timeout)).await {
                tracing::debug!(error = %e, "replaying queued invalidations failed; will retry");
                let mut pending = lock(&self.pending);
                if overflowed {
                    pending.patterns.clear();
                    pending.overflowed = true;
                } else {
                    pending.add(patterns[sent..].iter().cloned());
                }
                self.replaying.fetch_sub(patterns.len(), Ordering::AcqRel);
                return false;
            }
            sent += chunk.len();
        }
        let pending = lock(&self.pending);
        self.replaying.fetch_sub(patterns.len(), Ordering::AcqRel);
        self.emptied(&pending);
        drop(pending);
        tracing::info!(
            count = patterns.len(),
            epoch = overflowed,
            "replayed invalidations queued while redis was unreachable"
        );
        true
    }

    /// Start-up: a predecessor left invalidations behind that nobody will replay, so every
    /// entry from before this start is stale. Queues an epoch bump (replayed before Redis
    /// serves).
    pub(crate) fn adopt_leftovers(&self) {
        let Some(file) = &self.file else { return };
        if file.exists() {
            tracing::warn!(
                file = %file.display(),
                "a previous process left invalidations unreplayed; invalidating every entry"
            );
            self.add(&mut lock(&self.pending), [Pattern::All]);
            self.client()
                .trip("invalidations of a previous process were lost");
        }
    }

    fn replay_timeout(&self) -> Duration {
        self.client().admin_timeout()
    }
}

impl CloseGate for OutageQueue {
    fn prepare<'a>(
        &'a self,
        _: &'a RedisClient,
    ) -> Pin<Box<dyn Future<Output = bool> + Send + 'a>> {
        Box::pin(self.replay(self.replay_timeout()))
    }

    fn holds_back(&self) -> bool {
        self.len() > 0
    }

    fn close_if_clear(&self, close: &mut dyn FnMut()) -> bool {
        let pending = lock(&self.pending);
        if !pending.is_empty() {
            return false;
        }
        close();
        self.emptied(&pending);
        true
    }
}
