//! Single flight: concurrent misses on one key share one load.
//!
//! The leader publishes the encoded entry to its followers through a watch channel before it
//! writes the entry to the store, and leaves the table only after that write, so a caller
//! arriving in between either joins the flight or finds the entry. A leader that is cancelled
//! drops its sender; its followers then elect a new leader.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use rustc_hash::FxBuildHasher;
use tokio::sync::watch;

/// What a finished flight produced: the encoded entry, or nothing to share (e.g. an `Err`).
pub(crate) type Outcome = Option<Arc<[u8]>>;

/// Finished-flight counters, striped by key hash: a leader looks again before loading only when
/// a flight on (probably) its own key finished meanwhile, not whenever any flight did. With 64
/// concurrent misses on distinct keys, about 1.5% of them share a stripe.
const STRIPES: usize = 4096;

#[derive(Debug)]
pub(crate) struct Flights {
    table: Mutex<HashMap<Arc<str>, watch::Receiver<Option<Outcome>>>>,
    /// Bumped whenever a flight leaves the table: a caller that missed before a flight on its
    /// key finished must look again before loading.
    finished: Box<[AtomicU64]>,
}

impl Default for Flights {
    fn default() -> Self {
        Self {
            table: Mutex::default(),
            finished: (0..STRIPES).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

pub(crate) enum Join<'a> {
    Leader(Leader<'a>),
    Follower(watch::Receiver<Option<Outcome>>),
}

impl Flights {
    /// A ticket for `key`: compare it with a later [`Flights::finished`] to learn whether a
    /// flight on the key (or one sharing its stripe) finished in between.
    pub(crate) fn finished(&self, key: &str) -> u64 {
        self.finished[self.stripe(key)].load(Ordering::Acquire)
    }

    fn stripe(&self, key: &str) -> usize {
        // Fx, not a keyed hash: keys chosen to share a stripe would only cost second reads.
        // Truncation is fine: any bits pick a stripe.
        #[allow(clippy::cast_possible_truncation)]
        let hash = FxBuildHasher.hash_one(key) as usize;
        hash % STRIPES
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Arc<str>, watch::Receiver<Option<Outcome>>>> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn join(&self, key: &str) -> Join<'_> {
        let mut table = self.lock();
        if let Some(rx) = table.get(key)
            && rx.has_changed().is_ok()
        {
            return Join::Follower(rx.clone());
        }
        let (tx, rx) = watch::channel(None);
        let key: Arc<str> = key.into();
        table.insert(key.clone(), rx);
        Join::Leader(Leader {
            flights: self,
            stripe: self.stripe(&key),
            key,
            tx,
            left: false,
        })
    }
}

/// Waits for a flight: `Ok(outcome)` when it finished, `Err(())` when its leader vanished.
pub(crate) async fn follow(mut rx: watch::Receiver<Option<Outcome>>) -> Result<Outcome, ()> {
    match rx.wait_for(Option::is_some).await {
        Ok(v) => Ok(v.clone().flatten()),
        Err(_) => Err(()),
    }
}

pub(crate) struct Leader<'a> {
    flights: &'a Flights,
    key: Arc<str>,
    stripe: usize,
    tx: watch::Sender<Option<Outcome>>,
    /// Already out of the table (see [`Leader::leave`]).
    left: bool,
}

impl Leader<'_> {
    /// Hands the outcome to the followers (the leader keeps its place until dropped).
    pub(crate) fn publish(&self, outcome: Outcome) {
        self.tx.send_replace(Some(outcome));
    }

    /// Leaves the table before publishing, for a result that is not stored anywhere: no caller
    /// can join any more, so the outcome is built (by `share`) only if someone already has.
    pub(crate) fn leave_and_publish(mut self, share: impl FnOnce() -> Outcome) {
        let followers = {
            let mut table = self.flights.lock();
            self.remove(&mut table);
            self.tx.receiver_count()
        };
        self.left = true;
        if followers > 0 {
            self.publish(share());
        }
    }

    fn remove(&self, table: &mut HashMap<Arc<str>, watch::Receiver<Option<Outcome>>>) {
        if table
            .get(&self.key)
            .is_some_and(|rx| rx.same_channel(&self.tx.subscribe()))
        {
            table.remove(&self.key);
        }
        self.flights.finished[self.stripe].fetch_add(1, Ordering::Release);
    }
}

impl Drop for Leader<'_> {
    fn drop(&mut self) {
        if !self.left {
            let mut table = self.flights.lock();
            self.remove(&mut table);
        }
    }
}
