//! The return type. What is cached, and when `#[invalidates]` counts a call as a success,
//! depend on whether it is a `Result`, an `Option` or neither; the macro cannot tell (an alias
//! `ApiResult<T>` is a `Result`, a user's `Result<T>` enum is not), so the expansion leaves
//! that to the type system (`cache_runtime::__private::ShapeProbe`). What is decided here is
//! how `result = ..` steers it, and that the type can be named at all.

use proc_macro2::Span;
use syn::visit::Visit;
use syn::{LitBool, ReturnType};

use crate::args::kw;

/// How `result = ..` steers the shape detection.
#[derive(Clone, Copy)]
pub(crate) enum Results {
    /// No `result`: a `Result`, alias or not, is recognised by its type.
    Detect,
    /// `result = true`: as `Detect`, and a compile error unless the return type is a
    /// `Result`.
    Required,
    /// `result = false`: a `Result` is a plain value (its `Err` is cached, or invalidates).
    Ignored,
}

pub(crate) fn results(option: Option<&(kw::result, LitBool)>) -> Results {
    match option {
        None => Results::Detect,
        Some((_, on)) if on.value => Results::Required,
        Some(_) => Results::Ignored,
    }
}

/// The shape probe names the return type, so it cannot contain `impl Trait` (and a cached
/// value is deserialized into it). `fix` says what to do instead.
pub(crate) fn named(output: &ReturnType, what: &str, fix: &str) -> syn::Result<()> {
    struct FindImpl(Option<Span>);
    impl Visit<'_> for FindImpl {
        fn visit_type_impl_trait(&mut self, ty: &syn::TypeImplTrait) {
            self.0.get_or_insert(ty.impl_token.span);
        }
    }
    let mut find = FindImpl(None);
    find.visit_return_type(output);
    match find.0 {
        None => Ok(()),
        Some(span) => Err(syn::Error::new(
            span,
            format!("{what} an `impl Trait` return type: {fix}"),
        )),
    }
}
