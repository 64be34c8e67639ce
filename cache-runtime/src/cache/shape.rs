//! How a wrapped function's return type maps to what is cached, and the two probes the
//! expansions use to pick, by the type system, how (autoref specialization: the macro only sees
//! tokens, so it cannot tell that `ApiResult<T>` is a `Result`, but the compiler can):
//!
//! * [`ShapeProbe`] picks the [`Shape`] of the return type: `Result<Option<T>, E>`,
//!   `Result<T, E>`, `Option<T>` or anything else, through aliases;
//! * [`KeepProbe`] picks how the in-process store keeps a value ([`ByClone`] or [`ByBytes`]).
//!
//! Both work the same way: a method call on a reference to the probe resolves to the trait
//! whose impl matches with the fewest auto-dereferences, so impls on more `&`s win. Every trait
//! must be in scope (`use Trait as _`), and the probed type must be known at the call, which is
//! why the expansions name the return type.

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
    /// `l1 = false`: never served from, or kept in, the two-level cache's L1 (strict data,
    /// such as permissions, that must not lag behind a write on another instance).
    pub bypass_l1: bool,
}

/// Any serializable type, cached as is.
#[derive(Debug, Clone, Copy)]
pub struct PlainShape;
/// `Result<T, E>`: `Ok` is cached.
#[derive(Debug, Clone, Copy)]
pub struct ResultShape;
/// `Option<T>`: `Some` is cached, `None` only with `cache_none`.
#[derive(Debug, Clone, Copy)]
pub struct OptionShape;
/// `Result<Option<T>, E>`: `Ok(Some)` is cached, `Ok(None)` only with `cache_none`.
#[derive(Debug, Clone, Copy)]
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

/// Picks [`ByClone`] or [`ByBytes`] for shape `S` of return type `R`:
/// `(&KeepProbe::<_, R>::of(&shape)).keeping()` finds [`ProbeClone`] when `S`'s value is
/// `Clone + Send + Sync + 'static`, else [`ProbeBytes`] (bring both into scope).
pub struct KeepProbe<S, R>(PhantomData<fn() -> (S, R)>);

impl<S, R> KeepProbe<S, R> {
    /// The probe for the shape [`ShapeProbe`] picked.
    pub const fn of(_: &S) -> Self {
        Self(PhantomData)
    }
}

impl<S, R> std::fmt::Debug for KeepProbe<S, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeepProbe")
    }
}

/// See [`KeepProbe`].
pub trait ProbeClone {
    /// [`ByClone`].
    fn keeping(&self) -> ByClone {
        ByClone
    }
}

impl<S: Shape<R>, R> ProbeClone for KeepProbe<S, R> where S::Value: Clone + Send + Sync + 'static {}

/// See [`KeepProbe`].
pub trait ProbeBytes {
    /// [`ByBytes`].
    fn keeping(&self) -> ByBytes {
        ByBytes
    }
}

impl<S, R> ProbeBytes for &KeepProbe<S, R> {}

/// Picks the shape of return type `R`: `(&&&&ShapeProbe::<R, Detect>::NEW).shape()` is a
/// [`ResultOptionShape`], [`ResultShape`], [`OptionShape`] or [`PlainShape`], in that order of
/// preference, whatever the type is called (bring [`IsResultOption`], [`IsResult`],
/// [`IsOption`] and [`IsPlain`] into scope). With mode [`NotResult`] (`result = false`), a
/// `Result` is a plain value.
///
/// The type must be known where the probe is called: in a generic function, a type parameter
/// is a plain value even if it is instantiated with a `Result`.
pub struct ShapeProbe<R, M>(PhantomData<fn() -> (R, M)>);

impl<R, M> ShapeProbe<R, M> {
    /// The probe.
    pub const NEW: Self = Self(PhantomData);
}

impl<R, M> std::fmt::Debug for ShapeProbe<R, M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ShapeProbe")
    }
}

/// [`ShapeProbe`] mode: a `Result` (or an alias of one) has a result shape.
#[derive(Debug)]
pub struct Detect;
/// [`ShapeProbe`] mode for `result = false`: only `Option` and plain shapes.
#[derive(Debug)]
pub struct NotResult;

/// See [`ShapeProbe`]: `Result<Option<T>, E>`.
pub trait IsResultOption {
    /// [`ResultOptionShape`].
    fn shape(&self) -> ResultOptionShape {
        ResultOptionShape
    }
}

impl<T, E> IsResultOption for &&&ShapeProbe<Result<Option<T>, E>, Detect> {}

/// See [`ShapeProbe`]: `Result<T, E>`.
pub trait IsResult {
    /// [`ResultShape`].
    fn shape(&self) -> ResultShape {
        ResultShape
    }
}

impl<T, E> IsResult for &&ShapeProbe<Result<T, E>, Detect> {}

/// See [`ShapeProbe`]: `Option<T>`.
pub trait IsOption {
    /// [`OptionShape`].
    fn shape(&self) -> OptionShape {
        OptionShape
    }
}

