//! `ttl = ..` and `none_ttl = ..`: literals are checked here, other expressions by a const
//! assertion in the expansion.

use syn::spanned::Spanned;
use syn::visit::{self, Visit};
use syn::{Expr, ExprLit, ExprUnary, GenericParam, Generics, Lit, Path, UnOp};

/// A TTL in seconds. The const assertion is an inline `const { .. }` when the expression names
/// `Self` or the function's generics (an item cannot), and a `const _` item otherwise (an item
/// is evaluated by `cargo check` too).
pub(crate) struct Ttl {
    pub(crate) expr: Expr,
    pub(crate) inline: bool,
}

pub(crate) fn seconds(name: &str, expr: Expr, generics: &Generics) -> syn::Result<Ttl> {
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
