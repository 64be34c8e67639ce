//! Checks that relate the arguments to the function and to each other, producing what
//! `expand.rs` generates code from. Independent errors are reported together. The checks
//! themselves live with what they look at: `signature.rs` (parameters, generics,
//! connections), `ret.rs` (the return type), `ttl.rs` and `key.rs` (templates).

use proc_macro2::Span;
use syn::{Expr, Ident, ItemFn, Path};

use crate::args::{CachedArgs, Common, InvalidatesArgs};
use crate::key::Template;
use crate::ret::{self, Results};
use crate::signature;
use crate::ttl::{self, Ttl};

/// A checked `#[cached]`.
pub(crate) struct Cached {
    pub(crate) item: ItemFn,
    pub(crate) krate: Path,
    pub(crate) key: Template,
    /// Arguments hashed into the `:<hash>` suffix, in parameter order.
    pub(crate) hashed: Vec<Ident>,
    /// Generic parameters hashed into the suffix: one entry per instantiation.
    pub(crate) type_params: Vec<Ident>,
    pub(crate) const_params: Vec<Ident>,
    pub(crate) results: Results,
    pub(crate) ttl: Option<Ttl>,
    pub(crate) none_ttl: Option<Ttl>,
    /// `cache_none = true`: the keyword, where a return type without `None` is reported.
    pub(crate) cache_none: Option<Span>,
    /// `l1 = false`: kept out of the two-level cache's L1.
    pub(crate) bypass_l1: bool,
    pub(crate) cache: Option<Expr>,
}

/// A checked `#[invalidates]`.
pub(crate) struct Invalidates {
    pub(crate) item: ItemFn,
    pub(crate) krate: Path,
    pub(crate) patterns: Vec<Template>,
    pub(crate) results: Results,
    /// Hand the invalidation to the enclosing `cache_runtime::defer_invalidations`.
    pub(crate) deferred: bool,
    pub(crate) cache: Option<Expr>,
}

pub(crate) fn cached(
    args: syn::Result<CachedArgs>,
    item: syn::Result<ItemFn>,
) -> syn::Result<Cached> {
    let item = item.map_err(|e| not_a_fn(e, "cached"))?;
    let mut errors = Errors::default();
    errors.check(signature::check_async(&item.sig, "cached"));
    let Some(args) = errors.check(args) else {
        return errors.finish(None);
    };
    let sig = &item.sig;

    let key = args
        .key
        .as_ref()
        .ok_or_else(|| {
            syn::Error::new(
                Span::call_site(),
                "missing argument `key`: write e.g. `#[cached(key = \"users:<id>\")]`",
            )
        })
        .and_then(|(_, lit)| Template::key(lit));
    let key = errors.check(key.and_then(|key| signature::known_placeholders(key, sig, "key")));
    let connections = signature::connection_generics(&sig.generics);
    let hashed = errors
        .check(signature::hashed_args(
            &args,
            sig,
            key.as_ref(),
            &connections,
        ))
        .unwrap_or_default();
    errors.check(signature::no_cached_transaction(sig));

    errors.check(ret::named(
        &sig.output,
        "`#[cached]` cannot cache",
        "name the type",
    ));
    let cache_none = args
        .cache_none
        .as_ref()
        .filter(|(_, on)| on.value)
        .map(|(kw, _)| kw.span);
    if let (Some((kw, _)), None) = (&args.none_ttl, cache_none) {
        errors.push(syn::Error::new(
            kw.span,
            "`none_ttl` has no effect without `cache_none = true`",
        ));
    }
    let ttl = args
        .ttl
        .map(|(_, expr)| errors.check(ttl::seconds("ttl", expr, &sig.generics)));
    let none_ttl = args
        .none_ttl
        .map(|(_, expr)| errors.check(ttl::seconds("none_ttl", expr, &sig.generics)));

    let (type_params, const_params) = signature::hashed_generics(&sig.generics, &connections);
    let cached = key.map(|key| Cached {
        krate: krate(&args.common),
        key,
        hashed,
        type_params,
        const_params,
        results: ret::results(args.common.result.as_ref()),
        ttl: ttl.flatten(),
        none_ttl: none_ttl.flatten(),
        cache_none,
        bypass_l1: args.l1.is_some_and(|(_, on)| !on.value),
        cache: args.common.cache.map(|(_, e)| e),
        item,
    });
    errors.finish(cached)
}

pub(crate) fn invalidates(
    args: syn::Result<InvalidatesArgs>,
    item: syn::Result<ItemFn>,
) -> syn::Result<Invalidates> {
    let item = item.map_err(|e| not_a_fn(e, "invalidates"))?;
    let mut errors = Errors::default();
    errors.check(signature::check_async(&item.sig, "invalidates"));
    let Some(args) = errors.check(args) else {
        return errors.finish(None);
    };
    if args.patterns.is_empty() {
        errors.push(syn::Error::new(
            Span::call_site(),
            "`#[invalidates]` needs at least one key or pattern, e.g. `#[invalidates(\"users:*\")]`",
        ));
    }
    let patterns = args
        .patterns
        .iter()
        .filter_map(|lit| {
            let pattern = Template::pattern(lit);
            errors
                .check(pattern.and_then(|p| signature::known_placeholders(p, &item.sig, "pattern")))
        })
        .collect();
    let deferred = args.deferred.as_ref().is_some_and(|(_, on)| on.value);
    if !deferred {
        errors.check(signature::no_undeferred_transaction(&item.sig));
    }
    let results = ret::results(args.common.result.as_ref());
    if !matches!(results, Results::Ignored) {
        errors.check(ret::named(
            &item.sig.output,
            "`#[invalidates]` cannot tell whether a call succeeded from",
            "name the type, or write `result = false` to invalidate whenever it returns",
        ));
    }
    let invalidates = Invalidates {
        krate: krate(&args.common),
        patterns,
        results,
        deferred,
        cache: args.common.cache.map(|(_, e)| e),
        item,
    };
    errors.finish(Some(invalidates))
}

/// Errors collected from independent checks.
#[derive(Default)]
pub(crate) struct Errors(Option<syn::Error>);

impl Errors {
    pub(crate) fn push(&mut self, error: syn::Error) {
        match &mut self.0 {
            Some(all) => all.combine(error),
            None => self.0 = Some(error),
        }
    }

    pub(crate) fn check<T>(&mut self, result: syn::Result<T>) -> Option<T> {
        result.map_err(|e| self.push(e)).ok()
    }

    /// The collected errors, or `value` if there are none (`value` is `None` only after an
    /// error).
    pub(crate) fn finish<T>(self, value: Option<T>) -> syn::Result<T> {
        match (self.0, value) {
            (None, Some(value)) => Ok(value),
            (Some(error), _) => Err(error),
            (None, None) => Err(syn::Error::new(Span::call_site(), "invalid arguments")),
        }
    }
}

fn krate(common: &Common) -> Path {
    match &common.krate {
        Some((_, path)) => path.clone(),
        None => syn::parse_quote!(::cache_runtime),
    }
}

/// The item did not parse as a function (rustc has parsed it as some item already).
fn not_a_fn(error: syn::Error, name: &str) -> syn::Error {
    syn::Error::new(
        error.span(),
        format!("`#[{name}]` applies to an `async fn` with a body: {error}"),
    )
}
