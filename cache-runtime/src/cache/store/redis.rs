//! The cache's protocol on Redis, over the shared [`RedisClient`].
//!
//! * A read is one `MGET` of the entry and its markers.
//! * A fill whose read found a marker absent first creates it (one script call, only then):
//!   an entry is only ever recorded against markers that exist, so a marker that later expires,
//!   is evicted (`allkeys-lru`) or vanishes in a restart reads as 0, which no entry recorded:
//!   "changed" (REVIEW R1).
//! * An invalidation is one script call: each marker gets `max(current + 1, server time in µs)`,
//!   so a generation never repeats even when a marker was lost and is created again; the exact
//!   keys are deleted in the same script. A marker holding anything but an integer (written by
//!   someone else, or of another type) is replaced, never fatal (R21).
//! * On a Redis Cluster an entry and its markers live in different slots. The MGET is split by
//!   redis-rs per slot and sent in parallel (not atomic, and it need not be: see
//!   ARCHITECTURE.md); every write is per slot: one script call per marker (an exact marker's
//!   also deletes its entry, which shares its slot), one `SET` per entry, all sent
//!   concurrently.
//! * With `REDIS_WAIT_REPLICAS`, every marker bump is followed by `WAIT` in the same pipeline
//!   (same slot, same connection), and an unacknowledged bump counts as failed.

use std::collections::HashMap;
use std::time::Duration;

use ::redis::cluster_routing::{Route, SlotAddr};
use ::redis::{FromRedisValue, Pipeline, RedisResult, RedisWrite, ToRedisArgs, Value};
use futures_util::future::try_join_all;

use super::{Budget, CacheStore, Fetched, Fill, Origin, Raw, StoreError};
use crate::cache::codec::ENTRY_MAGIC;
use crate::cache::key::{MARKER_NS, Pattern};
use crate::cache::markers::{self, Marker};
use crate::redis::{Connection, Lua, RedisClient, glob_escape, with_script};

/// Gives markers new generations, deletes entries, and publishes the new generations for the
/// instances' L1 tables. `KEYS`: the markers, then the entries; `ARGV[1]`: the number of
/// markers n, `ARGV[1 + i]`: marker i's TTL in ms (0: none), `ARGV[2 + n]`: the channel,
/// `ARGV[2 + n + i]`: marker i's name in messages ([`Marker::wire_name`]). Returns the new
/// generations. The message is a JSON array of strings: the server time (µs), then each
/// marker's name and generation (integers as strings: a Lua number prints them exactly, cjson
/// would round them to 14 digits). Publishing inside the script makes it atomic with the bump,
/// and cluster-safe (one key per call there; `PUBLISH` reaches every node).
static BUMP: Lua = Lua::new(
    r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local n = tonumber(ARGV[1])
local gens = {}
local message = {string.format('%.0f', now)}
for i = 1, n do
  local ok, current = pcall(redis.call, 'GET', KEYS[i])
  current = ok and tonumber(current) or nil
  local g = now
  if current and current >= now then g = current + 1 end
  local ttl = tonumber(ARGV[1 + i])
  if ttl > 0 then
    redis.call('SET', KEYS[i], string.format('%.0f', g), 'PX', ttl)
  else
    redis.call('SET', KEYS[i], string.format('%.0f', g))
  end
  gens[i] = g
  message[2 * i] = ARGV[2 + n + i]
  message[2 * i + 1] = string.format('%.0f', g)
end
for i = n + 1, #KEYS do redis.call('DEL', KEYS[i]) end
redis.call('PUBLISH', ARGV[2 + n], cjson.encode(message))
return gens",
);

