//! The read-through engine behind `#[cached]`: lookup, single flight, load, store back.
//!
//! The Redis operations of one call share one operation timeout ([`Budget`]): a slow but alive
//! Redis costs a call at most that much in all.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::Cache;
use super::codec;
use super::flight::{Followed, Join};
use super::shape::{Keep, Outcome, Policy, Shape};
use super::stats::Event;
#[cfg(feature = "l1")]
use super::store::memory::Entry as Kept;
use super::store::{Budget, Fetched, Fill, Origin, Raw, Typed};
use crate::error::KeyError;

/// Why a fetched entry is not served.
enum Miss {
    Absent,
    Undecodable,
    /// Written before an invalidation of one of its markers.
    Stale,
}

/// Takes the kept value or decodes the entry (checking its type tag when `tagged`), and checks
/// its markers.
fn lookup<V: DeserializeOwned>(
    fetched: &Fetched,
    keep: &impl Keep<V>,
    tagged: bool,
) -> Result<V, Miss> {
    if let Some(Raw::Kept(entry)) = &fetched.value
        && let Some(typed) = &entry.typed
    {
        // The same generations as the envelope's: no need to decode it to find it stale.
        if *typed.gens != *fetched.gens {
            return Err(Miss::Stale);
        }
        if let Some(v) = keep.take(&*typed.value) {
            return Ok(v);
        }
    }
    let bytes = fetched.value.as_ref().ok_or(Miss::Absent)?;
    let tag = tagged.then(codec::type_tag::<V>);
    let envelope = codec::decode::<V>(bytes, tag).ok_or(Miss::Undecodable)?;
    if envelope.g == fetched.gens {
        Ok(envelope.d)
    } else {
        Err(Miss::Stale)
    }
}

/// The value of an L1 entry (whose generations the L1 checked): the kept value, or decoded.
#[cfg(feature = "l1")]
fn from_l1<V: DeserializeOwned>(entry: &Kept, keep: &impl Keep<V>) -> Option<V> {
    if let Some(typed) = &entry.typed
        && let Some(v) = keep.take(&*typed.value)
    {
        return Some(v);
    }
    codec::decode::<V>(&entry.bytes, Some(codec::type_tag::<V>())).map(|e| e.d)
}