impl<T, M> IsOption for &ShapeProbe<Option<T>, M> {}

/// See [`ShapeProbe`]: anything else.
pub trait IsPlain {
    /// [`PlainShape`].
    fn shape(&self) -> PlainShape {
        PlainShape
    }
}

impl<R, M> IsPlain for ShapeProbe<R, M> {}

/// The probe for `result = true`: a compile error unless `R` is a `Result`.
pub const fn result_probe<R: ResultType>() -> ShapeProbe<R, Detect> {
    ShapeProbe::NEW
}

/// `result = true` on a return type that is not a `Result`.
#[diagnostic::on_unimplemented(
    message = "`result = true` needs a return type that is a `Result`, and `{Self}` is not one",
    label = "not a `Result` (or an alias of one)",
    note = "drop `result = true`: a `Result` is recognised by its type, aliases included"
)]
pub trait ResultType {}

impl<T, E> ResultType for Result<T, E> {}

/// `cache_none` on a return type without a `None`.
#[diagnostic::on_unimplemented(
    message = "`cache_none` needs a return type `Option<T>` or `Result<Option<T>, E>` (or an alias of one)",
    label = "the return type has no `None` to cache",
    note = "`cache_none` caches negative results: `None`, or `Ok(None)`"
)]
pub trait CachesNone {}

impl CachesNone for OptionShape {}
impl CachesNone for ResultOptionShape {}

/// Whether a result counts as a success, after which `#[invalidates]` invalidates: `Ok` for
/// the result shapes, any value otherwise.
pub trait Succeeds<R> {
    /// Whether `result` is a success.
    fn succeeded(result: &R) -> bool;
}

impl<R> Succeeds<R> for PlainShape {
    fn succeeded(_: &R) -> bool {
        true
    }
}

impl<T> Succeeds<Option<T>> for OptionShape {
    fn succeeded(_: &Option<T>) -> bool {
        true
    }
}

impl<T, E> Succeeds<Result<T, E>> for ResultShape {
    fn succeeded(result: &Result<T, E>) -> bool {
        result.is_ok()
    }
}

impl<T, E> Succeeds<Result<Option<T>, E>> for ResultOptionShape {
    fn succeeded(result: &Result<Option<T>, E>) -> bool {
        result.is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type ApiResult<T> = Result<T, String>;
    type Maybe<T> = Option<T>;

    /// The expansions' calls, with the shape's type checked by assignment.
    macro_rules! shape {
        ($ty:ty, $mode:ty) => {{
            #[allow(unused_imports)] // one of them is picked
            use super::{IsOption as _, IsPlain as _, IsResult as _, IsResultOption as _};
            (&&&&ShapeProbe::<$ty, $mode>::NEW).shape()
        }};
    }

    #[test]
    fn shapes_are_picked_by_type_through_aliases() {
        let _: ResultOptionShape = shape!(Result<Option<u8>, ()>, Detect);
        let _: ResultOptionShape = shape!(ApiResult<Maybe<u8>>, Detect);
        let _: ResultShape = shape!(Result<u8, ()>, Detect);
        let _: ResultShape = shape!(ApiResult<Vec<u8>>, Detect);
        let _: ResultShape = shape!(std::io::Result<u8>, Detect);
        let _: OptionShape = shape!(Option<u8>, Detect);
        let _: OptionShape = shape!(Maybe<Result<u8, ()>>, Detect);
        let _: PlainShape = shape!(u8, Detect);
        let _: PlainShape = shape!(Vec<Option<u8>>, Detect);
        let _: PlainShape = shape!((), Detect);
    }

    #[test]
    fn not_result_mode_sees_results_as_plain_values() {
        let _: PlainShape = shape!(ApiResult<Option<u8>>, NotResult);
        let _: PlainShape = shape!(Result<u8, ()>, NotResult);
        let _: OptionShape = shape!(Maybe<u8>, NotResult);
    }

    #[test]
    fn a_type_parameter_is_plain() {
        fn probe<T>() -> PlainShape {
            shape!(T, Detect)
        }
        let _ = probe::<Result<u8, ()>>();
    }

    #[test]
    fn only_results_fail() {
        fn succeeded<S: Succeeds<R>, R>(_: S, result: &R) -> bool {
            S::succeeded(result)
        }
        let (ok, err): (ApiResult<u8>, ApiResult<u8>) = (Ok(1), Err("no".to_owned()));
        assert!(!succeeded(shape!(ApiResult<u8>, Detect), &err));
        assert!(succeeded(shape!(ApiResult<u8>, Detect), &ok));
        assert!(!succeeded(
            shape!(Result<Option<u8>, ()>, Detect),
            &Err::<Option<u8>, _>(())
        ));
        assert!(succeeded(
            shape!(Result<u8, ()>, NotResult),
            &Err::<u8, _>(())
        ));
        assert!(succeeded(shape!(Option<u8>, Detect), &None::<u8>));
    }
}