/// Creates the markers that do not exist (or hold no integer) with a fresh generation and
/// returns every marker's generation. `KEYS`: markers; `ARGV[i]`: marker i's TTL in ms (0: none).
static PREPARE: Lua = Lua::new(
    r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local gens = {}
for i, key in ipairs(KEYS) do
  local ok, current = pcall(redis.call, 'GET', key)
  local g = ok and tonumber(current) or nil
  if not g then
    g = now
    local ttl = tonumber(ARGV[i])
    if ttl > 0 then
      redis.call('SET', key, string.format('%.0f', g), 'PX', ttl)
    else
      redis.call('SET', key, string.format('%.0f', g))
    end
  end
  gens[i] = g
end
return gens",
);

/// Deletes the keys whose values are our envelopes: strings that start with `ARGV[1]`, read
/// with GETRANGE (a whole value would be copied into Lua for 7 bytes), skipping other types
/// (a hash under the prefix used to abort the whole script: REVIEW R14).
/// Sent as `EVAL`, with its text: a sweep is rare, and a node that lost its script cache
/// (a restart, a failover) then needs no `SCRIPT LOAD`.
const SWEEP: &str = r"
local n = 0
for _, k in ipairs(KEYS) do
  if redis.call('TYPE', k).ok == 'string'
     and redis.call('GETRANGE', k, 0, string.len(ARGV[1]) - 1) == ARGV[1] then
    redis.call('DEL', k)
    n = n + 1
  end
end
return n";

/// Keys per SCAN page and per sweep script call: small enough that one call never blocks
/// Redis noticeably for other clients.
const SWEEP_BATCH: usize = 100;

#[derive(Clone)]
pub(crate) struct RedisCacheStore {
    client: RedisClient,
    /// The cache prefix, empty or ending in `:`.
    prefix: String,
    /// TTL of markers other than the epoch (which has none: it is one key, read by every
    /// read, so it stays hot under LRU).
    marker_ttl: Duration,
}

impl std::fmt::Debug for RedisCacheStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCacheStore")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// How an operation treats the breaker.
#[derive(Clone, Copy)]
pub(crate) enum Mode {
    /// A request's operation: skipped while the breaker is open, feeds it.
    Guarded,
    /// Recovery and shutdown: runs with the breaker open, within this timeout.
    Unguarded(Duration),
    /// An invalidation sent while the breaker is open but Redis answers, so that other
    /// instances see it now; it stays queued for the replay, so no `WAIT` either.
    BestEffort(Duration),
}

impl RedisCacheStore {
    pub(crate) fn new(client: RedisClient, prefix: String, max_ttl: Duration) -> Self {
        Self {
            client,
            prefix,
            marker_ttl: max_ttl.saturating_add(Duration::from_secs(60)),
        }
    }

    pub(crate) fn client(&self) -> &RedisClient {
        &self.client
    }

    fn marker_ttl_ms(&self, marker: Marker<'_>) -> u64 {
        match marker {
            Marker::All => 0,
            _ => millis(self.marker_ttl),
        }
    }

    /// One MGET of every key and its markers, as the raw reply values.
    async fn mget(&self, keys: &[&str], budget: &mut Budget) -> Result<Vec<Value>, StoreError> {
        let prefix = self.prefix.as_str();
        // Sized up front: the arguments would otherwise regrow the buffer a few times per call.
        let args = 1 + keys.iter().map(|k| 1 + markers::count(k)).sum::<usize>();
        let bytes = keys
            .iter()
            .map(|k| (1 + markers::count(k)) * (2 * prefix.len() + MARKER_NS.len() + k.len() + 3))
            .sum::<usize>();
        let mut cmd = ::redis::Cmd::with_capacity(args, bytes + 4);
        cmd.arg("MGET");
        for key in keys {
            cmd.arg(KeyAndMarkers { prefix, key });
        }
        let reply: Value = self
            .client
            .run_within(budget, |mut c| async move { cmd.query_async(&mut c).await })
            .await?;
        match reply {
            Value::Array(values) => Ok(values),
            other => Err(::redis::RedisError::from((
                ::redis::ErrorKind::UnexpectedReturnType,
                "MGET did not answer an array",
                format!("{other:?}"),
            ))
            .into()),
        }
    }

