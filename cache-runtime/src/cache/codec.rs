//! The value envelope: `{"v":1,"t":<load start, unix ms>,"g":[<marker generations>],"d":<value>}`.
//!
//! `g` holds the generations of the entry's invalidation markers as read *before* the load
//! started; a read compares them with the current ones, so an entry loaded before an
//! invalidation can never be served after it, whenever it was stored. `t` is for humans.

use serde::{Deserialize, Serialize, de::DeserializeOwned};

use super::store::Gens;

/// Envelope format version; anything else under a key is a foreign entry, hence a miss.
const VERSION: u32 = 1;

#[derive(Serialize)]
struct EnvelopeRef<'a, V> {
    v: u32,
    t: u64,
    g: &'a [u64],
    d: &'a V,
}

#[derive(Deserialize)]
pub(crate) struct Envelope<V> {
    v: u32,
    pub(crate) g: Gens,
    pub(crate) d: V,
}

/// Encodes a value with the marker generations observed when its load started.
pub(crate) fn encode<V: Serialize>(
    value: &V,
    gens: &[u64],
    started_ms: u64,
) -> Result<Vec<u8>, serde_json::Error> {
    serde_json::to_vec(&EnvelopeRef {
        v: VERSION,
        t: started_ms,
        g: gens,
        d: value,
    })
}

/// Decodes an entry; `None` for anything corrupt, truncated, foreign or of another type.
pub(crate) fn decode<V: DeserializeOwned>(bytes: &[u8]) -> Option<Envelope<V>> {
    serde_json::from_slice::<Envelope<V>>(bytes)
        .ok()
        .filter(|e| e.v == VERSION)
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
        let bytes = encode(&vec!["a".to_owned()], &[1, 2], 5).unwrap();
        assert!(bytes.starts_with(ENTRY_MAGIC.as_bytes()));
        let e = decode::<Vec<String>>(&bytes).unwrap();
        assert_eq!((&e.g[..], e.d), (&[1, 2][..], vec!["a".to_owned()]));
    }

    #[test]
    fn corrupt_truncated_foreign_are_none() {
        let good = encode(&42u32, &[0], 0).unwrap();
        assert!(decode::<u32>(&good[..good.len() - 1]).is_none());
        assert!(decode::<u32>(b"\xff\x00garbage").is_none());
        assert!(decode::<u32>(br#"{"v":2,"t":0,"g":[],"d":1}"#).is_none());
        assert!(decode::<String>(&good).is_none());
        assert!(decode::<u32>(b"42").is_none());
    }
}
