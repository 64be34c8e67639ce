//! Invalidation markers: which markers an entry depends on (the one derivation every store
//! uses), their names in Redis, and the in-process table of their generations.
//!
//! A marker holds a generation. An entry records the generations of its markers as read before
//! its load started, and is served only while they are unchanged. Generations never repeat
//! (REVIEW R1): in Redis they come from the server's clock (`TIME`, microseconds, and one more
//! than the current value when that is larger); in process from one sequence. A marker that is
//! absent reads as 0, a value no entry records: an entry is only ever stored against markers
//! that exist (see `store::redis`), so a marker that expired, was evicted or vanished with a
//! restart reads as "changed", never as "unchanged".

use std::collections::HashMap;
use std::time::{Duration, Instant};

use foldhash::fast::RandomState;

#[cfg(feature = "redis")]
use super::key::MARKER_NS;
use super::key::Pattern;
use super::store::Gens;
use crate::sync::{read, write};

/// One marker of an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Marker<'k> {
    /// The epoch (`*`): every entry depends on it.
    All,
    /// A proper prefix of the key (`users` for `users:42`), bumped by `users:*`.
    Prefix(&'k str),
    /// The key itself, bumped by invalidating it exactly.
    Exact(&'k str),
}

/// The markers an entry under `key` depends on, in a fixed order: the epoch, one per proper
/// segment prefix, and the key's own.
pub(crate) fn of_key(key: &str) -> impl Iterator<Item = Marker<'_>> + Clone {
    std::iter::once(Marker::All)
        .chain(
            key.match_indices(':')
                .map(|(i, _)| Marker::Prefix(&key[..i])),
        )
        .chain(std::iter::once(Marker::Exact(key)))
}

/// How many markers [`of_key`] yields, without walking it.
pub(crate) fn count(key: &str) -> usize {
    2 + key.bytes().filter(|&b| b == b':').count()
}

/// Where exact markers' names start: [`MARKER_NS`] and the opening of their hash tag.
#[cfg(feature = "redis")]
const EXACT_NS: &str = "__inv:{";

#[cfg(feature = "redis")]
impl Marker<'_> {
    /// The marker's key in Redis, in parts: `<prefix>__inv:*`, `<prefix>__inv:users:*`, and
    /// `<prefix>__inv:{<prefix>users:42}` for the exact key: its hash tag is the entry's key
    /// (which has no braces), so on a Redis Cluster the exact marker lives in its entry's slot:
    /// a read touches one slot less, and an exact invalidation deletes the entry in the same
    /// script call.
    pub(crate) fn name_parts<'a>(&'a self, prefix: &'a str) -> [&'a str; 5] {
        match self {
            Self::All => [prefix, MARKER_NS, "*", "", ""],
            Self::Prefix(p) => [prefix, MARKER_NS, p, ":*", ""],
            Self::Exact(k) => [prefix, EXACT_NS, prefix, k, "}"],
        }
    }

    pub(crate) fn name(&self, prefix: &str) -> String {
        self.name_parts(prefix).concat()
    }

    /// The marker's name in the messages its bumps publish (see `cache::l1`): `*`, `p` and
    /// the prefix, `e` and the key. Without the cache prefix: the channel is the cache's own.
    pub(crate) fn wire_name(&self) -> String {
        match self {
            Self::All => "*".to_owned(),
            Self::Prefix(p) => format!("p{p}"),
            Self::Exact(k) => format!("e{k}"),
        }
    }
}

