//! Sessions on Redis. Keys (after the prefix):
//!
//! * `session:<hash>`: a hash with `uid`, `name`, `role`, `c` (created), `a` (last accessed),
//!   `x` (absolute expiry), all times in ms of Redis' clock, and `d:<field>` per custom field
//!   (its JSON text). Its Redis TTL is the idle timeout from `a`, capped at `x`: Redis itself
//!   ends idle sessions.
//! * `session:user:<hash of the user id>`: the user's index, a sorted set of session hashes
//!   scored by their `x`; its own TTL is its largest score.
//!
//! Every operation on a record is one script on the record's key, so it is atomic and works
//! on a cluster (one slot); the index is another key, often another slot, so it is written
//! first on create (it may list a session that never came to be, never miss one) and pruned
//! by the operations that read it.

use ::redis::{FromRedisValue, Value};
use futures_util::future::try_join_all;
use serde_json::{Map, Value as Json};

use super::{Record, SessionConfig, SessionCount, SessionError, SessionId, hex, millis};
use crate::RedisClient;
use crate::redis::{Connection, Lua, with_script};

/// Prunes an index of entries past their absolute expiry, optionally removes `ARGV[4]` and
/// adds `ARGV[3]` scored `ARGV[1]` (0: now + `ARGV[2]` ms), and sets the key's TTL to its
/// largest score. Returns that score of the added member (0 when none was added).
static INDEX_ADD: Lua = Lua::new(
    r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if ARGV[4] ~= '' then redis.call('ZREM', KEYS[1], ARGV[4]) end
local x = tonumber(ARGV[1])
if x == 0 then x = now + tonumber(ARGV[2]) end
if x > now then redis.call('ZADD', KEYS[1], x, ARGV[3]) else x = 0 end
local top = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
if top[2] then redis.call('PEXPIREAT', KEYS[1], top[2]) end
return x",
);

