//! Key templates (`"users:<id>"`) and invalidation patterns (`"users:<id>:*"`): literal text
//! and `<param>` / `<param.field>` placeholders. Errors point at the string literal.

use std::fmt;

use proc_macro2::Span;
use syn::ext::IdentExt;
use syn::parse::Parser;
use syn::{Ident, Index, LitStr, Member};

/// The runtime's namespace for invalidation markers.
const MARKER_NS: &str = "__inv:";

/// A parsed template.
pub(crate) struct Template {
    pub(crate) parts: Vec<Part>,
    /// The string literal's span.
    pub(crate) span: Span,
}

pub(crate) enum Part {
    Literal(String),
    Placeholder(Placeholder),
}

/// `<root.field.field>`. The identifiers carry the literal's span, so they resolve to the
/// function's parameters and errors about them point at the template.
pub(crate) struct Placeholder {
    pub(crate) root: Ident,
    pub(crate) fields: Vec<Member>,
}

impl fmt::Display for Placeholder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.root)?;
        for field in &self.fields {
            match field {
                Member::Named(name) => write!(f, ".{name}")?,
                Member::Unnamed(index) => write!(f, ".{}", index.index)?,
            }
        }
        Ok(())
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Key,
    Pattern,
}

impl Template {
    /// A `#[cached]` key: no wildcards.
    pub(crate) fn key(lit: &LitStr) -> syn::Result<Self> {
        Self::parse(lit, Kind::Key)
    }

    /// An `#[invalidates]` pattern: a key, `prefix:*`, or `*`.
    pub(crate) fn pattern(lit: &LitStr) -> syn::Result<Self> {
        Self::parse(lit, Kind::Pattern)
    }

    pub(crate) fn placeholders(&self) -> impl Iterator<Item = &Placeholder> {
        self.parts.iter().filter_map(|part| match part {
            Part::Placeholder(p) => Some(p),
            Part::Literal(_) => None,
        })
    }

    fn parse(lit: &LitStr, kind: Kind) -> syn::Result<Self> {
        let what = match kind {
            Kind::Key => "key",
            Kind::Pattern => "pattern",
        };
        let error = |message: String| syn::Error::new(lit.span(), message);
        let text = lit.value();
        if text.is_empty() {
            return Err(error(format!("empty {what}: write e.g. `\"users:<id>\"`")));
        }
        let mut parts = Vec::new();
        // The template with each placeholder as `x`: what the segment rules are checked on.
        let mut skeleton = String::new();
        let mut rest = text.as_str();
        while !rest.is_empty() {
            let open = rest.find(['<', '>']).unwrap_or(rest.len());
            let (literal, tail) = rest.split_at(open);
            if !literal.is_empty() {
                check_chars(literal, kind).map_err(|m| error(format!("{what} `{text}` {m}")))?;
                skeleton.push_str(literal);
                parts.push(Part::Literal(literal.to_owned()));
            }
            let Some(tail) = tail.strip_prefix('<') else {
                if tail.starts_with('>') {
                    return Err(error(format!(
                        "unbalanced `>` in {what} `{text}`; placeholders are written `<param>`"
                    )));
                }
                break;
            };
            let close = tail
                .find(['<', '>'])
                .filter(|&i| tail[i..].starts_with('>'));
            let Some(close) = close else {
                return Err(error(format!(
                    "unbalanced `<` in {what} `{text}`: a placeholder is `<param>`, closed by `>`"
                )));
            };
            let placeholder = placeholder(&tail[..close], lit.span()).ok_or_else(|| {
                error(format!(
                    "invalid placeholder `<{}>` in {what} `{text}`: expected a parameter name, \
                     optionally followed by fields (`<filter.name>`)",
                    &tail[..close]
                ))
            })?;
            skeleton.push('x');
            parts.push(Part::Placeholder(placeholder));
            rest = &tail[close + 1..];
        }
        check_segments(&skeleton, &text, kind)
            .map_err(|m| error(format!("{what} `{text}` {m}")))?;
        Ok(Self {
            parts,
            span: lit.span(),
        })
    }
}

/// `name` or `name.field.0`.
fn placeholder(text: &str, span: Span) -> Option<Placeholder> {
    let mut names = text.split('.');
    let root = ident(names.next()?, span)?;
    let fields = names
        .map(|name| match name.parse::<u32>() {
            Ok(index) => Some(Member::Unnamed(Index { index, span })),
            Err(_) => ident(name, span).map(Member::Named),
        })
        .collect::<Option<_>>()?;
    Some(Placeholder { root, fields })
}

/// An identifier (`self` included), spanned like the literal it came from.
fn ident(name: &str, span: Span) -> Option<Ident> {
    let mut ident = Parser::parse_str(Ident::parse_any, name).ok()?;
    ident.set_span(span);
    Some(ident)
}

/// Characters that mean something to Redis glob patterns, to Redis Cluster hash tags or to the
/// runtime's escaping may not appear literally; `*` only as an `#[invalidates]` wildcard.
fn check_chars(literal: &str, kind: Kind) -> Result<(), String> {
    match literal.chars().find(|&c| {
        matches!(c, '?' | '[' | ']' | '{' | '}' | '\\')
            || (c == '*' && kind == Kind::Key)
            || c.is_whitespace()
            || c.is_control()
    }) {
        None => Ok(()),
        Some('*') => Err("contains `*`, which only `#[invalidates]` patterns may use".to_owned()),
        Some(c) if c.is_whitespace() || c.is_control() => {
            Err("contains whitespace or a control character".to_owned())
        }
        Some(c) => Err(format!(
            "contains `{c}`, which has a meaning in Redis patterns"
        )),
    }
}

/// Keys are non-empty `:`-separated segments outside the marker namespace; a pattern may end
/// in a whole `*` segment, or be `*`.
fn check_segments(skeleton: &str, text: &str, kind: Kind) -> Result<(), String> {
    let body = match kind {
        Kind::Pattern if skeleton == "*" => return Ok(()),
        Kind::Pattern => skeleton.strip_suffix(":*").unwrap_or(skeleton),
        Kind::Key => skeleton,
    };
    if body.contains('*') {
        return Err(match text.strip_suffix('*') {
            Some(prefix) if !prefix.contains('*') => format!(
                "has a `*` that is not a whole trailing segment; did you mean `{prefix}:*`?"
            ),
            _ => "has a `*` that is not a whole trailing segment: write `users:*`, \
                  `users:<id>:*` or `*`"
                .to_owned(),
        });
    }
    if body.split(':').any(str::is_empty) {
        return Err(
            "has an empty segment: `:` separates non-empty segments, and cannot start or end \
             a key"
                .to_owned(),
        );
    }
    if body.starts_with(MARKER_NS) {
        return Err(format!(
            "starts with `{MARKER_NS}`, which is reserved for the cache's invalidation markers"
        ));
    }
    Ok(())
}