impl Cache {
    /// Lookup, single flight, load, store. `key` is checked already (by
    /// [`super::key::KeyBuilder::finish`] or [`super::key::check_key`]).
    pub(crate) async fn load_through<S, R, F>(
        &self,
        key: Result<String, KeyError>,
        policy: Policy,
        keep: &impl Keep<S::Value>,
        load: F,
    ) -> R
    where
        S: Shape<R>,
        F: Future<Output = R>,
    {
        let inner = &*self.inner;
        if !inner.config.enabled {
            return load.await;
        }
        let key = match key {
            Ok(k) => k,
            Err(e) => {
                tracing::error!(error = %e, "cache key unusable; calling through");
                inner.stats.record("_invalid", Event::Error);
                return load.await;
            }
        };
        let l1 = !policy.bypass_l1;
        #[cfg(feature = "l1")]
        if l1
            && let Some(entry) = inner.store.l1_get(&key)
            && let Some(v) = from_l1(&entry.kept, keep)
        {
            inner.stats.record_l1_hit(&key);
            return S::rebuild(v);
        }
        let mut budget = Budget::new(inner.config.op_timeout);
        let ticket = inner.flights.ticket(&key);
        let mut fetched = match inner.store.fetch_without_io(&key) {
            Some(fetched) => fetched,
            None => self.fetch_one_for(&key, &mut budget, l1).await,
        };
        if let Some(v) = self.check::<S::Value>(&key, &fetched, keep, true) {
            if fetched.l1.is_some()
                && let Some(bytes) = &fetched.value
            {
                let typed = keep.keep(&v).map(|value| Typed {
                    value,
                    gens: fetched.gens.as_slice().into(),
                });
                let bytes: Arc<[u8]> = (**bytes).into();
                inner
                    .store
                    .fill_l1(&key, &fetched, &bytes, typed, self.ttl(policy.ttl));
            }
            return S::rebuild(v);
        }
        let tag = Some(codec::type_tag::<S::Value>());
        let timeout = inner.config.flight_timeout;
        let leader = loop {
            match inner.flights.join(&key) {
                Join::Leader(leader) => break leader,
                Join::Follower(rx) => match inner.flights.follow(&key, rx, timeout).await {
                    Followed::Finished(Some(bytes)) => {
                        if let Some(env) = codec::decode::<S::Value>(&bytes, tag) {
                            inner.stats.record(&key, Event::Coalesced);
                            return S::rebuild(env.d);
                        }
                        return self.run_load(&key, load).await;
                    }
                    // The leader's outcome is not shareable (e.g. an error): load ourselves.
                    Followed::Finished(None) => return self.run_load(&key, load).await,
                    Followed::TimedOut => {
                        tracing::debug!(key, "a load of this key outlasted the flight timeout");
                        return self.run_load(&key, load).await;
                    }
                    // The leader was cancelled: elect a new one.
                    Followed::Vanished => {}
                },
            }
        };
        // A flight on this key may have finished (and stored) between our miss and our
        // election: look again. The miss is counted already; a value found now was coalesced.
        if fetched.origin != Origin::Nowhere && inner.flights.ticket(&key) != ticket {
            fetched = self.fetch_one_for(&key, &mut budget, l1).await;
            if let Ok(v) = lookup::<S::Value>(&fetched, keep, true) {
                inner.stats.record(&key, Event::Coalesced);
                leader.publish(fetched.value.map(Into::into));
                return S::rebuild(v);
            }
        }
        // Markers the entry will record must exist, and be read, before the load starts.
        if fetched.origin != Origin::Nowhere {
            self.prepare_fill(&[&key], std::slice::from_mut(&mut fetched), &mut budget)
                .await;
        }
        let started_ms = codec::now_ms();
        let result = self.run_load(&key, load).await;
        let (value, negative) = match S::outcome(&result) {
            Outcome::Value(v) => (v, false),
            Outcome::Negative(v) => (v, true),
            Outcome::Skip => {
                leader.publish(None);
                return result;
            }
        };
        if fetched.origin == Origin::Nowhere {
            // Nothing to store: encode only for callers that joined meanwhile.
            leader.leave_and_publish(|| {
                self.encode(&key, value, &fetched.gens, started_ms, tag)
                    .map(Into::into)
            });
            return result;
        }
        let Some(bytes) = self.encode(&key, value, &fetched.gens, started_ms, tag) else {
            leader.publish(None);
            return result;
        };
        let bytes: Arc<[u8]> = bytes.into();
        leader.publish(Some(bytes.clone()));
        if !negative || policy.cache_none {
            let ttl = if negative {
                policy.none_ttl.or(policy.ttl)
            } else {
                policy.ttl
            };
            let typed = (matches!(fetched.origin, Origin::Memory { .. }) || fetched.l1.is_some())
                .then(|| keep.keep(value))
                .flatten()
                .map(|value| Typed {
                    value,
                    gens: fetched.gens.as_slice().into(),
                });
            let ttl = self.ttl(ttl);
            inner
                .store
                .fill_l1(&key, &fetched, &bytes, typed.clone(), ttl);
            let fill = Fill {
                key: &key,
                bytes,
                typed,
                gens: &fetched.gens,
                load_time: Duration::from_millis(codec::now_ms().saturating_sub(started_ms)),
                origin: fetched.origin,
            };
            self.put(std::slice::from_ref(&fill), ttl, &mut budget)
                .await;
        }
        drop(leader);
        result
    }

    async fn run_load<R>(&self, key: &str, load: impl Future<Output = R>) -> R {
        self.inner.stats.record(key, Event::Load);
        load.await
    }

    /// Decodes a fetched entry and checks its markers. Counts the hit or the miss.
    pub(super) fn check<V: DeserializeOwned>(
        &self,
        key: &str,
        fetched: &Fetched,
        keep: &impl Keep<V>,
        tagged: bool,
    ) -> Option<V> {
        let stats = &self.inner.stats;
        match lookup(fetched, keep, tagged) {
            Ok(v) => {
                stats.record(key, Event::Hit);
                return Some(v);
            }
            Err(Miss::Absent) => {}
            Err(Miss::Undecodable) => {
                tracing::debug!(key, "undecodable cache entry treated as a miss");
                stats.record(key, Event::DecodeFailure);
            }
            Err(Miss::Stale) => stats.record(key, Event::Stale),
        }
        stats.record(key, Event::Miss);
        None
    }

    pub(super) fn encode<V: Serialize + ?Sized>(
        &self,
        key: &str,
        value: &V,
        gens: &[u64],
        started_ms: u64,
        tag: Option<u32>,
    ) -> Option<Vec<u8>> {
        match codec::encode(value, gens, started_ms, tag) {
            Ok(bytes) if bytes.len() <= self.inner.config.max_value_bytes => Some(bytes),
            Ok(bytes) => {
                tracing::debug!(
                    key,
                    size = bytes.len(),
                    "value larger than CACHE_MAX_VALUE_BYTES not cached"
                );
                None
            }
            Err(e) => {
                tracing::warn!(key, error = %e, "value cannot be serialized; not cached");
                self.inner.stats.record(key, Event::Error);
                None
            }
        }
    }
}