    /// The entry under `key` alone (one `GET`, one slot), for a read whose markers the L1's
    /// table knows.
    #[cfg(feature = "l1")]
    pub(crate) async fn get_entry(
        &self,
        key: &str,
        budget: &mut Budget,
    ) -> Result<Option<Raw>, StoreError> {
        let mut cmd = ::redis::cmd("GET");
        cmd.arg(KeyArg {
            prefix: &self.prefix,
            key,
        });
        let reply: Value = self
            .client
            .run_within(budget, |mut c| async move { cmd.query_async(&mut c).await })
            .await?;
        Ok(match reply {
            Value::BulkString(bytes) => Some(Raw::Owned(bytes)),
            _ => None,
        })
    }

    /// Bumps the markers of `patterns` and deletes their exact keys: one script call on one
    /// Redis; on a cluster one per marker, concurrently, each deleting the exact keys of its
    /// slot (and a `DEL` for any other). With `REDIS_WAIT_REPLICAS`, each script call is
    /// followed by `WAIT` and must be acknowledged. Returns the new generations, in the order
    /// of `patterns`.
    pub(crate) async fn bump_in(
        &self,
        patterns: &[Pattern],
        mode: Mode,
    ) -> Result<Vec<u64>, StoreError> {
        let markers: Vec<Bumped> = patterns
            .iter()
            .map(|p| Bumped {
                name: p.marker().name(&self.prefix),
                ttl_ms: self.marker_ttl_ms(p.marker()),
                wire: p.marker().wire_name(),
            })
            .collect();
        let channel = self.channel();
        let exact: Vec<String> = patterns
            .iter()
            .filter_map(|p| match p {
                Pattern::Exact(key) => Some(format!("{}{key}", self.prefix)),
                _ => None,
            })
            .collect();
        let client = &self.client;
        let (markers, exact, channel) = (&markers, &exact, channel.as_str());
        let wait = !matches!(mode, Mode::BestEffort(_));
        let run = |conn: Connection| async move {
            let bump = |conn, markers, exact| bump_on(conn, client, markers, exact, channel, wait);
            if !conn.is_cluster() {
                return Ok(vec![bump(conn, markers, exact).await?]);
            }
            // A marker's script also deletes the exact keys in its slot (an exact marker shares
            // its entry's slot); any other exact key goes to one DEL, which redis-rs splits.
            let slot = |key: &str| Route::with_key(key, SlotAddr::Master);
            let (mut with_marker, mut alone) = (vec![Vec::new(); markers.len()], Vec::new());
            for key in exact {
                match markers.iter().position(|m| slot(&m.name) == slot(key)) {
                    Some(i) => with_marker[i].push(key.clone()),
                    None => alone.push(key),
                }
            }
            let bumps = markers
                .chunks(1)
                .zip(&with_marker)
                .map(|(marker, keys)| bump(conn.clone(), marker, keys));
            let delete = async {
                if !alone.is_empty() {
                    ::redis::cmd("DEL")
                        .arg(&alone)
                        .exec_async(&mut conn.clone())
                        .await?;
                }
                Ok(())
            };
            let (replies, ()) = tokio::try_join!(try_join_all(bumps), delete)?;
            Ok(replies)
        };
        let replies = match mode {
            Mode::Guarded => client.run(run).await,
            Mode::Unguarded(timeout) | Mode::BestEffort(timeout) => {
                client.run_unguarded(timeout, run).await
            }
        }?;
        let mut gens = Vec::with_capacity(markers.len());
        for reply in replies {
            let reply = if wait {
                client.replicated(reply)?
            } else {
                reply
            };
            let bumped = reply.into_iter().next().unwrap_or(Value::Nil);
            gens.extend(Vec::<u64>::from_redis_value(bumped).map_err(::redis::RedisError::from)?);
        }
        Ok(gens)
    }

