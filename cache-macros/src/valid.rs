//! Checks that relate the arguments to the function (placeholders, skips, return type, async)
//! and to each other, producing what `expand.rs` generates code from. Independent errors are
//! reported together.

use proc_macro2::Span;
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::visit::{self, Visit};
use syn::{
    Expr, ExprLit, ExprUnary, FnArg, GenericParam, Generics, Ident, ItemFn, Lit, Pat, Path,
    ReturnType, Signature, Token, Type, TypeParamBound, UnOp, WherePredicate,
};

use crate::args::{CachedArgs, Common, InvalidatesArgs};
use crate::key::Template;

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
    pub(crate) shape: Shape,
    pub(crate) ttl: Option<Ttl>,
    pub(crate) none_ttl: Option<Ttl>,
    pub(crate) cache_none: bool,
    pub(crate) cache: Option<Expr>,
}

/// A checked `#[invalidates]`.
pub(crate) struct Invalidates {
    pub(crate) item: ItemFn,
    pub(crate) krate: Path,
    pub(crate) patterns: Vec<Template>,
    /// Invalidate only on `Ok`.
    pub(crate) result: bool,
    pub(crate) cache: Option<Expr>,
}

/// How the return type maps to what is cached (the runtime's `Shape` impls).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    Plain,
    Result,
    Option,
    ResultOption,
}

/// A TTL in seconds. Literals are checked here; other expressions by a const assertion, which
/// is an inline `const { .. }` when it names `Self` or the function's generics (an item
/// cannot), and a `const _` item otherwise (an item is evaluated by `cargo check` too).
pub(crate) struct Ttl {
    pub(crate) expr: Expr,
    pub(crate) inline: bool,
}

pub(crate) fn cached(
    args: syn::Result<CachedArgs>,
    item: syn::Result<ItemFn>,
) -> syn::Result<Cached> {
    let item = item.map_err(|e| not_a_fn(e, "cached"))?;
    let mut errors = Errors::default();
    errors.check(signature(&item.sig, "cached"));
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
    let key = errors.check(key.and_then(|key| known_placeholders(key, sig, "key")));
    let connections = connection_generics(&sig.generics);
    let hashed = errors
        .check(hashed_args(&args, sig, key.as_ref(), &connections))
        .unwrap_or_default();

    errors.check(returns_named_type(&sig.output));
    let shape = shape(&sig.output, flag(args.common.result.as_ref()));
    let cache_none = args.cache_none.as_ref().filter(|(_, on)| on.value);
    if let Some((kw, _)) = cache_none
        && !matches!(shape, Shape::Option | Shape::ResultOption)
    {
        errors.push(syn::Error::new(
            kw.span,
            "`cache_none` needs a return type `Option<T>` or `Result<Option<T>, E>`",
        ));
    }
    if let (Some((kw, _)), None) = (&args.none_ttl, cache_none) {
        errors.push(syn::Error::new(
            kw.span,
            "`none_ttl` has no effect without `cache_none = true`",
        ));
    }
    let ttl = args
        .ttl
        .map(|(_, expr)| errors.check(seconds("ttl", expr, &sig.generics)));
    let none_ttl = args
        .none_ttl
        .map(|(_, expr)| errors.check(seconds("none_ttl", expr, &sig.generics)));

    let (type_params, const_params) = hashed_generics(&sig.generics, &connections);
    let cached = key.map(|key| Cached {
        krate: krate(&args.common),
        key,
        hashed,
        type_params,
        const_params,
        shape,
        ttl: ttl.flatten(),
        none_ttl: none_ttl.flatten(),
        cache_none: cache_none.is_some(),
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
    errors.check(signature(&item.sig, "invalidates"));
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
            errors.check(pattern.and_then(|p| known_placeholders(p, &item.sig, "pattern")))
        })
        .collect();
    let result = matches!(
        shape(&item.sig.output, flag(args.common.result.as_ref())),
        Shape::Result | Shape::ResultOption
    );
    let invalidates = Invalidates {
        krate: krate(&args.common),
        patterns,
        result,
        cache: args.common.cache.map(|(_, e)| e),
        item,
    };
    errors.finish(Some(invalidates))
}

