//! Token bucket, as GCRA (the generic cell rate algorithm): one number per partition, the
//! theoretical arrival time (TAT) of the next unit. A unit is admitted when the TAT it leads
//! to is at most `burst` intervals ahead of now; one interval is `window / limit`. So the
//! bucket holds `burst` units (default: the limit) and refills one unit per interval.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use governor::clock::{Clock as _, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

use super::{MIN_PRUNE, Verdict};
use crate::redis::Lua;

/// `KEYS[1]`: the TAT in µs of Redis' clock. `ARGV`: burst, interval µs, cost. Returns
/// `{allowed, remaining, reset µs (until the bucket is full), retry µs}`. A key of another
/// type, or a value no bucket can have, is replaced.
pub(super) static LUA: Lua = Lua::new(
    r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local burst, T, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local ok, v = pcall(redis.call, 'GET', KEYS[1])
if not ok then redis.call('DEL', KEYS[1]); v = false end
local tat = tonumber(v)
-- Not ours (not a number, NaN, beyond any bucket): a fresh partition.
if not tat or tat ~= tat or tat < now or tat > now + burst * T then tat = now end
local new = tat + cost * T
local allow_at = new - burst * T
if allow_at > now then
  return {0, math.floor((burst * T - (tat - now)) / T), tat - now, allow_at - now}
end
redis.call('SET', KEYS[1], string.format('%.0f', new), 'PX', math.ceil((new - now) / 1000))
return {1, math.floor((burst * T - (new - now)) / T), new - now, 0}",
);

type Governor =
    RateLimiter<u128, DefaultKeyedStateStore<u128>, DefaultClock, StateInformationMiddleware>;

/// The same algorithm in process: `governor`'s keyed limiter, pruned as it grows.
pub(super) struct Local {
    governor: Governor,
    interval: u64,
    burst: u64,
    next_prune: AtomicUsize,
}

impl std::fmt::Debug for Local {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Local")
            .field("keys", &self.governor.len())
            .finish()
    }
}

impl Local {
    pub(super) fn new(burst: NonZeroU32, interval: u64) -> Self {
        let period = Duration::from_micros(interval.max(1));
        let quota = Quota::with_period(period)
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
            .allow_burst(burst);
        Self {
            governor: RateLimiter::hashmap(quota).with_middleware(),
            interval,
            burst: u64::from(burst.get()),
            next_prune: AtomicUsize::new(MIN_PRUNE),
        }
    }

    pub(super) fn check(&self, partition: u128, cost: NonZeroU32) -> Verdict {
        if self.governor.len() >= self.next_prune.load(Ordering::Relaxed) {
            self.governor.retain_recent();
            let next = (self.governor.len() * 2).max(MIN_PRUNE);
            self.next_prune.store(next, Ordering::Relaxed);
        }
        let micros = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        match self.governor.check_key_n(&partition, cost) {
            Ok(Ok(state)) => {
                let remaining = u64::from(state.remaining_burst_capacity());
                Verdict::allowed(remaining, (self.burst - remaining) * self.interval)
            }
            Ok(Err(not_until)) => {
                let retry = micros(not_until.wait_time_from(self.governor.clock().now()));
                let cost = u64::from(cost.get());
                Verdict::limited(0, retry + (self.burst - cost) * self.interval, retry.max(1))
            }
            // Excluded by the caller: a cost above the burst is an error before any check.
            Err(_) => Verdict::limited(0, self.burst * self.interval, u64::MAX),
        }
    }
}
