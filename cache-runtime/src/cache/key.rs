//! Cache keys: rendering templates, escaping argument values, hashing arguments, and the
//! invalidation markers a key is checked against.
//!
//! A key is a list of `:`-separated segments. Template literals supply the separators; argument
//! values are escaped so that they can never contain one, nor anything a Redis glob pattern gives
//! meaning to. That is what makes a prefix pattern (`users:42:*`) unable to reach outside its prefix.

use std::fmt::Write as _;

use serde::Serialize;

use super::markers::Marker;

pub(crate) use crate::error::KeyError;

/// How a JSON `null` renders in a key: values always escape `%`, so no string renders so.
const NULL: &str = "%00n";

/// Escaped argument values longer than this are replaced by their hash.
pub(crate) const MAX_VALUE_LEN: usize = 64;
/// Keys longer than this are not cached (the call goes straight through, counted as an error).
pub const MAX_KEY_LEN: usize = 1024;
/// Namespace of invalidation markers; templates may not start with it.
pub(crate) const MARKER_NS: &str = "__inv:";

/// Builds one key (or invalidation pattern) from template parts. Used by the macro expansions
/// through `__private`, and usable directly.
#[derive(Debug, Default)]
pub struct KeyBuilder {
    key: String,
    /// What the `:<hash>` suffix hashes, framed (see [`KeyBuilder::hash`]); hashed once at the
    /// end, which for small inputs is much cheaper than feeding a hasher value by value.
    hashed: Option<Vec<u8>>,
    error: Option<KeyError>,
}

impl KeyBuilder {
    /// Starts an empty key.
    pub fn new() -> Self {
        Self {
            key: String::with_capacity(64),
            ..Self::default()
        }
    }

    /// Appends literal template text, as is.
    pub fn literal(&mut self, text: &str) -> &mut Self {
        self.key.push_str(text);
        self
    }

    /// Appends an argument value, escaped (and hashed when long). Strings appear as themselves,
    /// numbers and booleans as their JSON text, `null` (a `None`) as `%00n`, which no escaped
    /// string can be (REVIEW R23), and anything else as its JSON.
    pub fn value<T: Serialize + ?Sized>(&mut self, name: &'static str, value: &T) -> &mut Self {
        // Most values' JSON (an id, a short name) fits on the stack.
        let mut json = smallvec::SmallVec::<[u8; 64]>::new();
        match serde_json::to_writer(&mut json, value).map(|()| json) {
            // A JSON string: its contents, unescaped (the common case has no escapes to undo).
            Ok(json) if json.first() == Some(&b'"') => match std::str::from_utf8(&json) {
                Ok(text) if !text.contains('\\') => {
                    push_escaped(&mut self.key, &text[1..text.len() - 1])
                }
                _ => match serde_json::from_slice::<String>(&json) {
                    Ok(text) => push_escaped(&mut self.key, &text),
                    Err(e) => self.fail(KeyError::Serialize(name, e.to_string())),
                },
            },
            Ok(json) if json[..] == *b"null" => self.key.push_str(NULL),
            Ok(json) => push_escaped(&mut self.key, &String::from_utf8_lossy(&json)),
            Err(e) => self.fail(KeyError::Serialize(name, e.to_string())),
        }
        self
    }

    /// Feeds an argument into the `:<hash>` suffix: blake3 over its name and its serde_json
    /// form, map keys sorted (a `HashMap` iterates in a per-process order, and every instance
    /// must build the same key).
    pub fn hash<T: Serialize + ?Sized>(&mut self, name: &'static str, value: &T) -> &mut Self {
        let hashed = self.hashed.get_or_insert_with(|| Vec::with_capacity(64));
        let start = hashed.len();
        // `name=<json>\n`: names are identifiers and JSON is self-delimiting, so the
        // concatenation of several arguments is unambiguous.
        hashed.extend_from_slice(name.as_bytes());
        hashed.push(b'=');
        let json = hashed.len();
        let written = serde_json::to_writer(&mut *hashed, value).and_then(|()| {
            // Only JSON with an object in it can depend on a map's iteration order.
            if hashed[json..].contains(&b'{') {
                let parsed = serde_json::from_slice::<serde_json::Value>(&hashed[json..])?;
                hashed.truncate(json);
                serde_json::to_writer(&mut *hashed, &canonical(parsed))?;
            }
            Ok(())
        });
        match written {
            Ok(()) => hashed.push(b'\n'),
            Err(e) => {
                hashed.truncate(start);
                self.fail(KeyError::Serialize(name, e.to_string()));
            }
        }
        self
    }