    /// The channel the bumps publish on: `<prefix>__inv`.
    pub(crate) fn channel(&self) -> String {
        format!("{}{MARKER_NS}", self.prefix)
            .trim_end_matches(':')
            .to_owned()
    }
}

/// A marker to bump: its key, its TTL in ms, its name in messages.
struct Bumped {
    name: String,
    ttl_ms: u64,
    wire: String,
}

/// One BUMP script call for `markers`, deleting the `exact` keys and publishing on `channel`,
/// then `WAIT` if configured and `wait`; the replies.
async fn bump_on(
    conn: Connection,
    client: &RedisClient,
    markers: &[Bumped],
    exact: &[String],
    channel: &str,
    wait: bool,
) -> RedisResult<Vec<Value>> {
    let mut pipeline = ::redis::pipe();
    let cmd = BUMP.call(&mut pipeline).arg(markers.len() + exact.len());
    for m in markers {
        cmd.arg(&m.name);
    }
    cmd.arg(exact).arg(markers.len());
    for m in markers {
        cmd.arg(m.ttl_ms);
    }
    cmd.arg(channel);
    for m in markers {
        cmd.arg(&m.wire);
    }
    if wait {
        client.wait_for_replicas(&mut pipeline);
    }
    with_script(conn, &BUMP, &markers[0].name, &pipeline).await
}

impl CacheStore for RedisCacheStore {
    async fn fetch(&self, keys: &[&str], budget: &mut Budget) -> Result<Vec<Fetched>, StoreError> {
        let mut values = self.mget(keys, budget).await?.into_iter();
        Ok(keys.iter().map(|key| fetched(key, &mut values)).collect())
    }

    async fn fetch_one(&self, key: &str, budget: &mut Budget) -> Result<Fetched, StoreError> {
        let values = self.mget(&[key], budget).await?;
        Ok(fetched(key, &mut values.into_iter()))
    }

    async fn prepare_fill(
        &self,
        keys: &[&str],
        fetched: &mut [Fetched],
        budget: &mut Budget,
    ) -> Result<(), StoreError> {
        // Each absent marker once (keys share their prefixes' markers), and where it goes.
        let mut absent: Vec<Absent> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        for (k, (key, f)) in keys.iter().zip(fetched.iter()).enumerate() {
            if f.origin != Origin::Redis {
                continue;
            }
            for (i, marker) in markers::of_key(key).enumerate() {
                if f.gens.get(i).is_some_and(|&g| g != 0) {
                    continue;
                }
                let name = marker.name(&self.prefix);
                let slot = *index.entry(name.clone()).or_insert_with(|| {
                    absent.push(Absent {
                        name,
                        ttl_ms: self.marker_ttl_ms(marker),
                        places: Vec::new(),
                    });
                    absent.len() - 1
                });
                absent[slot].places.push((k, i));
            }
        }
        if absent.is_empty() {
            return Ok(());
        }
        let absent_ref = &absent;
        let gens: Vec<u64> = self
            .client
            .run_within(budget, |conn| async move {
                // One call for all on one Redis; on a cluster one per marker (one slot each).
                let group = if conn.is_cluster() {
                    1
                } else {
                    absent_ref.len()
                };
                let calls = absent_ref.chunks(group).map(|markers| {
                    let mut pipeline = ::redis::pipe();
                    let cmd = PREPARE.call(&mut pipeline).arg(markers.len());
                    for marker in markers {
                        cmd.arg(&marker.name);
                    }
                    for marker in markers {
                        cmd.arg(marker.ttl_ms);
                    }
                    let conn = conn.clone();
                    async move {
                        let replies =
                            with_script(conn, &PREPARE, &markers[0].name, &pipeline).await?;
                        Vec::<u64>::from_redis_value(
                            replies.into_iter().next().unwrap_or(Value::Nil),
                        )
                        .map_err(::redis::RedisError::from)
                    }
                });
                Ok(try_join_all(calls).await?.concat())
            })
            .await?;
        for (marker, generation) in absent.into_iter().zip(gens) {
            for (k, i) in marker.places {
                let f = &mut fetched[k];
                f.gens.resize(markers::count(keys[k]), 0);
                f.gens[i] = generation;
            }
        }
        Ok(())
    }

