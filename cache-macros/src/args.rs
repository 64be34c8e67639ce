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
    syn::custom_keyword!(cache_none);
    syn::custom_keyword!(none_ttl);
    syn::custom_keyword!(result);
    syn::custom_keyword!(cache);
}

/// `#[cached(..)]`. Each option keeps its keyword token, for error spans.
#[derive(Default)]
pub(crate) struct CachedArgs {
    pub(crate) key: Option<(kw::key, LitStr)>,
    pub(crate) ttl: Option<(kw::ttl, Expr)>,
    pub(crate) skip: Option<(kw::skip, Punctuated<Ident, Token![,]>)>,
    pub(crate) cache_none: Option<(kw::cache_none, LitBool)>,
    pub(crate) none_ttl: Option<(kw::none_ttl, Expr)>,
    pub(crate) common: Common,
}

/// `#[invalidates("pattern", ..)]`.
#[derive(Default)]
pub(crate) struct InvalidatesArgs {
    pub(crate) patterns: Vec<LitStr>,
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
                let kw = input.parse()?;
                let content;
                syn::parenthesized!(content in input);
                once(
                    &mut args.skip,
                    kw,
                    content.parse_terminated(Ident::parse, Token![,])?,
                )
            } else if lookahead.peek(kw::cache_none) {
                let kw: kw::cache_none = input.parse()?;
                once(&mut args.cache_none, kw, flag(input, kw.span)?)
            } else if lookahead.peek(kw::none_ttl) {
                once(&mut args.none_ttl, input.parse()?, value(input)?)
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
                Ok(true)
            } else {
                args.common.parse_one(input, lookahead)
            }
        })?;
        Ok(args)
    }
}

impl Common {
    /// Parses one of the shared options; `Ok(false)` when the input is none of them.
    fn parse_one(&mut self, input: ParseStream<'_>, lookahead: &Lookahead1<'_>) -> Arg {
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
            Ok(false)
        }
    }
}

/// Whether one argument was recognised and parsed.
type Arg = syn::Result<bool>;

/// A comma-separated list of arguments; `arg` parses one, or returns `Ok(false)` if it does
/// not know it, after peeking every option it knows so that the error lists them all.
fn parse_list(
    input: ParseStream<'_>,
    mut arg: impl FnMut(ParseStream<'_>, &Lookahead1<'_>) -> Arg,
) -> syn::Result<()> {
    while !input.is_empty() {
        let lookahead = input.lookahead1();
        if !arg(input, &lookahead)? {
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
fn once<K: ToTokens, V>(slot: &mut Option<(K, V)>, kw: K, value: V) -> Arg {
    if slot.is_some() {
        let name = kw.to_token_stream();
        return Err(syn::Error::new_spanned(
            kw,
            format!("duplicate argument `{name}`"),
        ));
    }
    *slot = Some((kw, value));
    Ok(true)
}

/// `= value`.
fn value<T: Parse>(input: ParseStream<'_>) -> syn::Result<T> {
    input.parse::<Token![=]>()?;
    input.parse()
}

/// A boolean option: `name = true|false`, or the bare `name` for `true`.
fn flag(input: ParseStream<'_>, span: Span) -> syn::Result<LitBool> {
    if input.peek(Token![=]) {
        value(input)
    } else {
        Ok(LitBool::new(true, span))
    }
}
