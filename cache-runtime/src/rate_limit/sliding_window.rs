//! Sliding window, exact: a log of the admitted units' times per partition (a sorted set on
//! Redis), so that no window of the given length, wherever it starts, holds more than `limit`
//! units. Memory is O(limit) per active partition; meant for small limits such as logins.

use std::collections::VecDeque;

use super::{Partitions, Verdict};
use crate::redis::Lua;
use crate::sync::lock;

/// `KEYS[1]`: a sorted set of admitted units scored by their time in µs, members
/// `<time>:<ordinal>` (unique: within one µs the set only grows). `ARGV`: limit, window µs,
/// cost. Returns `{allowed, remaining, reset µs, retry µs}`. A key of another type is replaced.
pub(super) static LUA: Lua = Lua::new(
    r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local limit, win, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
if not pcall(redis.call, 'ZREMRANGEBYSCORE', KEYS[1], '-inf', now - win) then
  redis.call('DEL', KEYS[1])
end
-- Entries from the future are not ours (ours are never later than now).
redis.call('ZREMRANGEBYSCORE', KEYS[1], string.format('(%.0f', now), '+inf')
local n = redis.call('ZCARD', KEYS[1])
if n + cost > limit then
  local i = n + cost - limit - 1
  local freed = redis.call('ZRANGE', KEYS[1], i, i, 'WITHSCORES')
  local newest = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
  return {0, math.max(limit - n, 0), tonumber(newest[2]) + win - now, tonumber(freed[2]) + win - now}
end
for i = 1, cost do
  redis.call('ZADD', KEYS[1], now, string.format('%.0f:%d', now, n + i))
end
redis.call('PEXPIRE', KEYS[1], math.ceil(win / 1000))
return {1, limit - n - cost, win, 0}",
);

/// The same algorithm in process.
#[derive(Debug, Default)]
pub(super) struct Local {
    /// Per partition: the admission times in the window, oldest first.
    logs: std::sync::Mutex<Partitions<VecDeque<u64>>>,
}

impl Local {
    pub(super) fn check(
        &self,
        partition: u128,
        limit: u64,
        win: u64,
        cost: u64,
        now: u64,
    ) -> Verdict {
        let mut logs = lock(&self.logs);
        let log = logs.get(partition, |log| log.back().is_some_and(|&t| t + win > now));
        while log.front().is_some_and(|&t| t + win <= now) {
            log.pop_front();
        }
        let n = log.len() as u64;
        if n + cost > limit {
            let freed = log
                .get((n + cost - limit - 1) as usize)
                .copied()
                .unwrap_or(now);
            let newest = log.back().copied().unwrap_or(now);
            return Verdict::limited(
                limit.saturating_sub(n),
                newest + win - now,
                freed + win - now,
            );
        }
        log.extend(std::iter::repeat_n(now, cost as usize));
        Verdict::allowed(limit - n - cost, win)
    }
}