/// Prunes an index of entries past their absolute expiry and returns the rest.
static INDEX_LIST: Lua = Lua::new(
    r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ok = pcall(redis.call, 'ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if not ok then return {} end
return redis.call('ZRANGE', KEYS[1], 0, -1)",
);

/// Creates a record unless the key exists. `ARGV`: idle ms, absolute expiry ms, created ms
/// (0: now), uid, name, role, then field / JSON pairs. Returns `{created, accessed}` or nil.
static CREATE: Lua = Lua::new(
    r"
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local x = tonumber(ARGV[2])
local c = tonumber(ARGV[3])
if c == 0 then c = now end
local e = math.min(now + tonumber(ARGV[1]), x)
if e <= now then return false end
redis.call('HSET', KEYS[1], 'uid', ARGV[4], 'name', ARGV[5], 'role', ARGV[6],
  'c', c, 'a', now, 'x', x)
for i = 7, #ARGV, 2 do redis.call('HSET', KEYS[1], 'd:' .. ARGV[i], ARGV[i + 1]) end
redis.call('PEXPIREAT', KEYS[1], e)
return {c, now}",
);

/// Reads a live record, applies a patch (field / JSON pairs from `ARGV[3]`; an empty JSON
/// removes the field), and slides its idle timeout (`ARGV[1]` ms) when patched or when the
/// last slide is at least `ARGV[2]` ms old. Never creates: a missing key answers nil. A key of
/// another type, or a record without its times, is not a session: nil (deleted if ours).
/// Returns `{fields, accessed}`.
static TOUCH: Lua = Lua::new(
    r"
local ok, h = pcall(redis.call, 'HGETALL', KEYS[1])
if not ok or #h == 0 then return false end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local a, x
for i = 1, #h, 2 do
  if h[i] == 'a' then a = tonumber(h[i + 1]) elseif h[i] == 'x' then x = tonumber(h[i + 1]) end
end
if not a or not x or x <= now or a + tonumber(ARGV[1]) <= now then
  redis.call('DEL', KEYS[1])
  return false
end
local patched = #ARGV > 2
for i = 3, #ARGV, 2 do
  if ARGV[i + 1] == '' then
    redis.call('HDEL', KEYS[1], 'd:' .. ARGV[i])
  else
    redis.call('HSET', KEYS[1], 'd:' .. ARGV[i], ARGV[i + 1])
  end
end
if patched or now - a >= tonumber(ARGV[2]) then
  a = now
  redis.call('HSET', KEYS[1], 'a', now)
  redis.call('PEXPIREAT', KEYS[1], math.min(now + tonumber(ARGV[1]), x))
end
if patched then h = redis.call('HGETALL', KEYS[1]) end
return {h, a}",
);

/// Reads and deletes a record in one step; returns its fields when it was alive, else nil.
static TAKE: Lua = Lua::new(
    r"
local ok, h = pcall(redis.call, 'HGETALL', KEYS[1])
redis.call('DEL', KEYS[1])
if not ok or #h == 0 then return false end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for i = 1, #h, 2 do
  if h[i] == 'x' and tonumber(h[i + 1]) and tonumber(h[i + 1]) > now then return h end
end
return false",
);

#[derive(Debug)]
pub(super) struct RedisSessions {
    client: RedisClient,
    /// `<prefix>session:`.
    records: String,
    /// `<prefix>session:user:`.
    indexes: String,
}

impl RedisSessions {
    pub(super) fn new(client: RedisClient, prefix: &str) -> Self {
        Self {
            client,
            records: format!("{prefix}session:"),
            indexes: format!("{prefix}session:user:"),
        }
    }

    fn record_key(&self, id: &SessionId) -> String {
        format!("{}{}", self.records, id.key())
    }

    fn index_key(&self, user_id: &str) -> String {
        format!(
            "{}{}",
            self.indexes,
            hex(&blake3::hash(user_id.as_bytes()).as_bytes()[..16])
        )
    }

    pub(super) async fn insert(
        &self,
        id: &SessionId,
        mut record: Record,
        replacing: Option<&SessionId>,
        config: &SessionConfig,
    ) -> Result<Option<Record>, SessionError> {
        let index = self.index_key(&record.user_id);
        let key = self.record_key(id);
        let fields = encode(&record.data)?;
        let absolute = &mut record.absolute_ms;
        let head = (
            &record.user_id,
            &record.username,
            &record.role,
            record.created_ms,
        );
        let times = self
            .client
            .run(|conn| async move {
                let mut add = ::redis::pipe();
                INDEX_ADD
                    .call(&mut add)
                    .arg(1)
                    .arg(&index)
                    .arg(*absolute)
                    .arg(millis(config.absolute_ttl))
                    .arg(id.key())
                    .arg(replacing.map(SessionId::key).unwrap_or_default());
                let reply = with_script(conn.clone(), &INDEX_ADD, &index, &add).await?;
                *absolute = u64::from_redis_value(first(reply))?;
                let (user_id, username, role, created) = head;
                let mut create = ::redis::pipe();
                let cmd = CREATE
                    .call(&mut create)
                    .arg(1)
                    .arg(&key)
                    .arg(millis(config.idle_ttl))
                    .arg(*absolute)
                    .arg(created)
                    .arg(user_id)
                    .arg(username)
                    .arg(role);
                for (field, json) in &fields {
                    cmd.arg(field).arg(json);
                }
                let reply = with_script(conn, &CREATE, &key, &create).await?;
                let times: Option<(u64, u64)> = FromRedisValue::from_redis_value(first(reply))?;
                Ok(times)
            })
            .await?;
        // None: a collision of 256 random bits, or an absolute expiry already past (a
        // regenerate at the last moment).
        Ok(times.map(|(created, accessed)| {
            record.created_ms = created;
            record.accessed_ms = accessed;
            record
        }))
    }

    pub(super) async fn touch(
        &self,
        id: &SessionId,
        patch: Option<&Map<String, Json>>,
        config: &SessionConfig,
    ) -> Result<Option<Record>, SessionError> {
        let key = self.record_key(id);
        let fields = patch.map(encode_patch).unwrap_or_default();
        let reply = self
            .client
            .run(|conn| async move {
                let mut pipe = ::redis::pipe();
                let cmd = TOUCH
                    .call(&mut pipe)
                    .arg(1)
                    .arg(&key)
                    .arg(millis(config.idle_ttl))
                    .arg(millis(config.touch_interval));
                for (field, json) in &fields {
                    cmd.arg(field).arg(json);
                }
                with_script(conn, &TOUCH, &key, &pipe).await.map(first)
            })
            .await?;
        let Value::Array(mut parts) = reply else {
            return Ok(None);
        };
        let accessed = parts.pop().map(u64::from_redis_value).transpose();
        let fields = parts.pop();
        Ok(match (fields, accessed) {
            (Some(fields), Ok(Some(accessed))) => decode(fields).map(|mut r| {
                r.accessed_ms = accessed;
                r
            }),
            _ => None,
        })
    }

    pub(super) async fn take(&self, id: &SessionId) -> Result<Option<Record>, SessionError> {
        let key = self.record_key(id);
        let reply = self
            .client
            .run(|conn| async move {
                let mut pipe = ::redis::pipe();
                TAKE.call(&mut pipe).arg(1).arg(&key);
                with_script(conn, &TAKE, &key, &pipe).await.map(first)
            })
            .await?;
        let Some(record) = decode(reply) else {
            return Ok(None);
        };
        // Best effort: an entry left behind is pruned by the next list, or expires.
        let index = self.index_key(&record.user_id);
        let _ = self
            .client
            .run(|mut conn| async move {
                let mut zrem = ::redis::cmd("ZREM");
                zrem.arg(&index).arg(id.key());
                zrem.exec_async(&mut conn).await
            })
            .await;
        Ok(Some(record))
    }

    /// The index's members after pruning, and the connection to go on with.
    async fn members(conn: Connection, index: &str) -> ::redis::RedisResult<Vec<String>> {
        let mut pipe = ::redis::pipe();
        INDEX_LIST.call(&mut pipe).arg(1).arg(index);
        Vec::<String>::from_redis_value(first(with_script(conn, &INDEX_LIST, index, &pipe).await?))
            .map_err(Into::into)
    }

    pub(super) async fn list_user(
        &self,
        user_id: &str,
    ) -> Result<Vec<(String, Record)>, SessionError> {
        let index = self.index_key(user_id);
        let records = &self.records;
        let index = &index;
        let found = self
            .client
            .run(|conn| async move {
                let members = Self::members(conn.clone(), index).await?;
                // One command per record (one slot each), pipelined by the connection.
                let reads = members.iter().map(|member| {
                    let mut conn = conn.clone();
                    let mut cmd = ::redis::cmd("HGETALL");
                    cmd.arg(format!("{records}{member}"));
                    async move {
                        let fields: Value = cmd.query_async(&mut conn).await.unwrap_or(Value::Nil);
                        Ok::<_, ::redis::RedisError>((member.clone(), fields))
                    }
                });
                let found = try_join_all(reads).await?;
                let gone: Vec<&String> = found
                    .iter()
                    .filter(|(_, fields)| is_empty(fields))
                    .map(|(m, _)| m)
                    .collect();
                if !gone.is_empty() {
                    let mut zrem = ::redis::cmd("ZREM");
                    zrem.arg(index).arg(gone);
                    zrem.exec_async(&mut conn.clone()).await?;
                }
                Ok(found)
            })
            .await?;
        Ok(found
            .into_iter()
            .filter_map(|(member, fields)| {
                let record = decode(fields)?;
                // A user id hash collision or a hand-written entry: not this user's.
                let hint = member.get(..8)?.to_owned();
                (record.user_id == user_id).then_some((hint, record))
            })
            .collect())
    }

    pub(super) async fn delete_user(&self, user_id: &str) -> Result<u64, SessionError> {
        let index = self.index_key(user_id);
        let records = &self.records;
        let index = &index;
        Ok(self
            .client
            .run(|conn| async move {
                let members = Self::members(conn.clone(), index).await?;
                if members.is_empty() {
                    return Ok(0);
                }
                let dels = members.iter().map(|member| {
                    let mut conn = conn.clone();
                    let mut cmd = ::redis::cmd("DEL");
                    cmd.arg(format!("{records}{member}"));
                    async move { cmd.query_async::<u64>(&mut conn).await }
                });
                let ended: u64 = try_join_all(dels).await?.into_iter().sum();
                // Only these members: a login racing this call keeps its entry.
                let mut zrem = ::redis::cmd("ZREM");
                zrem.arg(index).arg(&members);
                zrem.exec_async(&mut conn.clone()).await?;
                Ok(ended)
            })
            .await?)
    }

    pub(super) async fn clear(&self) -> Result<u64, SessionError> {
        let keys = self.scan().await?;
        let records = keys
            .iter()
            .filter(|k| !k.starts_with(&self.indexes))
            .count();
        self.admin(|conn| async move {
            let dels = keys.chunks(1).map(|key| {
                let mut conn = conn.clone();
                let mut cmd = ::redis::cmd("UNLINK");
                cmd.arg(key);
                async move { cmd.exec_async(&mut conn).await }
            });
            try_join_all(dels).await.map(drop)
        })
        .await?;
        Ok(records as u64)
    }

    pub(super) async fn count(&self) -> Result<SessionCount, SessionError> {
        let keys = self.scan().await?;
        let records: Vec<&String> = keys
            .iter()
            .filter(|k| !k.starts_with(&self.indexes))
            .collect();
        let users = self
            .admin(|conn| async move {
                let reads = records.iter().map(|key| {
                    let mut conn = conn.clone();
                    let mut cmd = ::redis::cmd("HGET");
                    cmd.arg(key.as_str()).arg("uid");
                    async move {
                        Ok::<_, ::redis::RedisError>(
                            cmd.query_async::<Option<String>>(&mut conn)
                                .await
                                .ok()
                                .flatten(),
                        )
                    }
                });
                try_join_all(reads).await
            })
            .await?;
        let active = users.iter().flatten().count() as u64;
        let users: std::collections::HashSet<&String> = users.iter().flatten().collect();
        Ok(SessionCount {
            active,
            users: users.len() as u64,
        })
    }

    /// Every key under `<prefix>session:` (records and indexes), on every master.
    async fn scan(&self) -> Result<Vec<String>, SessionError> {
        if !self.client.available() {
            return Err(SessionError::Unavailable);
        }
        Ok(self.client.keys_under(&self.records).await?)
    }

    /// An administrative operation: its own, longer timeout, no say in the breaker.
    async fn admin<T, F, Fut>(&self, op: F) -> Result<T, SessionError>
    where
        F: FnOnce(Connection) -> Fut,
        Fut: std::future::Future<Output = ::redis::RedisResult<T>>,
    {
        if !self.client.available() {
            return Err(SessionError::Unavailable);
        }
        Ok(self
            .client
            .run_unguarded(self.client.admin_timeout(), op)
            .await?)
    }
}

/// Whether an `HGETALL` found nothing (or no hash).
fn is_empty(fields: &Value) -> bool {
    match fields {
        Value::Array(items) => items.is_empty(),
        Value::Map(pairs) => pairs.is_empty(),
        _ => true,
    }
}

/// The first reply of a one-command pipeline.
fn first(replies: Vec<Value>) -> Value {
    replies.into_iter().next().unwrap_or(Value::Nil)
}

fn encode(data: &Map<String, Json>) -> Result<Vec<(String, String)>, SessionError> {
    data.iter()
        .map(|(k, v)| {
            serde_json::to_string(v)
                .map(|json| (k.clone(), json))
                .map_err(|e| SessionError::InvalidData(e.to_string()))
        })
        .collect()
}

/// A patch's fields as the touch script takes them: `null` as the empty string (remove).
fn encode_patch(patch: &Map<String, Json>) -> Vec<(String, String)> {
    patch
        .iter()
        .map(|(k, v)| {
            let json = if v.is_null() {
                String::new()
            } else {
                v.to_string()
            };
            (k.clone(), json)
        })
        .collect()
}

/// A record from `HGETALL`'s field / value list; `None` when it is not one of ours. A custom
/// field whose JSON does not parse is dropped, not fatal.
fn decode(fields: Value) -> Option<Record> {
    let pairs: Vec<(String, String)> = match fields {
        Value::Array(items) => {
            let items: Vec<String> = FromRedisValue::from_redis_value(Value::Array(items)).ok()?;
            let mut it = items.into_iter();
            std::iter::from_fn(|| Some((it.next()?, it.next()?))).collect()
        }
        Value::Map(pairs) => FromRedisValue::from_redis_value(Value::Map(pairs)).ok()?,
        _ => return None,
    };
    let mut record = Record {
        user_id: String::new(),
        username: String::new(),
        role: String::new(),
        created_ms: 0,
        accessed_ms: 0,
        absolute_ms: 0,
        data: Map::new(),
    };
    let mut has_uid = false;
    for (field, value) in pairs {
        match field.as_str() {
            "uid" => {
                record.user_id = value;
                has_uid = true;
            }
            "name" => record.username = value,
            "role" => record.role = value,
            "c" => record.created_ms = value.parse().ok()?,
            "a" => record.accessed_ms = value.parse().ok()?,
            "x" => record.absolute_ms = value.parse().ok()?,
            other => {
                if let (Some(name), Ok(json)) =
                    (other.strip_prefix("d:"), serde_json::from_str(&value))
                {
                    record.data.insert(name.to_owned(), json);
                }
            }
        }
    }
    (has_uid && record.absolute_ms > 0).then_some(record)
}