    /// Feeds a type into the hash suffix (generic functions cache per instantiation).
    pub fn type_param<T: ?Sized>(&mut self) -> &mut Self {
        let hashed = self.hashed.get_or_insert_with(|| Vec::with_capacity(64));
        hashed.extend_from_slice(std::any::type_name::<T>().as_bytes());
        hashed.push(b'\n');
        self
    }

    /// Finishes the key: appends `:<hash>` when anything was hashed.
    ///
    /// # Errors
    /// When an argument failed to serialize or the key is too long or malformed.
    pub fn finish(mut self) -> Result<String, KeyError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        if let Some(hashed) = self.hashed {
            self.key.push(':');
            push_hash(&mut self.key, &blake3::hash(&hashed));
        }
        check_key(&self.key)?;
        Ok(self.key)
    }

    fn fail(&mut self, error: KeyError) {
        self.error.get_or_insert(error);
    }
}

/// Checks a complete key: non-empty segments, bounded length, not in the marker namespace.
pub(crate) fn check_key(key: &str) -> Result<(), KeyError> {
    if key.len() > MAX_KEY_LEN {
        return Err(KeyError::TooLong);
    }
    let bytes = key.as_bytes();
    let empty_segment = bytes.first().is_none_or(|&b| b == b':')
        || bytes.last() == Some(&b':')
        || bytes.windows(2).any(|w| w == b"::");
    if empty_segment || key.starts_with(MARKER_NS) {
        return Err(KeyError::Malformed(key.to_owned()));
    }
    Ok(())
}

/// `value` with every object's keys in sorted order, whatever map type serialized it.
fn canonical(value: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k, canonical(v)))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.into_iter().map(canonical).collect()),
        other => other,
    }
}

fn push_hash(out: &mut String, hash: &blake3::Hash) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    // 128 bits of blake3: collisions are out of reach, keys stay short.
    for b in &hash.as_bytes()[..16] {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 15)]));
    }
}

/// Escapes one argument value into `out`. Percent-encoding of `%`, `:`, glob characters, braces
/// (Redis Cluster hash tags), backslash, whitespace and control characters keeps the mapping
/// injective; a value whose escaped form is long becomes `%h` + hash (`h` is not a hex digit, so
/// no escaped value can look like a hashed one).
pub(crate) fn push_escaped(out: &mut String, value: &str) {
    let plain = |b: u8| {
        b.is_ascii_graphic()
            && !matches!(
                b,
                b'%' | b':' | b'*' | b'?' | b'[' | b']' | b'\\' | b'{' | b'}'
            )
    };
    // The common case (an id, a slug): nothing to escape.
    if !value.is_empty() && value.len() <= MAX_VALUE_LEN && value.bytes().all(plain) {
        out.push_str(value);
        return;
    }
    let start = out.len();
    for c in value.chars() {
        if matches!(c, '%' | ':' | '*' | '?' | '[' | ']' | '\\' | '{' | '}')
            || c.is_whitespace()
            || c.is_control()
        {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                let _ = write!(out, "%{b:02X}");
            }
        } else {
            out.push(c);
        }
    }
    if value.is_empty() {
        // An empty value must not produce an empty segment (`users::tasks`).
        out.push_str("%00e");
    }
    if out.len() - start > MAX_VALUE_LEN {
        out.truncate(start);
        out.push_str("%h");
        push_hash(out, &blake3::hash(value.as_bytes()));
    }
}

