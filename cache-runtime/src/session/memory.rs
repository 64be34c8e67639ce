//! The in-process session store: the Redis store's semantics under one mutex, for
//! `REDIS_ENABLED=false` (one process only).

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};

use super::{Record, SessionConfig, SessionCount, SessionId, millis};
use crate::sync::lock;

#[derive(Debug, Default)]
pub(super) struct MemorySessions {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// By the id's hash.
    sessions: HashMap<[u8; 32], Record>,
    /// User id -> the hashes of their sessions.
    users: HashMap<String, HashSet<[u8; 32]>>,
    /// Size after the last sweep of expired records: the next one runs at twice that.
    swept_at: usize,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, millis)
}

fn alive(record: &Record, now: u64, config: &SessionConfig) -> bool {
    now < record.absolute_ms && now < record.accessed_ms.saturating_add(millis(config.idle_ttl))
}

impl State {
    fn remove(&mut self, hash: &[u8; 32]) -> Option<Record> {
        let record = self.sessions.remove(hash)?;
        if let Some(set) = self.users.get_mut(&record.user_id) {
            set.remove(hash);
            if set.is_empty() {
                self.users.remove(&record.user_id);
            }
        }
        Some(record)
    }

    /// The live record under `hash`; an expired one is removed.
    fn live(&mut self, hash: &[u8; 32], now: u64, config: &SessionConfig) -> Option<&mut Record> {
        if !alive(self.sessions.get(hash)?, now, config) {
            self.remove(hash);
            return None;
        }
        self.sessions.get_mut(hash)
    }

    /// Removes every expired record, amortized: when the map has doubled since the last time.
    fn sweep(&mut self, now: u64, config: &SessionConfig) {
        if self.sessions.len() < self.swept_at.saturating_mul(2).max(1024) {
            return;
        }
        let dead: Vec<[u8; 32]> = self
            .sessions
            .iter()
            .filter(|(_, r)| !alive(r, now, config))
            .map(|(h, _)| *h)
            .collect();
        for hash in &dead {
            self.remove(hash);
        }
        self.swept_at = self.sessions.len();
    }
}

impl MemorySessions {
    pub(super) fn insert(
        &self,
        id: &SessionId,
        mut record: Record,
        replacing: Option<&SessionId>,
        config: &SessionConfig,
    ) -> Option<Record> {
        let now = now_ms();
        if replacing.is_none() {
            record.created_ms = now;
            record.absolute_ms = now.saturating_add(millis(config.absolute_ttl));
        } else if record.absolute_ms <= now {
            return None;
        }
        record.accessed_ms = now;
        let mut state = lock(&self.state);
        state.sweep(now, config);
        state
            .users
            .entry(record.user_id.clone())
            .or_default()
            .insert(id.hash);
        // 256 random bits: an existing entry under this hash cannot happen; never overwrite.
        state
            .sessions
            .entry(id.hash)
            .or_insert_with(|| record.clone());
        Some(record)
    }

    pub(super) fn touch(
        &self,
        id: &SessionId,
        patch: Option<&Map<String, Value>>,
        config: &SessionConfig,
    ) -> Option<Record> {
        let now = now_ms();
        let mut state = lock(&self.state);
        let record = state.live(&id.hash, now, config)?;
        if patch.is_some()
            || now.saturating_sub(record.accessed_ms) >= millis(config.touch_interval)
        {
            record.accessed_ms = now;
        }
        for (field, value) in patch.into_iter().flatten() {
            if value.is_null() {
                record.data.remove(field);
            } else {
                record.data.insert(field.clone(), value.clone());
            }
        }
        Some(record.clone())
    }

    pub(super) fn take(&self, id: &SessionId) -> Option<Record> {
        lock(&self.state).remove(&id.hash)
    }

    pub(super) fn list_user(&self, user_id: &str, config: &SessionConfig) -> Vec<(String, Record)> {
        let now = now_ms();
        let mut state = lock(&self.state);
        let hashes: Vec<[u8; 32]> = state
            .users
            .get(user_id)
            .map(|set| set.iter().copied().collect())
            .unwrap_or_default();
        hashes
            .into_iter()
            .filter_map(|h| Some((super::hex(&h[..4]), state.live(&h, now, config)?.clone())))
            .collect()
    }

    pub(super) fn delete_user(&self, user_id: &str, config: &SessionConfig) -> u64 {
        let now = now_ms();
        let mut state = lock(&self.state);
        let hashes = state.users.remove(user_id).unwrap_or_default();
        let mut n = 0;
        for hash in hashes {
            let record = state.sessions.remove(&hash);
            n += u64::from(record.is_some_and(|r| alive(&r, now, config)));
        }
        n
    }

    pub(super) fn clear(&self) -> u64 {
        let mut state = lock(&self.state);
        let n = state.sessions.len() as u64;
        *state = State::default();
        n
    }

    pub(super) fn count(&self, config: &SessionConfig) -> SessionCount {
        let now = now_ms();
        let state = lock(&self.state);
        let mut users = HashSet::new();
        for record in state.sessions.values().filter(|r| alive(r, now, config)) {
            users.insert(&record.user_id);
        }
        SessionCount {
            active: state
                .sessions
                .values()
                .filter(|r| alive(r, now, config))
                .count() as u64,
            users: users.len() as u64,
        }
    }
}
