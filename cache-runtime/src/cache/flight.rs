//! Single flight: concurrent misses on one key share one load.
//!
//! The leader publishes the encoded entry to its followers through a watch channel before it
//! writes the entry to the store, and leaves the table only after that write, so a caller
//! arriving in between either joins the flight or finds the entry. A leader that is cancelled
//! drops its sender; its followers then elect a new leader. Followers wait at most the flight
//! timeout, then load on their own: one hung load does not hold every later caller of its key
//! (REVIEW R15).

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rustc_hash::FxBuildHasher;
use tokio::sync::watch;

use crate::sync::lock;

/// What a finished flight produced: the encoded entry, or nothing to share (e.g. an `Err`).
pub(crate) type Outcome = Option<Arc<[u8]>>;

/// Finished-flight counters, striped by key hash: a leader looks again before loading only when
/// a flight on (probably) its own key finished meanwhile, not whenever any flight did.
const STRIPES: usize = 4096;

/// A flight in the table: the channel its outcome comes on.
type Slot = watch::Receiver<Option<Outcome>>;

#[derive(Debug)]
pub(crate) struct Flights {
    table: Mutex<HashMap<Arc<str>, Slot>>,
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
    /// A ticket for `key`: compare it with a later [`Flights::ticket`] to learn whether a
    /// flight on the key (or one sharing its stripe) finished in between.
    pub(crate) fn ticket(&self, key: &str) -> u64 {
        self.finished[self.stripe(key)].load(Ordering::Acquire)
    }

    fn stripe(&self, key: &str) -> usize {
        // Fx, not a keyed hash: keys chosen to share a stripe would only cost second reads.
        // Truncation is fine: any bits pick a stripe.
        #[allow(clippy::cast_possible_truncation)]
        let hash = FxBuildHasher.hash_one(key) as usize;
        hash % STRIPES
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Arc<str>, Slot>> {
        lock(&self.table)
    }

    /// Joins the flight on `key`, or starts one.
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

/// How following a flight ended.
pub(crate) enum Followed {
    /// The leader finished with this outcome.
    Finished(Outcome),
    /// The leader was cancelled: elect a new one.
    Vanished,
    /// The leader took longer than the flight timeout: load without it.
    TimedOut,
}

impl Flights {
    /// Waits at most `timeout` for the flight on `key`. A flight that outlasts it is taken out
    /// of the table: its leader may be hung, and later callers start a flight of their own
    /// instead of joining it (the hung leader, should it finish, leaves the new one alone).
    pub(crate) async fn follow(
        &self,
        key: &str,
        mut rx: watch::Receiver<Option<Outcome>>,
        timeout: Duration,
    ) -> Followed {
        let waited = tokio::time::timeout(timeout, rx.wait_for(Option::is_some))
            .await
            .map(|finished| finished.map(|v| v.clone().flatten()));
        match waited {
            Ok(Ok(outcome)) => Followed::Finished(outcome),
            Ok(Err(_)) => Followed::Vanished,
            Err(_) => {
                let mut table = self.lock();
                if table.get(key).is_some_and(|slot| slot.same_channel(&rx)) {
                    table.remove(key);
                }
                Followed::TimedOut
            }
        }
    }
}

pub(crate) struct Leader<'a> {
    flights: &'a Flights,
    key: Arc<str>,
    stripe: usize,
    tx: watch::Sender<Option<Outcome>>,
    /// Already out of the table (see [`Leader::leave_and_publish`]).
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

    fn remove(&self, table: &mut HashMap<Arc<str>, Slot>) {
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

#[cfg(test)]
mod tests {
    use super::*;

    const LONG: Duration = Duration::from_secs(60);

    #[tokio::test]
    async fn followers_get_the_leaders_outcome() {
        let flights = Flights::default();
        let Join::Leader(leader) = flights.join("k") else {
            panic!("first caller leads")
        };
        let Join::Follower(rx) = flights.join("k") else {
            panic!("second caller follows")
        };
        let ticket = flights.ticket("k");
        leader.publish(Some(Arc::from(&b"v"[..])));
        drop(leader);
        let followed = flights.follow("k", rx, LONG).await;
        assert!(matches!(followed, Followed::Finished(Some(v)) if &*v == b"v"));
        assert_ne!(
            flights.ticket("k"),
            ticket,
            "a finished flight moves the ticket"
        );
        assert!(
            matches!(flights.join("k"), Join::Leader(_)),
            "the table is empty again"
        );
    }

    #[tokio::test]
    async fn a_vanished_leader_is_noticed() {
        let flights = Flights::default();
        let leader = flights.join("k");
        let Join::Follower(rx) = flights.join("k") else {
            panic!()
        };
        drop(leader);
        assert!(matches!(
            flights.follow("k", rx, LONG).await,
            Followed::Vanished
        ));
    }

    /// R15: a hung leader holds a follower at most the flight timeout, and later callers
    /// start a flight of their own instead of joining it.
    #[tokio::test]
    async fn r15_a_hung_leader_holds_no_one_past_the_timeout() {
        let flights = Flights::default();
        let timeout = Duration::from_millis(50);
        let hung = flights.join("k");
        let Join::Follower(rx) = flights.join("k") else {
            panic!()
        };
        let started = std::time::Instant::now();
        assert!(matches!(
            flights.follow("k", rx, timeout).await,
            Followed::TimedOut
        ));
        assert!(started.elapsed() < Duration::from_secs(5));
        let Join::Leader(new) = flights.join("k") else {
            panic!("a flight that outlasted the timeout is not joined")
        };
        drop(hung);
        assert!(
            matches!(flights.join("k"), Join::Follower(_)),
            "the hung leader, finishing, left the new flight in place"
        );
        drop(new);
    }
}