    async fn put(
        &self,
        entries: &[Fill<'_>],
        ttl: Duration,
        budget: &mut Budget,
    ) -> Result<(), StoreError> {
        let set = |pipe: &mut Pipeline, fill: &Fill<'_>| {
            pipe.cmd("SET")
                .arg(KeyArg {
                    prefix: &self.prefix,
                    key: fill.key,
                })
                .arg(&*fill.bytes)
                .arg("PX")
                .arg(millis(ttl))
                .ignore();
        };
        self.client
            .run_within(budget, |mut conn| async move {
                if !conn.is_cluster() || entries.len() == 1 {
                    let mut pipe = ::redis::pipe();
                    for fill in entries {
                        set(&mut pipe, fill);
                    }
                    return pipe.exec_async(&mut conn).await;
                }
                // One slot per entry: one pipeline each, sent concurrently.
                let sets = entries.iter().map(|fill| {
                    let mut pipe = ::redis::pipe();
                    set(&mut pipe, fill);
                    let mut conn = conn.clone();
                    async move { pipe.exec_async(&mut conn).await }
                });
                try_join_all(sets).await.map(drop)
            })
            .await
    }

    async fn bump(&self, patterns: &[Pattern]) -> Result<(), StoreError> {
        self.bump_in(patterns, Mode::Guarded).await.map(drop)
    }

    /// SCAN on every master (on one Redis, the server), and one sweep script call per page
    /// (on a cluster one per key, in one pipeline: a page holds keys of many slots).
    async fn sweep(&self, under: &str) -> Result<u64, StoreError> {
        if under.is_empty() && self.prefix.is_empty() {
            // Every envelope in the database, other applications' included (REVIEW R14).
            tracing::info!(
                "CACHE_PREFIX is empty: entries are invalidated, not deleted from redis"
            );
            return Ok(0);
        }
        let pattern = format!("{}*", glob_escape(&format!("{}{under}", self.prefix)));
        let marker_ns = format!("{}{MARKER_NS}", self.prefix);
        // Administration: its own, longer timeout, and no say in the breaker (a big keyspace
        // must not make this instance, or any other, stop using Redis).
        let timeout = self.client.admin_timeout();
        let masters = self.client.masters().await?;
        let mut deleted = 0;
        for node in &masters {
            let node = node.as_ref();
            let mut cursor: u64 = 0;
            loop {
                let mut scan = ::redis::cmd("SCAN");
                scan.arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(SWEEP_BATCH);
                let (next, keys): (u64, Vec<String>) = self
                    .client
                    .run_unguarded(timeout, |mut c| async move {
                        ::redis::from_redis_value(c.command_on(node, scan).await?)
                            .map_err(::redis::RedisError::from)
                    })
                    .await?;
                let keys: Vec<String> = keys
                    .into_iter()
                    .filter(|k| !k.starts_with(&marker_ns))
                    .collect();
                if !keys.is_empty() {
                    let mut pipe = ::redis::pipe();
                    let group = if node.is_some() { 1 } else { keys.len() };
                    for keys in keys.chunks(group) {
                        pipe.cmd("EVAL")
                            .arg(SWEEP)
                            .arg(keys.len())
                            .arg(keys)
                            .arg(ENTRY_MAGIC);
                    }
                    let counts: Vec<u64> = self
                        .client
                        .run_unguarded(timeout, |mut c| async move {
                            ::redis::from_redis_value(Value::Array(
                                c.pipeline_on(node, pipe).await?,
                            ))
                            .map_err(::redis::RedisError::from)
                        })
                        .await?;
                    deleted += counts.iter().sum::<u64>();
                }
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        Ok(deleted)
    }
}

/// A marker a fill found absent: its name, its TTL, and the (key, marker) places it fills.
struct Absent {
    name: String,
    ttl_ms: u64,
    places: Vec<(usize, usize)>,
}

/// A key with the cache prefix, written straight into the command buffer.
struct KeyArg<'a> {
    prefix: &'a str,
    key: &'a str,
}

impl ToRedisArgs for KeyArg<'_> {
    fn write_redis_args<W: ?Sized + RedisWrite>(&self, out: &mut W) {
        use std::io::Write as _;
        let mut w = out.writer_for_next_arg();
        // Writing to the command buffer cannot fail.
        let _ = w.write_all(self.prefix.as_bytes());
        let _ = w.write_all(self.key.as_bytes());
    }
}

