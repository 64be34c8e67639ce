//! The circuit breaker: consecutive failures open it, and only the recovery task closes it.
//!
//! Its state is one word, `2 × outages + open`: odd while open. One atomic load tells a caller
//! both whether Redis may serve and which outage it is in, so an in-process entry tagged with
//! the state it was read in can never be served in another outage (REVIEW R8): there is no
//! moment at which the breaker is open but the outage count is still the old one.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use rand::RngExt as _;

/// The breaker's state as reported by health checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Circuit {
    /// Redis serves requests.
    Closed,
    /// Redis is skipped; a background task is reconnecting (and replaying what other modules
    /// queued) before it closes the breaker again.
    Open,
}

#[derive(Debug)]
pub(crate) struct Breaker {
    /// `2 × outages + open`.
    state: AtomicU64,
    failures: AtomicU32,
    threshold: u32,
}

impl Breaker {
    /// A breaker that starts open (not connected yet) and opens again after `threshold`
    /// consecutive failures.
    pub(crate) fn new(threshold: u32) -> Self {
        Self {
            state: AtomicU64::new(1),
            failures: AtomicU32::new(0),
            threshold: threshold.max(1),
        }
    }

    /// The state word: changes whenever the breaker opens or closes.
    pub(crate) fn state(&self) -> u64 {
        self.state.load(Ordering::Acquire)
    }

    pub(crate) fn is_open(&self) -> bool {
        self.state() & 1 == 1
    }

    pub(crate) fn circuit(&self) -> Circuit {
        if self.is_open() {
            Circuit::Open
        } else {
            Circuit::Closed
        }
    }

    pub(crate) fn succeeded(&self) {
        // A store only when needed: the healthy path then writes nothing shared.
        if self.failures.load(Ordering::Relaxed) != 0 {
            self.failures.store(0, Ordering::Relaxed);
        }
    }

    /// Counts a failure; true when the breaker should now open.
    pub(crate) fn failed(&self, fatal: bool) -> bool {
        let n = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        fatal || n >= self.threshold
    }

    /// Opens the breaker; the new state if it was closed, `None` if it was open already.
    pub(crate) fn open(&self) -> Option<u64> {
        self.flip(0)
    }

    /// Closes the breaker; the new state if it was open.
    pub(crate) fn close(&self) -> Option<u64> {
        self.failures.store(0, Ordering::Relaxed);
        self.flip(1)
    }

    /// Moves the state word on by one if its open bit is `from`.
    fn flip(&self, from: u64) -> Option<u64> {
        let mut current = self.state();
        while current & 1 == from {
            match self.state.compare_exchange_weak(
                current,
                current + 1,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Some(current + 1),
                Err(actual) => current = actual,
            }
        }
        None
    }
}

/// Reconnect delays: exponential from 50 ms to 2 s with full jitter, so that a fleet of
/// instances does not reconnect in lockstep (REVIEW R21).
#[derive(Debug)]
pub(crate) struct Backoff {
    ceiling: Duration,
}

const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

impl Backoff {
    pub(crate) fn new() -> Self {
        Self {
            ceiling: BACKOFF_MIN,
        }
    }

    /// The next delay: uniform in `[ceiling / 2, ceiling]`, then the ceiling doubles. Half the
    /// range stays as a floor so that a retry never spins.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let ceiling = self.ceiling;
        self.ceiling = (ceiling * 2).min(BACKOFF_MAX);
        let millis = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(rand::rng().random_range(millis / 2..=millis))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_word_counts_outages_and_tells_open() {
        let b = Breaker::new(3);
        assert!(b.is_open(), "starts open until connected");
        assert_eq!(b.close(), Some(2));
        assert_eq!(b.close(), None);
        assert!(!b.failed(false) && !b.failed(false) && b.failed(false));
        assert_eq!(b.open(), Some(3));
        assert_eq!(b.open(), None, "one outage, opened once");
        assert_eq!(b.circuit(), Circuit::Open);
        assert_eq!(b.close(), Some(4));
        b.succeeded();
        assert!(!b.failed(false), "failures reset when it closed");
        assert!(b.failed(true), "a fatal failure opens at once");
    }

    #[test]
    fn backoff_is_jittered_and_bounded() {
        let mut b = Backoff::new();
        let delays: Vec<Duration> = (0..12).map(|_| b.next_delay()).collect();
        assert!(delays[0] >= BACKOFF_MIN / 2 && delays[0] <= BACKOFF_MIN);
        assert!(delays.iter().all(|d| *d <= BACKOFF_MAX));
        assert!(delays[11] >= BACKOFF_MAX / 2);
        let mut other = Backoff::new();
        let others: Vec<Duration> = (0..12).map(|_| other.next_delay()).collect();
        assert_ne!(delays, others, "two instances do not retry in lockstep");
    }
}