/// Errors collected from independent checks.
#[derive(Default)]
struct Errors(Option<syn::Error>);

impl Errors {
    fn push(&mut self, error: syn::Error) {
        match &mut self.0 {
            Some(all) => all.combine(error),
            None => self.0 = Some(error),
        }
    }

    fn check<T>(&mut self, result: syn::Result<T>) -> Option<T> {
        result.map_err(|e| self.push(e)).ok()
    }

    /// The collected errors, or `value` if there are none (`value` is `None` only after an
    /// error).
    fn finish<T>(self, value: Option<T>) -> syn::Result<T> {
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

fn flag(option: Option<&(impl Sized, syn::LitBool)>) -> Option<bool> {
    option.map(|(_, value)| value.value)
}

/// The item did not parse as a function (rustc has parsed it as some item already).
fn not_a_fn(error: syn::Error, name: &str) -> syn::Error {
    syn::Error::new(
        error.span(),
        format!("`#[{name}]` applies to an `async fn` with a body: {error}"),
    )
}

/// The wrapped body becomes a future, so the function must already be async.
fn signature(sig: &Signature, name: &str) -> syn::Result<()> {
    match sig.asyncness {
        Some(_) => Ok(()),
        None => Err(syn::Error::new(
            sig.fn_token.span,
            format!("`#[{name}]` can only be applied to an `async fn`"),
        )),
    }
}

/// A cached value is deserialized into the return type, which must therefore be nameable.
fn returns_named_type(output: &ReturnType) -> syn::Result<()> {
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
            "`#[cached]` cannot cache an `impl Trait` return type: name the type",
        )),
    }
}

/// Chosen from the written return type; `result` overrides the `Result` detection (for
/// aliases such as `DbResult<T>`).
fn shape(output: &ReturnType, result: Option<bool>) -> Shape {
    let ReturnType::Type(_, ty) = output else {
        return Shape::Plain;
    };
    let (name, first) = match last_segment(ty) {
        Some(segment) => (segment.ident.to_string(), first_type_arg(segment)),
        None => (String::new(), None),
    };
    let is_result = result.unwrap_or(name == "Result" && first.is_some());
    let is_option = |ty: Option<&Type>| {
        ty.and_then(last_segment)
            .is_some_and(|s| s.ident == "Option" && first_type_arg(s).is_some())
    };
    match (is_result, is_result && is_option(first)) {
        (true, true) => Shape::ResultOption,
        (true, false) => Shape::Result,
        (false, _) if is_option(Some(ty)) => Shape::Option,
        (false, _) => Shape::Plain,
    }
}

fn last_segment(ty: &Type) -> Option<&syn::PathSegment> {
    match ty {
        Type::Path(path) if path.qself.is_none() => path.path.segments.last(),
        Type::Group(group) => last_segment(&group.elem),
        Type::Paren(paren) => last_segment(&paren.elem),
        _ => None,
    }
}

fn first_type_arg(segment: &syn::PathSegment) -> Option<&Type> {
    match &segment.arguments {
        syn::PathArguments::AngleBracketed(args) => args.args.iter().find_map(|arg| match arg {
            syn::GenericArgument::Type(ty) => Some(ty),
            _ => None,
        }),
        _ => None,
    }
}

/// A typed (non-`self`) parameter.
struct Param<'a> {
    /// `None` for patterns other than a plain binding (`(a, b): (u8, u8)`, `_: T`).
    name: Option<&'a Ident>,
    pat: &'a Pat,
    ty: &'a Type,
}

fn params(sig: &Signature) -> Vec<Param<'_>> {
    sig.inputs
        .iter()
        .filter_map(|arg| match arg {
            FnArg::Typed(typed) => Some(Param {
                name: match &*typed.pat {
                    Pat::Ident(pat) if pat.subpat.is_none() => Some(&pat.ident),
                    _ => None,
                },
                pat: &typed.pat,
                ty: &typed.ty,
            }),
            FnArg::Receiver(_) => None,
        })
        .collect()
}