/// A key and its markers as MGET arguments, written straight into the command buffer: the hit
/// path allocates no marker names.
struct KeyAndMarkers<'a> {
    prefix: &'a str,
    key: &'a str,
}

impl ToRedisArgs for KeyAndMarkers<'_> {
    fn write_redis_args<W: ?Sized + RedisWrite>(&self, out: &mut W) {
        use std::io::Write as _;
        KeyArg {
            prefix: self.prefix,
            key: self.key,
        }
        .write_redis_args(out);
        for marker in markers::of_key(self.key) {
            let mut w = out.writer_for_next_arg();
            for part in marker.name_parts(self.prefix) {
                let _ = w.write_all(part.as_bytes());
            }
        }
    }

    fn num_of_args(&self) -> usize {
        1 + markers::count(self.key)
    }
}

/// `key`'s entry and its markers' generations, taken from the MGET reply.
fn fetched(key: &str, values: &mut impl Iterator<Item = Value>) -> Fetched {
    let value = match values.next() {
        Some(Value::BulkString(bytes)) => Some(Raw::Owned(bytes)),
        _ => None,
    };
    let gens = values
        .by_ref()
        .take(markers::count(key))
        .map(|marker| match marker {
            Value::BulkString(bytes) => parse_gen(&bytes),
            _ => 0,
        })
        .collect();
    Fetched {
        value,
        gens,
        origin: Origin::Redis,
        l1: None,
    }
}

/// A marker's value: its generation, or 0 when it is not a (non-zero, 64-bit) decimal integer,
/// which reads as "changed". Parsed by hand: three of these per read are a visible part of a
/// hit.
fn parse_gen(bytes: &[u8]) -> u64 {
    if bytes.is_empty() || bytes.len() > 20 {
        return 0;
    }
    bytes
        .iter()
        .try_fold(0u64, |n, &b| match b {
            b'0'..=b'9' => n.checked_mul(10)?.checked_add(u64::from(b - b'0')),
            _ => None,
        })
        .unwrap_or(0)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generations_parse_as_integers_or_zero() {
        assert_eq!(parse_gen(b"1796173701832964"), 1_796_173_701_832_964);
        assert_eq!(parse_gen(b"18446744073709551615"), u64::MAX);
        for garbage in [
            &b""[..],
            b"garbage",
            b"-1",
            b"1.5",
            b"18446744073709551616",
            b" 1",
        ] {
            assert_eq!(parse_gen(garbage), 0, "{garbage:?}");
        }
    }

    #[test]
    fn mget_arguments_are_the_key_and_its_markers() {
        for key in ["users", "users:42", "users:42:tasks"] {
            let args = KeyAndMarkers { prefix: "p:", key }.to_redis_args();
            let mut expected = vec![format!("p:{key}")];
            expected.extend(markers::of_key(key).map(|m| m.name("p:")));
            let args: Vec<String> = args
                .into_iter()
                .map(|a| String::from_utf8(a).unwrap())
                .collect();
            assert_eq!(args, expected);
            assert_eq!(
                KeyAndMarkers { prefix: "p:", key }.num_of_args(),
                args.len()
            );
        }
    }
}
