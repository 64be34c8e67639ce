//! Polling helpers for conditions that become true eventually.

use std::time::{Duration, Instant};

/// Interval between two evaluations of the polled condition.
const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// Polls `condition` every 10 ms until it returns `true` or `timeout` elapses,
/// sleeping with [`tokio::time::sleep`] in between.
///
/// Returns `true` if the condition held before the deadline. The condition is
/// always evaluated at least once, and once more right at the deadline.
pub async fn wait_until<F: FnMut() -> bool>(timeout: Duration, mut condition: F) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        tokio::time::sleep(POLL_INTERVAL.min(deadline - now)).await;
    }
}

/// Blocking variant of [`wait_until`]: polls `condition` every 10 ms with
/// [`std::thread::sleep`] until it returns `true` or `timeout` elapses.
///
/// Returns `true` if the condition held before the deadline. Do not call this
/// from async code running on a single-threaded runtime.
pub fn wait_until_blocking<F: FnMut() -> bool>(timeout: Duration, mut condition: F) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        std::thread::sleep(POLL_INTERVAL.min(deadline - now));
    }
}