/// "expected one of: `a`, `b`", for errors naming a parameter that does not exist.
fn expected_params(sig: &Signature) -> String {
    let names: Vec<String> = sig
        .inputs
        .iter()
        .filter_map(|arg| match arg {
            FnArg::Receiver(_) => Some("`self`".to_owned()),
            FnArg::Typed(typed) => match &*typed.pat {
                Pat::Ident(pat) => Some(format!("`{}`", pat.ident)),
                _ => None,
            },
        })
        .collect();
    if names.is_empty() {
        "the function has no parameters".to_owned()
    } else {
        format!("expected one of: {}", names.join(", "))
    }
}

/// Every placeholder names a parameter (`self` included, for methods).
fn known_placeholders(template: Template, sig: &Signature, what: &str) -> syn::Result<Template> {
    let mut errors = Errors::default();
    for placeholder in template.placeholders() {
        let known = if placeholder.root == "self" {
            sig.receiver().is_some()
        } else {
            params(sig)
                .iter()
                .any(|p| p.name == Some(&placeholder.root))
        };
        if !known {
            errors.push(syn::Error::new(
                template.span,
                format!(
                    "unknown placeholder `<{placeholder}>` in {what}: no parameter `{}`; {}",
                    placeholder.root,
                    expected_params(sig)
                ),
            ));
        }
    }
    errors.finish(Some(template))
}

/// The arguments hashed into the key: all but those in the template, skipped, used by the
/// `cache` expression, and connections.
fn hashed_args(
    args: &CachedArgs,
    sig: &Signature,
    key: Option<&Template>,
    connections: &[&Ident],
) -> syn::Result<Vec<Ident>> {
    let mut errors = Errors::default();
    let params = params(sig);
    let in_key = |name: &Ident| key.is_some_and(|k| k.placeholders().any(|p| p.root == *name));
    let skipped: Vec<&Ident> = args.skip.iter().flat_map(|(_, names)| names).collect();
    for name in &skipped {
        if !params.iter().any(|p| p.name == Some(*name)) {
            errors.push(syn::Error::new(
                name.span(),
                format!(
                    "cannot skip `{name}`: no such parameter; {}",
                    expected_params(sig)
                ),
            ));
        } else if in_key(name) {
            errors.push(syn::Error::new(
                name.span(),
                format!("`{name}` is in the key template, so it cannot be skipped"),
            ));
        }
    }
    let cache_uses = args.common.cache.as_ref().map(|(_, e)| idents_in(e));
    let mut hashed = Vec::new();
    for param in params.iter().filter(|p| !is_connection(p.ty, connections)) {
        match param.name {
            Some(name)
                if in_key(name)
                    || skipped.contains(&name)
                    || cache_uses.as_ref().is_some_and(|uses| uses.contains(name)) => {}
            Some(name) => hashed.push(name.clone()),
            None => errors.push(syn::Error::new(
                param.pat.span(),
                "`#[cached]` hashes every argument that is not in the key, and this one has no \
                 name: bind it to a name (and `skip(..)` it if it cannot change the result)",
            )),
        }
    }
    errors.finish(Some(hashed))
}

fn seconds(name: &str, expr: Expr, generics: &Generics) -> syn::Result<Ttl> {
    let expected = format!(
        "`{name}` is a number of seconds: a positive integer literal or a `u64` const expression"
    );
    match &expr {
        Expr::Lit(ExprLit {
            lit: Lit::Int(int), ..
        }) => {
            if !matches!(int.suffix(), "" | "u64") {
                return Err(syn::Error::new(
                    int.span(),
                    format!("{expected}; drop the `{}` suffix", int.suffix()),
                ));
            }
            if int.base10_parse::<u64>()? == 0 {
                return Err(syn::Error::new(
                    int.span(),
                    format!("`{name}` must be a positive number of seconds"),
                ));
            }
        }
        Expr::Lit(ExprLit {
            lit: Lit::Str(s), ..
        }) => {
            let hint = match s.value().trim().parse::<u64>() {
                Ok(secs) if secs > 0 => format!("; write `{name} = {secs}`"),
                _ => String::new(),
            };
            return Err(syn::Error::new(
                s.span(),
                format!("{expected}, not a string{hint}"),
            ));
        }
        Expr::Lit(lit) => return Err(syn::Error::new(lit.span(), expected)),
        Expr::Unary(ExprUnary {
            op: UnOp::Neg(_), ..
        }) => {
            return Err(syn::Error::new(
                expr.span(),
                format!("`{name}` must be a positive number of seconds"),
            ));
        }
        _ => {}
    }
    let inline = mentions_generics(&expr, generics);
    Ok(Ttl { expr, inline })
}