/// The in-process markers: bounded, with constant-time bumps and lookups (REVIEW R3).
///
/// Markers live in two generations, `young` and `old`. A bump writes to `young`; every
/// `period` (longer than any entry TTL) `young` becomes `old` and the former `old` is
/// dropped, so a marker is forgotten only after a full period without a bump. An entry that
/// depends on a forgotten marker recorded it either as its current value (it now reads 0,
/// "changed") or as absent, in which case the entry was loaded before that marker's last bump
/// and has expired by then: entries live less than a period, and the store refuses to store an
/// entry whose markers changed during its load, or whose load took a period or more. When
/// `young` fills up before the period is over, markers younger than a period would be dropped:
/// the epoch is bumped then, which invalidates every entry at once (rare, and always safe).
pub(crate) struct MarkerTable {
    tables: std::sync::RwLock<Tables>,
    period: Duration,
    capacity: usize,
}

struct Tables {
    /// The last generation handed out.
    seq: u64,
    epoch: u64,
    young: Generation,
    old: Generation,
    rotated_at: Instant,
}

#[derive(Default)]
struct Generation {
    /// `users` for `users:*`.
    prefixes: HashMap<Box<str>, u64, RandomState>,
    exact: HashMap<Box<str>, u64, RandomState>,
}

impl Generation {
    fn len(&self) -> usize {
        self.prefixes.len() + self.exact.len()
    }

    fn is_empty(&self) -> bool {
        self.prefixes.is_empty() && self.exact.is_empty()
    }

    fn get(&self, marker: Marker<'_>) -> Option<u64> {
        match marker {
            Marker::All => None,
            Marker::Prefix(p) => self.prefixes.get(p).copied(),
            Marker::Exact(k) => self.exact.get(k).copied(),
        }
    }
}

impl std::fmt::Debug for MarkerTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let t = read(&self.tables);
        f.debug_struct("MarkerTable")
            .field("young", &t.young.len())
            .field("old", &t.old.len())
            .finish_non_exhaustive()
    }
}

impl MarkerTable {
    /// A table whose markers survive at least `period` after their last bump, holding at most
    /// about `2 × capacity` of them.
    pub(crate) fn new(period: Duration, capacity: usize) -> Self {
        Self {
            tables: std::sync::RwLock::new(Tables {
                seq: 0,
                epoch: 0,
                young: Generation::default(),
                old: Generation::default(),
                rotated_at: Instant::now(),
            }),
            period,
            capacity: capacity.max(1),
        }
    }

    /// Appends the generations of `key`'s markers ([`of_key`] order) to `gens`, 0 for absent
    /// ones.
    pub(crate) fn read(&self, key: &str, gens: &mut Gens) {
        let t = read(&self.tables);
        if t.young.is_empty() && t.old.is_empty() {
            // Nothing was bumped (or all of it was forgotten): no lookups to make, and no
            // iterator to walk (counting is several times cheaper on this hot path).
            gens.push(t.epoch);
            gens.extend(std::iter::repeat_n(0, count(key) - 1));
            return;
        }
        gens.extend(of_key(key).map(|m| match m {
            Marker::All => t.epoch,
            m => t.young.get(m).or_else(|| t.old.get(m)).unwrap_or(0),
        }));
    }

    /// Whether the markers of `key` still hold `gens`.
    pub(crate) fn unchanged(&self, key: &str, gens: &[u64]) -> bool {
        let mut now = Gens::new();
        self.read(key, &mut now);
        *now == *gens
    }

    /// Gives each pattern's marker a new generation.
    pub(crate) fn bump(&self, patterns: &[Pattern]) {
        let mut guard = write(&self.tables);
        let dropped = self.rotate(&mut guard);
        let t = &mut *guard;
        for pattern in patterns {
            t.seq += 1;
            let generation = t.seq;
            let (young, old) = (&mut t.young, &mut t.old);
            match pattern.marker() {
                Marker::All => t.epoch = generation,
                Marker::Prefix(p) => {
                    old.prefixes.remove(p);
                    young.prefixes.insert(p.into(), generation);
                }
                Marker::Exact(k) => {
                    old.exact.remove(k);
                    young.exact.insert(k.into(), generation);
                }
            }
        }
        drop(guard);
        // Freed outside the lock: readers do not wait for a large generation to be deallocated.
        drop(dropped);
    }

