//! Code generation, and the only module that quotes. Expansions are a few calls into
//! `cache_runtime::__private`; the user's signature and body tokens go back unchanged, the body
//! wrapped in `async move` so that its `return` and `?` stay inside it.

use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Expr, Ident, ItemFn, Path, ReturnType};

use crate::key::{Part, Template};
use crate::ret::Results;
use crate::ttl::Ttl;
use crate::valid::{Cached, Invalidates};

/// ```text
/// async fn get_user(db: &DatabaseConnection, id: i32) -> ApiResult<Option<User>> {
///     let __cache_key = { /* KeyBuilder: "users:", id */ };
///     let __cache_shape = (&&&&ShapeProbe::<ApiResult<Option<User>>, Detect>::NEW).shape();
///     __private::cached::<_, ApiResult<Option<User>>, _, _>(
///         None, __cache_key, Policy { ttl: Some(secs(300)), .. },
///         __cache_shape, // ResultOptionShape, found through the alias
///         (&KeepProbe::<_, ApiResult<Option<User>>>::of(&__cache_shape)).keeping(),
///         async move { body },
///     ).await
/// }
/// ```
pub(crate) fn cached(cached: Cached) -> TokenStream {
    let Cached {
        item:
            ItemFn {
                attrs,
                vis,
                sig,
                block,
            },
        krate,
        key,
        hashed,
        type_params,
        const_params,
        results,
        ttl,
        none_ttl,
        cache_none,
        bypass_l1,
        cache,
    } = cached;
    let private = quote!(#krate::__private);
    let (key_var, shape_var) = (hidden("key"), hidden("shape"));
    let build_key = build_key(&private, &key, &hashed, &type_params, &const_params);
    let (cache_let, cache) = cache_ref(&krate, cache.as_ref());
    let (ttl_check, ttl) = seconds(&private, ttl.as_ref(), "ttl");
    let (none_ttl_check, none_ttl) = seconds(&private, none_ttl.as_ref(), "none_ttl");
    // Naming the return type fixes the body's output type, which `?` conversions need; errors
    // about it (not serializable) point at it.
    let (ret, ret_span) = return_type(&sig.output);
    let shape = shape(&private, &ret, ret_span, results);
    // A return type without `None` is reported at `cache_none`: every token of the call is
    // located there, with the hidden local's hygiene (tokens of different hygiene would make
    // the error span the whole attribute).
    let cache_none = match cache_none {
        Some(span) => {
            let span = shape_var.span().located_at(span);
            let private = respan(&private, span);
            let shape = Ident::new(&shape_var.to_string(), span);
            quote_spanned!(span=> #private::cache_none(&#shape))
        }
        None => quote!(false),
    };
    let keep = specialize(
        &private,
        &["ProbeClone", "ProbeBytes"],
        quote!((&#private::KeepProbe::<_, #ret>::of(&#shape_var)).keeping()),
    );
    let private_at_ret = respan(&private, ret_span);
    let call = quote_spanned! {ret_span=>
        #private_at_ret::cached::<_, #ret, _, _>(
            #cache,
            #key_var,
            #private::Policy {
                ttl: #ttl,
                cache_none: #cache_none,
                none_ttl: #none_ttl,
                bypass_l1: #bypass_l1,
            },
            #shape_var,
            #keep,
            async move #block,
        )
        .await
    };
    quote! {
        #(#attrs)* #vis #sig {
            #ttl_check
            #none_ttl_check
            let #key_var = #build_key;
            let #shape_var = #shape;
            #cache_let
            #call
        }
    }
}

/// ```text
/// async fn delete_task(db: &DatabaseConnection, user_id: i32, id: i32) -> Result<(), DbErr> {
///     let __cache_guard = InvalidationGuard::arm( // `arm_deferred` with `deferred`
///         None,
///         [/* "users:<user_id>:tasks:*" */, /* "tasks:<id>" */],
///     );
///     let __cache_out = async move { body }.await;
///     __cache_guard
///         .finish(__private::succeeded(/* shape of Result<(), DbErr> */, &__cache_out))
///         .await;
///     __cache_out
/// }
/// ```
pub(crate) fn invalidates(invalidates: Invalidates) -> TokenStream {
    let Invalidates {
        item:
            ItemFn {
                attrs,
                vis,
                sig,
                block,
            },
        krate,
        patterns,
        results,
        deferred,
        cache,
    } = invalidates;
    let private = quote!(#krate::__private);
    let (guard, out) = (hidden("guard"), hidden("out"));
    // Rendered before the body runs, since the body may move the arguments.
    let patterns = patterns
        .iter()
        .map(|pattern| build_key(&private, pattern, &[], &[], &[]));
    let (cache_let, cache) = cache_ref(&krate, cache.as_ref());
    let arm = Ident::new(
        if deferred { "arm_deferred" } else { "arm" },
        Span::call_site(),
    );
    let succeeded = match results {
        Results::Ignored => quote!(true),
        Results::Detect | Results::Required => {
            let (ret, ret_span) = return_type(&sig.output);
            let shape = shape(&private, &ret, ret_span, results);
            quote!(#private::succeeded(#shape, &#out))
        }
    };
    quote! {
        #(#attrs)* #vis #sig {
            #cache_let
            let #guard = #private::InvalidationGuard::#arm(#cache, [#(#patterns),*]);
            let #out = async move #block.await;
            #guard.finish(#succeeded).await;
            #out
        }
    }
}

/// The return type as tokens (`()` when none is written), and its span.
fn return_type(output: &ReturnType) -> (TokenStream, Span) {
    match output {
        ReturnType::Default => (quote!(()), Span::call_site()),
        ReturnType::Type(_, ty) => (ty.to_token_stream(), ty.span()),
    }
}

/// The shape of the return type (`ResultOptionShape`, `ResultShape`, `OptionShape` or
/// `PlainShape`), picked by the type system so that aliases are seen through. `result = true`
/// is a compile error at the return type unless it is a `Result`.
fn shape(
    private: &TokenStream,
    ret: &TokenStream,
    ret_span: Span,
    results: Results,
) -> TokenStream {
    let probe = match results {
        Results::Detect => quote!(#private::ShapeProbe::<#ret, #private::Detect>::NEW),
        Results::Ignored => quote!(#private::ShapeProbe::<#ret, #private::NotResult>::NEW),
        Results::Required => {
            let private = respan(private, ret_span);
            quote_spanned!(ret_span=> #private::result_probe::<#ret>())
        }
    };
    specialize(
        private,
        &["IsResultOption", "IsResult", "IsOption", "IsPlain"],
        quote!((&&&&#probe).shape()),
    )
}

/// Autoref specialization (see the runtime's `cache/shape.rs`): `call` resolves to the method
/// of whichever of `traits` the types pick, so the other imports are unused.
fn specialize(private: &TokenStream, traits: &[&str], call: TokenStream) -> TokenStream {
    let traits = traits
        .iter()
        .map(|name| Ident::new(name, Span::call_site()));
    quote!({
        #[allow(unused_imports)] // all but the picked trait
        use #private::{#(#traits as _),*};
        #call
    })
}

/// The user's item as written, plus the errors: the rest of the crate keeps compiling.
pub(crate) fn fallback(item: TokenStream, error: syn::Error) -> TokenStream {
    let error = error.into_compile_error();
    quote!(#item #error)
}

/// The same tokens with another span (a path in `quote_spanned!` keeps its own spans, and an
/// error about a call is reported at each span its path has).
fn respan(tokens: &TokenStream, span: Span) -> TokenStream {
    tokens
        .clone()
        .into_iter()
        .map(|mut tree| {
            tree.set_span(span);
            tree
        })
        .collect()
}

/// A local the user's tokens cannot name (mixed-site hygiene).
fn hidden(name: &str) -> Ident {
    Ident::new(&format!("__cache_{name}"), Span::mixed_site())
}

/// An expression rendering the key (or pattern): `Result<String, KeyError>`.
fn build_key(
    private: &TokenStream,
    template: &Template,
    hashed: &[Ident],
    type_params: &[Ident],
    const_params: &[Ident],
) -> TokenStream {
    let key = hidden("key");
    let parts = template.parts.iter().map(|part| match part {
        Part::Literal(text) => quote!(#key.literal(#text);),
        Part::Placeholder(placeholder) => {
            let name = placeholder.to_string();
            let (root, fields) = (&placeholder.root, &placeholder.fields);
            quote_spanned!(template.span=> #key.value(#name, &#root #(.#fields)*);)
        }
    });
    let hashed = hash_args(private, &key, hashed);
    let const_names = const_params.iter().map(Ident::to_string);
    quote!({
        let mut #key = #private::KeyBuilder::new();
        #(#parts)*
        #hashed
        #(#key.type_param::<#type_params>();)*
        #(#key.hash(#const_names, &#const_params);)*
        #key.finish()
    })
}

/// Hashed arguments go through a `KeyArg` bound, whose diagnostic names the fix (`skip`),
/// spanned on the parameter. The bound needs a generic helper, an item; items are not hygienic,
/// so the arguments are looked up before the block that declares it, where a parameter named
/// like it would resolve to it instead.
fn hash_args(private: &TokenStream, key: &Ident, hashed: &[Ident]) -> Option<TokenStream> {
    if hashed.is_empty() {
        return None;
    }
    let (args, hash) = (hidden("args"), hidden("hash"));
    let calls = hashed.iter().enumerate().map(|(index, arg)| {
        let name = arg.to_string();
        let args = Ident::new(&args.to_string(), args.span().located_at(arg.span()));
        let index = syn::Index {
            span: arg.span(),
            ..syn::Index::from(index)
        };
        quote_spanned!(arg.span()=> #hash(&mut #key, #name, #args.#index);)
    });
    Some(quote! {
        let #args = (#(&#hashed,)*);
        {
            fn #hash<T: #private::KeyArg + ?::core::marker::Sized>(
                key: &mut #private::KeyBuilder,
                name: &'static str,
                value: &T,
            ) {
                key.hash(name, value);
            }
            #(#calls)*
        }
    })
}

/// `cache = expr`: anything whose reference coerces to `&Cache` (`Cache`, `&Cache`,
/// `Arc<Cache>`). Returns the binding and the `Option<&Cache>` argument.
fn cache_ref(krate: &Path, cache: Option<&Expr>) -> (TokenStream, TokenStream) {
    match cache {
        Some(expr) => {
            let var = hidden("cache");
            (
                quote_spanned!(expr.span()=> let #var: &#krate::Cache = &#expr;),
                quote!(::core::option::Option::Some(#var)),
            )
        }
        None => (quote!(), quote!(::core::option::Option::None)),
    }
}

/// A TTL option: a compile-time positivity check for non-literals (literals were checked by
/// the macro) and the `Option<Duration>` expression.
fn seconds(private: &TokenStream, ttl: Option<&Ttl>, name: &str) -> (TokenStream, TokenStream) {
    let Some(Ttl { expr, inline }) = ttl else {
        return (quote!(), quote!(::core::option::Option::None));
    };
    let message = format!("`{name}` must be a positive number of seconds");
    let secs = |value: TokenStream| quote!(::core::option::Option::Some(#private::secs(#value)));
    match (expr, inline) {
        (Expr::Lit(_), _) => (quote!(), secs(expr.to_token_stream())),
        (_, false) => (
            quote_spanned! {expr.span()=>
                const _: () = {
                    let secs: u64 = #expr;
                    ::core::assert!(secs > 0, #message);
                };
            },
            secs(expr.to_token_stream()),
        ),
        (_, true) => (
            quote!(),
            secs(quote_spanned! {expr.span()=>
                const {
                    let secs: u64 = #expr;
                    ::core::assert!(secs > 0, #message);
                    secs
                }
            }),
        ),
    }
}

#[cfg(test)]
mod tests {
    use quote::quote;

    use crate::valid;

    /// `crate = path` replaces every path into the runtime (a `ui/pass` test cannot show
    /// this: `cache_runtime` is always in its extern prelude).
    #[test]
    fn crate_path_is_the_only_way_to_the_runtime() {
        let item = quote! {
            async fn get(cache: &my_cache::Cache, id: u8, page: u8) -> Result<Option<u8>, ()> {
                Ok(Some(id + page))
            }
        };
        let cached = valid::cached(
            syn::parse2(quote!(
                key = "k:<id>",
                ttl = TTL,
                cache = cache,
                crate = my_cache
            )),
            syn::parse2(item.clone()),
        );
        let invalidates = valid::invalidates(
            syn::parse2(quote!("k:<id>", cache = cache, crate = my_cache)),
            syn::parse2(item),
        );
        for expansion in [
            super::cached(cached.unwrap_or_else(|e| panic!("{e}"))),
            super::invalidates(invalidates.unwrap_or_else(|e| panic!("{e}"))),
        ] {
            let expansion = expansion.to_string();
            assert!(expansion.contains("my_cache :: __private"), "{expansion}");
            assert!(!expansion.contains("cache_runtime"), "{expansion}");
        }
    }
}
