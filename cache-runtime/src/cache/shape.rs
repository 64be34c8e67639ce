//! How a wrapped function's return type maps to what is cached. The macro picks the shape from
//! the written return type (`Result<Option<T>, E>`, `Result<T, E>`, `Option<T>`, anything else).

use std::any::Any;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// What a call's result means for the cache.
#[derive(Debug)]
pub enum Outcome<'a, V> {
    /// Cache this value.
    Value(&'a V),
    /// A negative result (`None`): shared with concurrent callers, cached only with `cache_none`.
    Negative(&'a V),
    /// Not cacheable (an `Err`).
    Skip,
}

/// Maps a return type `R` to its cached value and back.
pub trait Shape<R> {
    /// What is serialized into the cache.
    type Value: Serialize + DeserializeOwned;
    /// Classifies a result.
    fn outcome(result: &R) -> Outcome<'_, Self::Value>;
    /// Rebuilds a result from a cached value.
    fn rebuild(value: Self::Value) -> R;
}

/// Per-function caching options.
#[derive(Debug, Clone, Copy, Default)]
pub struct Policy {
    /// Entry TTL; `None`: the cache's default.
    pub ttl: Option<Duration>,
    /// Cache negative results (`None`).
    pub cache_none: bool,
    /// TTL for negative results; `None`: `ttl`.
    pub none_ttl: Option<Duration>,
}

/// Any serializable type, cached as is.
#[derive(Debug)]
pub struct PlainShape;
/// `Result<T, E>`: `Ok` is cached.
#[derive(Debug)]
pub struct ResultShape;
/// `Option<T>`: `Some` is cached, `None` only with `cache_none`.
#[derive(Debug)]
pub struct OptionShape;
/// `Result<Option<T>, E>`: `Ok(Some)` is cached, `Ok(None)` only with `cache_none`.
#[derive(Debug)]
pub struct ResultOptionShape;

impl<T: Serialize + DeserializeOwned> Shape<T> for PlainShape {
    type Value = T;
    fn outcome(result: &T) -> Outcome<'_, T> {
        Outcome::Value(result)
    }
    fn rebuild(value: T) -> T {
        value
    }
}

impl<T: Serialize + DeserializeOwned, E> Shape<Result<T, E>> for ResultShape {
    type Value = T;
    fn outcome(result: &Result<T, E>) -> Outcome<'_, T> {
        result.as_ref().map_or(Outcome::Skip, Outcome::Value)
    }
    fn rebuild(value: T) -> Result<T, E> {
        Ok(value)
    }
}

impl<T: Serialize + DeserializeOwned> Shape<Option<T>> for OptionShape {
    type Value = Option<T>;
    fn outcome(result: &Option<T>) -> Outcome<'_, Option<T>> {
        if result.is_some() {
            Outcome::Value(result)
        } else {
            Outcome::Negative(result)
        }
    }
    fn rebuild(value: Option<T>) -> Option<T> {
        value
    }
}

impl<T: Serialize + DeserializeOwned, E> Shape<Result<Option<T>, E>> for ResultOptionShape {
    type Value = Option<T>;
    fn outcome(result: &Result<Option<T>, E>) -> Outcome<'_, Option<T>> {
        match result {
            Ok(v @ Some(_)) => Outcome::Value(v),
            Ok(v @ None) => Outcome::Negative(v),
            Err(_) => Outcome::Skip,
        }
    }
    fn rebuild(value: Option<T>) -> Result<Option<T>, E> {
        Ok(value)
    }
}

/// How the in-process store keeps a value: as itself, cloned out on a hit ([`ByClone`]), or
/// only encoded, decoded on a hit ([`ByBytes`]). Redis always holds the encoding.
pub trait Keep<V> {
    /// The value to keep beside its encoding, if any.
    fn keep(&self, value: &V) -> Option<Arc<dyn Any + Send + Sync>>;
    /// A copy of a kept value, if it is a `V`.
    fn take(&self, kept: &(dyn Any + Send + Sync)) -> Option<V>;
}

/// Keeps values as themselves (for `Clone + Send + Sync + 'static` values).
#[derive(Debug, Clone, Copy)]
pub struct ByClone;
/// Keeps values only encoded.
#[derive(Debug, Clone, Copy)]
pub struct ByBytes;

impl<V: Clone + Send + Sync + 'static> Keep<V> for ByClone {
    fn keep(&self, value: &V) -> Option<Arc<dyn Any + Send + Sync>> {
        Some(Arc::new(value.clone()))
    }
    fn take(&self, kept: &(dyn Any + Send + Sync)) -> Option<V> {
        kept.downcast_ref::<V>().cloned()
    }
}

impl<V> Keep<V> for ByBytes {
    fn keep(&self, _: &V) -> Option<Arc<dyn Any + Send + Sync>> {
        None
    }
    fn take(&self, _: &(dyn Any + Send + Sync)) -> Option<V> {
        None
    }
}

/// Picks [`ByClone`] or [`ByBytes`] for shape `S` of return type `R` by autoref specialization:
/// `(&Probe::<S, R>::NEW).keeping()` finds [`ProbeClone`] when `S`'s value is `Clone + Send +
/// Sync + 'static`, else [`ProbeBytes`] (bring both into scope).
pub struct Probe<S, R>(PhantomData<fn() -> (S, R)>);

impl<S, R> Probe<S, R> {
    /// The probe.
    pub const NEW: Self = Self(PhantomData);
}

impl<S, R> std::fmt::Debug for Probe<S, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Probe")
    }
}

/// See [`Probe`].
pub trait ProbeClone {
    /// [`ByClone`].
    fn keeping(&self) -> ByClone {
        ByClone
    }
}

impl<S: Shape<R>, R> ProbeClone for Probe<S, R> where S::Value: Clone + Send + Sync + 'static {}

/// See [`Probe`].
pub trait ProbeBytes {
    /// [`ByBytes`].
    fn keeping(&self) -> ByBytes {
        ByBytes
    }
}

impl<S, R> ProbeBytes for &Probe<S, R> {}
