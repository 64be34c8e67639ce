//! Single flight: concurrent misses on one key share one load.
//!
//! The leader publishes the encoded entry to its followers through a watch channel before it
//! writes the entry to the store, and leaves the table only after that write, so a caller
//! arriving in between either joins the flight or finds the entry. A leader that is cancelled
//! drops its sender; its followers then elect a new leader.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

/// What a finished flight produced: the encoded entry, or nothing to share (e.g. an `Err`).
pub(crate) type Outcome = Option<Arc<[u8]>>;

#[derive(Debug, Default)]
pub(crate) struct Flights {
    table: Mutex<HashMap<String, watch::Receiver<Option<Outcome>>>>,
    /// Bumped whenever a flight leaves the table: a caller that missed before a flight finished
    /// must look again before loading.
    finished: AtomicU64,
}

pub(crate) enum Join<'a> {
    Leader(Leader<'a>),
    Follower(watch::Receiver<Option<Outcome>>),
}

impl Flights {
    pub(crate) fn finished(&self) -> u64 {
        self.finished.load(Ordering::Acquire)
    }

    pub(crate) fn join(&self, key: &str) -> Join<'_> {
        let mut table = self
            .table
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(rx) = table.get(key)
            && rx.has_changed().is_ok()
        {
            return Join::Follower(rx.clone());
        }
        let (tx, rx) = watch::channel(None);
        table.insert(key.to_owned(), rx);
        Join::Leader(Leader {
            flights: self,
            key: key.to_owned(),
            tx,
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
    key: String,
    tx: watch::Sender<Option<Outcome>>,
}

impl Leader<'_> {
    /// Hands the outcome to the followers (the leader keeps its place until dropped).
    pub(crate) fn publish(&self, outcome: Outcome) {
        self.tx.send_replace(Some(outcome));
    }
}

impl Drop for Leader<'_> {
    fn drop(&mut self) {
        let mut table = self
            .flights
            .table
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if table
            .get(&self.key)
            .is_some_and(|rx| rx.same_channel(&self.tx.subscribe()))
        {
            table.remove(&self.key);
        }
        self.flights.finished.fetch_add(1, Ordering::Release);
    }
}