/// What an invalidation names.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Pattern {
    /// Every entry (`*`): the global epoch.
    All,
    /// Every key under a prefix (`users:*`, `users:42:*`); holds the prefix without `:*`.
    Prefix(String),
    /// One key.
    Exact(String),
}

impl Pattern {
    /// Parses `*`, `prefix:*` or an exact key. A `*` anywhere but as a whole trailing segment
    /// is rejected: markers make prefix invalidation O(1), and only prefixes have markers.
    pub(crate) fn parse(pattern: &str) -> Result<Self, KeyError> {
        if pattern == "*" {
            return Ok(Self::All);
        }
        let (body, prefix) = match pattern.strip_suffix(":*") {
            Some(body) => (body, true),
            None => (pattern, false),
        };
        if body.contains(['*', '?', '[', ']']) {
            return Err(KeyError::Malformed(pattern.to_owned()));
        }
        check_key(body)?;
        Ok(if prefix {
            Self::Prefix(body.to_owned())
        } else {
            Self::Exact(body.to_owned())
        })
    }

    /// The marker this pattern bumps.
    pub(crate) fn marker(&self) -> Marker<'_> {
        match self {
            Self::All => Marker::All,
            Self::Prefix(p) => Marker::Prefix(p),
            Self::Exact(k) => Marker::Exact(k),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(parts: impl FnOnce(&mut KeyBuilder)) -> Result<String, KeyError> {
        let mut b = KeyBuilder::new();
        parts(&mut b);
        b.finish()
    }

    #[test]
    fn renders_templates() {
        assert_eq!(
            key(|b| {
                b.literal("users:").value("id", &42);
            })
            .unwrap(),
            "users:42"
        );
        assert_eq!(
            key(|b| {
                b.literal("users:").value("n", "ada lovelace");
            })
            .unwrap(),
            "users:ada%20lovelace"
        );
        assert_eq!(
            key(|b| {
                b.literal("u:").value("n", "a:b*c\"d");
            })
            .unwrap(),
            "u:a%3Ab%2Ac\"d"
        );
        assert_eq!(
            key(|b| {
                b.literal("u:").value("n", "");
            })
            .unwrap(),
            "u:%00e"
        );
        let hashed = key(|b| {
            b.literal("users:list").hash("skip", &0).hash("limit", &10);
        })
        .unwrap();
        assert!(
            hashed.starts_with("users:list:") && hashed.len() == "users:list:".len() + 32,
            "{hashed}"
        );
        let long = key(|b| {
            b.literal("u:").value("n", &"x".repeat(100));
        })
        .unwrap();
        assert!(long.starts_with("u:%h") && long.len() == 4 + 32, "{long}");
    }

    #[test]
    fn rejects_bad_keys() {
        assert!(matches!(
            key(|b| {
                b.literal("users::x");
            }),
            Err(KeyError::Malformed(_))
        ));
        assert!(matches!(
            key(|b| {
                b.literal("__inv:x");
            }),
            Err(KeyError::Malformed(_))
        ));
        assert!(matches!(
            key(|b| {
                b.literal(&"k".repeat(2000));
            }),
            Err(KeyError::TooLong)
        ));
    }

    #[test]
    fn patterns_and_markers() {
        assert_eq!(Pattern::parse("*").unwrap(), Pattern::All);
        assert_eq!(
            Pattern::parse("users:*").unwrap(),
            Pattern::Prefix("users".into())
        );
        assert_eq!(
            Pattern::parse("users:42").unwrap(),
            Pattern::Exact("users:42".into())
        );
        for bad in ["users*", "us*rs:1", "users:*:x", "", "a::*"] {
            assert!(Pattern::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            Pattern::parse("users:42:*").unwrap().marker(),
            Marker::Prefix("users:42")
        );
    }
}
