//! Fixed window: at most `limit` units per window, windows aligned to multiples of their
//! length on the clock (Redis' clock on Redis). Cheapest of the three (one small hash per
//! partition), but a burst straddling a boundary can get up to twice the limit through.

use super::{Partitions, Verdict};
use crate::redis::Lua;
use crate::sync::lock;

/// `KEYS[1]`: a hash `{w: window start, n: units used}`. `ARGV`: limit, window µs, cost.
/// Returns `{allowed, remaining, reset µs, retry µs}`. A key of another type is replaced.
pub(super) static LUA: Lua = Lua::new(
    r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local limit, win, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local start = now - now % win
local reset = start + win - now
local ok, v = pcall(redis.call, 'HMGET', KEYS[1], 'w', 'n')
local n = 0
if not ok then redis.call('DEL', KEYS[1])
elseif tonumber(v[1]) == start then n = tonumber(v[2]) or 0 end
-- Not ours (NaN, negative, absurd): a fresh window.
if n ~= n or n < 0 or n > 1e15 then n = 0 end
if n + cost > limit then return {0, math.max(limit - n, 0), reset, reset} end
n = n + cost
redis.call('HSET', KEYS[1], 'w', start, 'n', n)
redis.call('PEXPIRE', KEYS[1], math.ceil(reset / 1000))
return {1, limit - n, reset, 0}",
);

/// The same algorithm in process, windows aligned on this process's clock.
#[derive(Debug, Default)]
pub(super) struct Local {
    /// Per partition: its window's start and the units used in it.
    windows: std::sync::Mutex<Partitions<(u64, u64)>>,
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
        let start = now - now % win;
        let reset = start + win - now;
        let mut windows = lock(&self.windows);
        let slot = windows.get(partition, |&(w, _)| w == start);
        if slot.0 != start {
            *slot = (start, 0);
        }
        if slot.1 + cost > limit {
            return Verdict::limited(limit.saturating_sub(slot.1), reset, reset);
        }
        slot.1 += cost;
        Verdict::allowed(limit - slot.1, reset)
    }
}
