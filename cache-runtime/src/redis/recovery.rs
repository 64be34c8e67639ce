//! The recovery task: reconnects with jittered backoff, lets every registered [`CloseGate`]
//! bring its module up to date (the cache replays the invalidations it queued), and only then
//! closes the breaker.

use std::future::Future;
use std::pin::Pin;
use std::sync::Weak;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::breaker::Backoff;
use super::{RedisClient, Shared};
use crate::sync::{lock, write};

/// A module that must catch up before Redis serves again after an outage.
pub(crate) trait CloseGate: Send + Sync {
    /// Sends what the module held back during the outage (through
    /// [`RedisClient::run_unguarded`], since the breaker is still open). `false` retries later.
    fn prepare<'a>(
        &'a self,
        client: &'a RedisClient,
    ) -> Pin<Box<dyn Future<Output = bool> + Send + 'a>>;

    /// Calls `close` if nothing is held back, under the lock that new work is queued under, so
    /// that nothing can be queued between the check and the close. True if it called it.
    fn close_if_clear(&self, close: &mut dyn FnMut()) -> bool;

    /// Whether the module holds something back that other instances are missing (then the
    /// recovery retries sooner).
    fn holds_back(&self) -> bool;
}

/// Clears the `recovering` flag however the task ends: finished, or dropped with its runtime,
/// polled or not (REVIEW R12). The next call that finds the breaker open then starts a new task.
pub(super) struct Recovering(pub(super) Weak<Shared>);

impl Drop for Recovering {
    fn drop(&mut self) {
        if let Some(shared) = self.0.upgrade() {
            shared.recovering.store(false, Ordering::Release);
        }
    }
}

/// The longest wait between recovery attempts while invalidations are held back.
const HOLDING_BACK_MAX_DELAY: Duration = Duration::from_millis(250);

/// The task. `recovering` is moved in (not created inside), so that it is dropped with the
/// future even if the future is never polled.
pub(super) async fn recover(recovering: Recovering) {
    let weak = recovering.0.clone();
    let mut backoff = Backoff::new();
    loop {
        let mut delay = backoff.next_delay();
        if let Some(shared) = weak.upgrade() {
            let client = RedisClient { shared };
            if client.gates().iter().any(|gate| gate.holds_back()) {
                // Other instances may be reading what these invalidations would make stale
                // (after a failover, say, they recover on their own): deliver them soon.
                delay = delay.min(HOLDING_BACK_MAX_DELAY);
            }
        }
        tokio::time::sleep(delay).await;
        let Some(shared) = weak.upgrade() else { return };
        if !shared.breaker.is_open() {
            return;
        }
        let client = RedisClient { shared };
        let answering = client.reconnect_if_dead().await;
        client.shared.answering.store(answering, Ordering::Release);
        if !answering {
            continue;
        }
        if !client.prepare_gates().await {
            continue;
        }
        if client.close_through_gates() {
            let mut degraded = lock(&client.shared.degraded);
            if let Some((at, _)) = degraded.since.take() {
                degraded.total += at.elapsed();
                tracing::info!(after = ?at.elapsed(), "redis reachable again; circuit closed");
            }
            return;
        }
    }
}

impl RedisClient {
    /// Keeps the current connection if it answers a PING; otherwise opens a new one. On a
    /// cluster, always a new one: after a failover the old one can keep a slot map that names
    /// the dead master, and redis-rs 1.8 silently leaves such a node out of a multi-slot
    /// command (then fails it) without refreshing the map; a new connection reads the map
    /// afresh. Its PING reaches every master.
    pub(crate) async fn reconnect_if_dead(&self) -> bool {
        if !self.is_cluster() && self.ping_unguarded().await {
            return true;
        }
        match self
            .shared
            .target
            .connect(self.shared.connect_timeout)
            .await
        {
            Ok(conn) => *write(&self.shared.conn) = Some(conn),
            Err(e) => {
                tracing::debug!(error = %e, "redis reconnect failed");
                return false;
            }
        }
        self.ping_unguarded().await
    }

    async fn ping_unguarded(&self) -> bool {
        let timeout = self.shared.op_timeout.max(self.shared.connect_timeout);
        self.run_unguarded(timeout, |mut c| async move { c.ping_every_master().await })
            .await
            .is_ok()
    }

    pub(crate) async fn prepare_gates(&self) -> bool {
        for gate in self.gates() {
            if !gate.prepare(self).await {
                return false;
            }
        }
        true
    }

    /// Closes the breaker inside every gate's lock (nested), so that none of them can queue
    /// work between its check and the close.
    fn close_through_gates(&self) -> bool {
        fn nest(gates: &[std::sync::Arc<dyn CloseGate>], close: &mut dyn FnMut()) -> bool {
            match gates.split_first() {
                None => {
                    close();
                    true
                }
                Some((gate, rest)) => {
                    let mut closed = false;
                    gate.close_if_clear(&mut || closed = nest(rest, close)) && closed
                }
            }
        }
        let gates = self.gates();
        nest(&gates, &mut || {
            if let Some(state) = self.shared.breaker.close() {
                self.shared.outages.send_replace(state);
            }
        })
    }

    fn gates(&self) -> Vec<std::sync::Arc<dyn CloseGate>> {
        let mut gates = lock(&self.shared.gates);
        gates.retain(|g| g.strong_count() > 0);
        gates.iter().filter_map(Weak::upgrade).collect()
    }
}