    /// Rotates when the period is over or `young` is full; returns the dropped generation.
    fn rotate(&self, t: &mut Tables) -> Option<Generation> {
        let full = t.young.len() >= self.capacity;
        if !full && t.rotated_at.elapsed() < self.period {
            return None;
        }
        if full && !t.old.is_empty() {
            // `old` may hold markers bumped less than a period ago: forgetting them could make
            // an entry that recorded one as absent look current again.
            t.seq += 1;
            t.epoch = t.seq;
            tracing::warn!(
                markers = t.young.len() + t.old.len(),
                "in-process invalidation markers full; invalidated every in-process entry"
            );
        }
        t.rotated_at = Instant::now();
        let young = std::mem::take(&mut t.young);
        Some(std::mem::replace(&mut t.old, young))
    }

    /// How many markers are held (for tests and diagnostics).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        let t = read(&self.tables);
        t.young.len() + t.old.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gens(table: &MarkerTable, key: &str) -> Vec<u64> {
        let mut g = Gens::new();
        table.read(key, &mut g);
        assert_eq!(g.len(), of_key(key).count(), "one generation per marker");
        g.to_vec()
    }

    #[cfg(feature = "redis")]
    #[test]
    fn derivation_and_names() {
        let markers: Vec<String> = of_key("users:42:tasks").map(|m| m.name("p:")).collect();
        assert_eq!(
            markers,
            [
                "p:__inv:*",
                "p:__inv:users:*",
                "p:__inv:users:42:*",
                "p:__inv:{p:users:42:tasks}"
            ]
        );
        for key in ["users", "users:42", "a:b:c:d"] {
            assert_eq!(of_key(key).count(), count(key));
        }
    }

    #[test]
    fn generations_never_repeat() {
        let table = MarkerTable::new(Duration::from_secs(3600), 1000);
        let pattern = Pattern::parse("users:*").unwrap();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..100 {
            table.bump(std::slice::from_ref(&pattern));
            assert!(seen.insert(gens(&table, "users:1")[1]));
        }
        table.bump(&[Pattern::All]);
        assert!(seen.insert(gens(&table, "users:1")[0]));
    }

    /// R3: the table stays bounded and a bump does constant work whatever was bumped before;
    /// overflowing it invalidates everything rather than forgetting a young marker.
    #[test]
    fn r3_bounded_and_overflow_bumps_the_epoch() {
        let table = MarkerTable::new(Duration::from_secs(3600), 100);
        table.bump(&[Pattern::parse("users:0").unwrap()]);
        let before = gens(&table, "tasks:1");
        for i in 0..1_000 {
            table.bump(&[Pattern::parse(&format!("users:{i}")).unwrap()]);
            assert!(table.len() <= 200, "{}", table.len());
        }
        assert_ne!(
            gens(&table, "tasks:1")[0],
            before[0],
            "forgetting young markers bumped the epoch"
        );
    }

    #[test]
    fn markers_survive_a_period_then_go() {
        let table = MarkerTable::new(Duration::from_millis(50), 1000);
        table.bump(&[Pattern::parse("users:1").unwrap()]);
        let bumped = gens(&table, "users:1");
        std::thread::sleep(Duration::from_millis(60));
        table.bump(&[Pattern::parse("other").unwrap()]); // rotates: users:1 is old now
        assert_eq!(gens(&table, "users:1"), bumped);
        std::thread::sleep(Duration::from_millis(60));
        table.bump(&[Pattern::parse("other").unwrap()]); // rotates again: users:1 is dropped
        assert_eq!(gens(&table, "users:1")[2], 0);
        assert_eq!(gens(&table, "users:1")[0], bumped[0], "no epoch bump");
        // R1 in process: bumped again, it does not come back to the generation it had.
        table.bump(&[Pattern::parse("users:1").unwrap()]);
        assert_ne!(gens(&table, "users:1")[2], bumped[2]);
    }
}
