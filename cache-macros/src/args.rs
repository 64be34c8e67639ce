//! The attribute arguments, as written: parsing only. Checks that need the function or several
//! arguments at once live in `valid.rs`.

use proc_macro2::Span;
use quote::ToTokens;
use syn::ext::IdentExt;
use syn::parse::{Lookahead1, Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::{Expr, Ident, LitBool, LitStr, Path, Token};

pub(crate) mod kw {
    syn::custom_keyword!(key);
    syn::custom_keyword!(ttl);
    syn::custom_keyword!(skip);
    syn::custom_keyword!(hash);
    syn::custom_keyword!(cache_none);
    syn::custom_keyword!(none_ttl);
    syn::custom_keyword!(l1);
    syn::custom_keyword!(result);
    syn::custom_keyword!(cache);
    syn::custom_keyword!(deferred);
}

/// `#[cached(..)]`. Each option keeps its keyword token, for error spans.
#[derive(Default)]
pub(crate) struct CachedArgs {
    pub(crate) key: Option<(kw::key, LitStr)>,
    pub(crate) ttl: Option<(kw::ttl, Expr)>,
    pub(crate) skip: Option<(kw::skip, Punctuated<Ident, Token![,]>)>,
    pub(crate) hash: Option<(kw::hash, Punctuated<Ident, Token![,]>)>,
    pub(crate) cache_none: Option<(kw::cache_none, LitBool)>,
    pub(crate) none_ttl: Option<(kw::none_ttl, Expr)>,
    pub(crate) l1: Option<(kw::l1, LitBool)>,
    pub(crate) common: Common,
}

/// `#[invalidates("pattern", ..)]`.
#[derive(Default)]
pub(crate) struct InvalidatesArgs {
    pub(crate) patterns: Vec<LitStr>,
    pub(crate) deferred: Option<(kw::deferred, LitBool)>,
    pub(crate) common: Common,
}

/// Options both macros take.
#[derive(Default)]
pub(crate) struct Common {
    pub(crate) result: Option<(kw::result, LitBool)>,
    pub(crate) cache: Option<(kw::cache, Expr)>,
    pub(crate) krate: Option<(Token![crate], Path)>,
}

impl Parse for CachedArgs {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let mut args = Self::default();
        parse_list(input, |input, lookahead| {
            if lookahead.peek(kw::key) {
                once(&mut args.key, input.parse()?, value(input)?)
            } else if lookahead.peek(kw::ttl) {
                once(&mut args.ttl, input.parse()?, value(input)?)
            } else if lookahead.peek(kw::skip) {
                once(&mut args.skip, input.parse()?, names(input)?)
            } else if lookahead.peek(kw::hash) {
                once(&mut args.hash, input.parse()?, names(input)?)
            } else if lookahead.peek(kw::cache_none) {
                let kw: kw::cache_none = input.parse()?;
                once(&mut args.cache_none, kw, flag(input, kw.span)?)
            } else if lookahead.peek(kw::none_ttl) {
                once(&mut args.none_ttl, input.parse()?, value(input)?)
            } else if lookahead.peek(kw::l1) {
                once(&mut args.l1, input.parse()?, value(input)?)
            } else if input.peek(LitStr) {
                Err(input.error("the key is a named argument: `key = \"users:<id>\"`"))
            } else {
                args.common.parse_one(input, lookahead)
            }
        })?;
        Ok(args)
    }
}

impl Parse for InvalidatesArgs {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let mut args = Self::default();
        parse_list(input, |input, lookahead| {
            if lookahead.peek(LitStr) {
                args.patterns.push(input.parse()?);
                Ok(Parsed::Known)
            } else if lookahead.peek(kw::deferred) {
                let kw: kw::deferred = input.parse()?;
                once(&mut args.deferred, kw, flag(input, kw.span)?)
            } else {
                args.common.parse_one(input, lookahead)
            }
        })?;
        Ok(args)
    }
}

impl Common {
    /// Parses one of the shared options, if the input is one.
    fn parse_one(
        &mut self,
        input: ParseStream<'_>,
        lookahead: &Lookahead1<'_>,
    ) -> syn::Result<Parsed> {
        if lookahead.peek(kw::result) {
            let kw: kw::result = input.parse()?;
            once(&mut self.result, kw, flag(input, kw.span)?)
        } else if lookahead.peek(kw::cache) {
            once(&mut self.cache, input.parse()?, value(input)?)
        } else if lookahead.peek(Token![crate]) {
            let kw = input.parse()?;
            input.parse::<Token![=]>()?;
            once(&mut self.krate, kw, Path::parse_mod_style(input)?)
        } else {
            Ok(Parsed::Unknown)
        }
    }
}

/// What a parser made of the next argument.
enum Parsed {
    /// It was one of its options, now parsed.
    Known,
    /// It is none of them: the input is untouched, and every option was peeked, so that the
    /// lookahead's error lists them all.
    Unknown,
}

/// A comma-separated list of arguments, each parsed by `arg`.
fn parse_list(
    input: ParseStream<'_>,
    mut arg: impl FnMut(ParseStream<'_>, &Lookahead1<'_>) -> syn::Result<Parsed>,
) -> syn::Result<()> {
    while !input.is_empty() {
        let lookahead = input.lookahead1();
        if let Parsed::Unknown = arg(input, &lookahead)? {
            let expected = lookahead.error();
            return Err(match input.call(Ident::parse_any) {
                Ok(name) => syn::Error::new(
                    expected.span(),
                    format!("unknown argument `{name}`; {expected}"),
                ),
                Err(_) => expected,
            });
        }
        if !input.is_empty() {
            input.parse::<Token![,]>()?;
        }
    }
    Ok(())
}

/// Stores an option, unless it was given already: the one "at most once" check.
fn once<K: ToTokens, V>(slot: &mut Option<(K, V)>, kw: K, value: V) -> syn::Result<Parsed> {
    if slot.is_some() {
        let name = kw.to_token_stream();
        return Err(syn::Error::new_spanned(
            kw,
            format!("duplicate argument `{name}`"),
        ));
    }
    *slot = Some((kw, value));
    Ok(Parsed::Known)
}

/// `= value`.
fn value<T: Parse>(input: ParseStream<'_>) -> syn::Result<T> {
    input.parse::<Token![=]>()?;
    input.parse()
}

/// `(a, b)`: parameter names.
fn names(input: ParseStream<'_>) -> syn::Result<Punctuated<Ident, Token![,]>> {
    let content;
    syn::parenthesized!(content in input);
    content.parse_terminated(Ident::parse, Token![,])
}

/// A boolean option: `name = true|false`, or the bare `name` for `true`.
fn flag(input: ParseStream<'_>, span: Span) -> syn::Result<LitBool> {
    if input.peek(Token![=]) {
        value(input)
    } else {
        Ok(LitBool::new(true, span))
    }
}