/// Whether `expr` names `Self` or one of the function's generic parameters.
fn mentions_generics(expr: &Expr, generics: &Generics) -> bool {
    struct Find<'a>(&'a Generics, bool);
    impl Visit<'_> for Find<'_> {
        fn visit_path(&mut self, path: &Path) {
            if let Some(first) = path.segments.first() {
                self.1 |= first.ident == "Self"
                    || self.0.params.iter().any(|p| match p {
                        GenericParam::Type(t) => t.ident == first.ident,
                        GenericParam::Const(c) => c.ident == first.ident,
                        GenericParam::Lifetime(_) => false,
                    });
            }
            visit::visit_path(self, path);
        }
    }
    let mut find = Find(generics, false);
    find.visit_expr(expr);
    find.1
}

/// Single-identifier paths in an expression: the parameters a `cache = ..` expression uses.
fn idents_in(expr: &Expr) -> Vec<Ident> {
    struct Find(Vec<Ident>);
    impl Visit<'_> for Find {
        fn visit_path(&mut self, path: &Path) {
            if let Some(ident) = path.get_ident() {
                self.0.push(ident.clone());
            }
            visit::visit_path(self, path);
        }
    }
    let mut find = Find(Vec::new());
    find.visit_expr(expr);
    find.0
}

/// sea-orm connections are skipped without being asked: `DatabaseConnection`,
/// `DatabaseTransaction` (behind references), `impl ConnectionTrait`, `dyn ConnectionTrait`,
/// and type parameters bounded by `ConnectionTrait`.
fn is_connection(ty: &Type, connection_generics: &[&Ident]) -> bool {
    match ty {
        Type::Reference(r) => is_connection(&r.elem, connection_generics),
        Type::Group(g) => is_connection(&g.elem, connection_generics),
        Type::Paren(p) => is_connection(&p.elem, connection_generics),
        Type::Path(p) if p.qself.is_none() => {
            p.path.segments.last().is_some_and(|s| {
                s.ident == "DatabaseConnection" || s.ident == "DatabaseTransaction"
            }) || p
                .path
                .get_ident()
                .is_some_and(|ident| connection_generics.contains(&ident))
        }
        Type::ImplTrait(t) => bounds_connection(&t.bounds),
        Type::TraitObject(t) => bounds_connection(&t.bounds),
        _ => false,
    }
}

fn bounds_connection(bounds: &Punctuated<TypeParamBound, Token![+]>) -> bool {
    bounds.iter().any(|bound| match bound {
        TypeParamBound::Trait(t) => t
            .path
            .segments
            .last()
            .is_some_and(|s| s.ident == "ConnectionTrait"),
        _ => false,
    })
}

/// Type parameters bounded by `ConnectionTrait`, inline or in the where clause.
fn connection_generics(generics: &Generics) -> Vec<&Ident> {
    let where_bounded = |ident: &Ident| {
        generics
            .where_clause
            .iter()
            .flat_map(|w| &w.predicates)
            .any(|p| match p {
                WherePredicate::Type(t) => {
                    matches!(&t.bounded_ty, Type::Path(path) if path.path.is_ident(ident))
                        && bounds_connection(&t.bounds)
                }
                _ => false,
            })
    };
    generics
        .type_params()
        .filter(|t| bounds_connection(&t.bounds) || where_bounded(&t.ident))
        .map(|t| &t.ident)
        .collect()
}

/// Generic parameters that go into the hash: all but connection types.
fn hashed_generics(generics: &Generics, connections: &[&Ident]) -> (Vec<Ident>, Vec<Ident>) {
    let types = generics
        .type_params()
        .filter(|t| !connections.contains(&&t.ident))
        .map(|t| t.ident.clone())
        .collect();
    let consts = generics.const_params().map(|c| c.ident.clone()).collect();
    (types, consts)
}
