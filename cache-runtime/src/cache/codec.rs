//! The value envelope: `{"v":1,"t":<load start, unix ms>,"s":<type tag>,"g":[<marker
//! generations>],"d":<value>}`.
//!
//! `g` holds the generations of the entry's invalidation markers as read *before* the load
//! started; a read compares them with the current ones, so an entry loaded before an
//! invalidation can never be served after it, whenever it was stored. `t` is for humans. `s`
//! (written by `#[cached]` fills) tags the value's type: two functions whose templates give the
//! same key read each other's entries as misses, not as values of the wrong type that happen to
//! decode (REVIEW R23). Entries written by `Cache::set` carry none and are read by anyone.

use serde::{Deserialize, Serialize, de::DeserializeOwned};

use super::store::Gens;

/// Envelope format version; anything else under a key is a foreign entry, hence a miss.
const VERSION: u32 = 1;

#[derive(Serialize)]
struct EnvelopeRef<'a, V: ?Sized> {
    v: u32,
    t: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    s: Option<u32>,
    g: &'a [u64],
    d: &'a V,
}

#[derive(Deserialize)]
pub(crate) struct Envelope<V> {
    v: u32,
    #[serde(default)]
    s: Option<u32>,
    pub(crate) g: Gens,
    pub(crate) d: V,
}

/// A tag of `V`'s type: 32 bits of a hash of its name, the same in every process of one build
/// (Fx is not seeded). A collision only costs what the tag would have prevented; 32 bits keep
/// the number short, since every hit parses it.
pub(crate) fn type_tag<V: ?Sized>() -> u32 {
    use std::hash::BuildHasher as _;
    let hash = rustc_hash::FxBuildHasher.hash_one(std::any::type_name::<V>());
    // The high half: Fx mixes the last bytes into the high bits.
    (hash >> 32) as u32
}

/// Encodes a value with the marker generations observed when its load started and, for
/// `#[cached]` fills, its type tag.
pub(crate) fn encode<V: Serialize + ?Sized>(
    value: &V,
    gens: &[u64],
    started_ms: u64,
    tag: Option<u32>,
) -> Result<Vec<u8>, serde_json::Error> {
    serde_json::to_vec(&EnvelopeRef {
        v: VERSION,
        t: started_ms,
        s: tag,
        g: gens,
        d: value,
    })
}

/// Decodes an entry; `None` for anything corrupt, truncated, foreign or of another type,
/// including an entry tagged with another type than `tag` (when both are given).
pub(crate) fn decode<V: DeserializeOwned>(bytes: &[u8], tag: Option<u32>) -> Option<Envelope<V>> {
    serde_json::from_slice::<Envelope<V>>(bytes)
        .ok()
        .filter(|e| e.v == VERSION && (tag.is_none() || e.s.is_none() || e.s == tag))
}

/// The first bytes of every entry we write; the Redis sweep only deletes values that start so.
#[cfg_attr(
    not(feature = "redis"),
    allow(dead_code, reason = "the Redis sweep's guard")
)]
pub(crate) const ENTRY_MAGIC: &str = "{\"v\":1,";

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_magic() {
        let bytes = encode(&vec!["a".to_owned()], &[1, 2], 5, None).unwrap();
        assert!(bytes.starts_with(ENTRY_MAGIC.as_bytes()));
        let e = decode::<Vec<String>>(&bytes, None).unwrap();
        assert_eq!((&e.g[..], e.d), (&[1, 2][..], vec!["a".to_owned()]));
    }

    #[test]
    fn corrupt_truncated_foreign_are_none() {
        let good = encode(&42u32, &[0], 0, None).unwrap();
        assert!(decode::<u32>(&good[..good.len() - 1], None).is_none());
        assert!(decode::<u32>(b"\xff\x00garbage", None).is_none());
        assert!(decode::<u32>(br#"{"v":2,"t":0,"g":[],"d":1}"#, None).is_none());
        assert!(decode::<String>(&good, None).is_none());
        assert!(decode::<u32>(b"42", None).is_none());
    }

    /// R23: an entry of another type that happens to decode is a miss for a tagged read.
    #[test]
    fn r23_another_types_entry_is_a_miss() {
        #[derive(serde::Serialize, serde::Deserialize)]
        struct User {
            id: u32,
        }
        #[derive(serde::Serialize, serde::Deserialize)]
        struct Summary {
            id: u32,
        }
        let bytes = encode(&User { id: 1 }, &[1], 0, Some(type_tag::<User>())).unwrap();
        assert!(decode::<User>(&bytes, Some(type_tag::<User>())).is_some());
        assert!(decode::<Summary>(&bytes, Some(type_tag::<Summary>())).is_none());
        assert!(
            decode::<Summary>(&bytes, None).is_some(),
            "untagged reads take it"
        );
        let untagged = encode(&User { id: 1 }, &[1], 0, None).unwrap();
        assert!(decode::<Summary>(&untagged, Some(type_tag::<Summary>())).is_some());
        assert_ne!(type_tag::<User>(), type_tag::<Summary>());
    }
}
