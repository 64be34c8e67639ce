//! The function's parameters and generics: which placeholders they satisfy, which arguments
//! go into the key's hash, and which are database connections or transactions.

use std::fmt::Write as _;

use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::visit::{self, Visit};
use syn::{
    Expr, FnArg, Generics, Ident, Pat, Path, Signature, Token, Type, TypeParamBound, WherePredicate,
};

use crate::args::CachedArgs;
use crate::key::Template;
use crate::valid::Errors;

/// The wrapped body becomes a future, so the function must already be async.
pub(crate) fn check_async(sig: &Signature, name: &str) -> syn::Result<()> {
    match sig.asyncness {
        Some(_) => Ok(()),
        None => Err(syn::Error::new(
            sig.fn_token.span,
            format!("`#[{name}]` can only be applied to an `async fn`"),
        )),
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
pub(crate) fn known_placeholders(
    template: Template,
    sig: &Signature,
    what: &str,
) -> syn::Result<Template> {
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

/// How the key template uses a parameter.
#[derive(Clone, Copy, PartialEq, Eq)]
enum InKey {
    /// `<q>`: the whole argument is in the key.
    Whole,
    /// Only `<q.field>` placeholders: the rest of the argument must be hashed or skipped.
    Fields,
    /// Not at all: the argument is hashed, unless skipped.
    No,
}

fn in_key(key: Option<&Template>, name: &Ident) -> InKey {
    let whole: Vec<bool> = key
        .into_iter()
        .flat_map(Template::placeholders)
        .filter(|p| p.root == *name)
        .map(|p| p.fields.is_empty())
        .collect();
    match whole[..] {
        [] => InKey::No,
        _ if whole.contains(&true) => InKey::Whole,
        _ => InKey::Fields,
    }
}

/// The arguments hashed into the key, in parameter order: those not in the template, and
/// those in it only through fields and named in `hash(..)`. Skipped arguments, those the
/// `cache` expression uses, and connections are left out. An argument in the template only
/// through fields must be hashed or skipped: its other fields would be silently ignored.
pub(crate) fn hashed_args(
    args: &CachedArgs,
    sig: &Signature,
    key: Option<&Template>,
    connections: &[&Ident],
) -> syn::Result<Vec<Ident>> {
    let mut errors = Errors::default();
    let params = params(sig);
    let exists = |name: &Ident| params.iter().any(|p| p.name == Some(name));
    let skipped: Vec<&Ident> = args.skip.iter().flat_map(|(_, names)| names).collect();
    let hashed: Vec<&Ident> = args.hash.iter().flat_map(|(_, names)| names).collect();
    for name in &skipped {
        if !exists(name) {
            errors.push(syn::Error::new(
                name.span(),
                format!(
                    "cannot skip `{name}`: no such parameter; {}",
                    expected_params(sig)
                ),
            ));
        } else if in_key(key, name) == InKey::Whole {
            errors.push(syn::Error::new(
                name.span(),
                format!("`{name}` is in the key template, so it cannot be skipped"),
            ));
        }
    }
    for name in &hashed {
        let message = if !exists(name) {
            format!(
                "cannot hash `{name}`: no such parameter; {}",
                expected_params(sig)
            )
        } else if skipped.contains(name) {
            format!("`{name}` cannot be both hashed and skipped")
        } else {
            match in_key(key, name) {
                InKey::Fields => continue,
                InKey::Whole => format!(
                    "`{name}` is in the key template whole, so there is nothing left to hash; \
                     `hash(..)` is for arguments the template uses only through fields"
                ),
                InKey::No => format!(
                    "`{name}` is not in the key template, so it is hashed already; `hash(..)` is \
                     for arguments the template uses only through fields"
                ),
            }
        };
        errors.push(syn::Error::new(name.span(), message));
    }
    let cache_uses = args.common.cache.as_ref().map(|(_, e)| idents_in(e));
    let used_by_cache = |name: &Ident| cache_uses.as_ref().is_some_and(|uses| uses.contains(name));
    let mut hash = Vec::new();
    for param in params
        .iter()
        .filter(|p| connection(p.ty, connections).is_none())
    {
        let Some(name) = param.name else {
            errors.push(syn::Error::new(
                param.pat.span(),
                "`#[cached]` hashes every argument that is not in the key, and this one has no \
                 name: bind it to a name (and `skip(..)` it if it cannot change the result)",
            ));
            continue;
        };
        let omitted = skipped.contains(&name) || used_by_cache(name);
        match in_key(key, name) {
            InKey::Whole => {}
            InKey::Fields if hashed.contains(&name) => hash.push(name.clone()),
            InKey::Fields if omitted => {}
            InKey::Fields => errors.push(partly_in_key(key, name)),
            InKey::No if omitted => {}
            InKey::No => hash.push(name.clone()),
        }
    }
    errors.finish(Some(hash))
}

/// R6: `<q.account>` alone would leave `q`'s other fields out of the key.
fn partly_in_key(key: Option<&Template>, name: &Ident) -> syn::Error {
    let mut placeholders = String::new();
    for (i, p) in key
        .into_iter()
        .flat_map(Template::placeholders)
        .filter(|p| p.root == *name)
        .enumerate()
    {
        let separator = if i == 0 { "" } else { ", " };
        let _ = write!(placeholders, "{separator}`<{p}>`");
    }
    syn::Error::new(
        key.map_or_else(|| name.span(), |k| k.span),
        format!(
            "`{name}` is only partly in the key ({placeholders}): calls that differ in its other \
             fields would share an entry; add `hash({name})` to hash the whole argument as well, \
             or `skip({name})` if the fields in the template are all that can change the result"
        ),
    )
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

/// A database handle parameter, which is left out of the key without being asked.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Connection {
    /// A pool: reads see committed rows.
    Pool,
    /// A transaction: reads may see rows that are not committed, and writes are not visible
    /// to others until the caller commits.
    Transaction,
    /// Either (`impl ConnectionTrait`, a bounded type parameter, `DatabaseExecutor`): allowed,
    /// and documented as a possible transaction.
    Any,
}

/// sea-orm's handle types, recognised by name because the macro sees tokens, not types:
/// a path whose last segment is one of these (behind references).
const CONNECTION_TYPES: &[(&str, Connection)] = &[
    ("DatabaseConnection", Connection::Pool),
    ("RestrictedConnection", Connection::Pool),
    ("DatabaseTransaction", Connection::Transaction),
    ("RestrictedTransaction", Connection::Transaction),
    ("DatabaseExecutor", Connection::Any),
];

/// sea-orm's connection traits: `impl Trait`, `dyn Trait` and type parameters bounded by
/// them may be a pool or a transaction.
const CONNECTION_TRAITS: &[&str] = &["ConnectionTrait", "TransactionTrait"];

fn connection(ty: &Type, connection_generics: &[&Ident]) -> Option<Connection> {
    match ty {
        Type::Reference(r) => connection(&r.elem, connection_generics),
        Type::Group(g) => connection(&g.elem, connection_generics),
        Type::Paren(p) => connection(&p.elem, connection_generics),
        Type::Path(p) if p.qself.is_none() => {
            let last = p.path.segments.last()?;
            CONNECTION_TYPES
                .iter()
                .find(|(name, _)| last.ident == name)
                .map(|&(_, kind)| kind)
                .or_else(|| {
                    p.path
                        .get_ident()
                        .filter(|ident| connection_generics.contains(ident))
                        .map(|_| Connection::Any)
                })
        }
        Type::ImplTrait(t) => bounds_connection(&t.bounds).then_some(Connection::Any),
        Type::TraitObject(t) => bounds_connection(&t.bounds).then_some(Connection::Any),
        _ => None,
    }
}

fn bounds_connection(bounds: &Punctuated<TypeParamBound, Token![+]>) -> bool {
    bounds.iter().any(|bound| match bound {
        TypeParamBound::Trait(t) => t
            .path
            .segments
            .last()
            .is_some_and(|s| CONNECTION_TRAITS.iter().any(|name| s.ident == name)),
        _ => false,
    })
}

/// Type parameters bounded by a connection trait, inline or in the where clause.
pub(crate) fn connection_generics(generics: &Generics) -> Vec<&Ident> {
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

/// R7: `#[cached]` with a transaction parameter would cache what the transaction sees,
/// uncommitted rows included.
pub(crate) fn no_cached_transaction(sig: &Signature) -> syn::Result<()> {
    transactions(
        sig,
        "`#[cached]` cannot cache a read made through a transaction: it may see rows the \
         transaction has not committed (and may roll back), and the cache would serve them to \
         every caller; read through a `&DatabaseConnection` instead, outside the transaction",
    )
}

/// R7: `#[invalidates]` with a transaction parameter would invalidate before the caller
/// commits, unless deferred.
pub(crate) fn no_undeferred_transaction(sig: &Signature) -> syn::Result<()> {
    transactions(
        sig,
        "`#[invalidates]` on a function that writes through a transaction would invalidate when \
         it returns, before the caller commits, and a concurrent read could cache the old rows \
         again; write `#[invalidates(.., deferred)]` and run the transaction inside \
         `cache_runtime::defer_invalidations(..)`",
    )
}

/// An error at every transaction parameter.
fn transactions(sig: &Signature, message: &str) -> syn::Result<()> {
    let mut errors = Errors::default();
    for param in params(sig) {
        if connection(param.ty, &[]) == Some(Connection::Transaction) {
            errors.push(syn::Error::new_spanned(param.ty, message));
        }
    }
    errors.finish(Some(()))
}

/// Generic parameters that go into the hash: all but connection types.
pub(crate) fn hashed_generics(
    generics: &Generics,
    connections: &[&Ident],
) -> (Vec<Ident>, Vec<Ident>) {
    let types = generics
        .type_params()
        .filter(|t| !connections.contains(&&t.ident))
        .map(|t| t.ident.clone())
        .collect();
    let consts = generics.const_params().map(|c| c.ident.clone()).collect();
    (types, consts)
}
