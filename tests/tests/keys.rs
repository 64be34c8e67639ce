//! Key injection: distinct argument values give distinct keys, and no argument value can make
//! a pattern invalidation reach a key outside its prefix, nor (on a cluster) choose the slot.

mod support;

use std::collections::BTreeSet;

use cache_runtime::KeyBuilder;
use integration_tests::{Kind, Topology};
use proptest::prelude::*;

fn render(template: &[Result<&str, &str>]) -> String {
    let mut b = KeyBuilder::new();
    for part in template {
        match part {
            Ok(lit) => b.literal(lit),
            Err(value) => b.value("arg", value),
        };
    }
    b.finish().unwrap()
}

fn user_key(id: &str) -> String {
    render(&[Ok("users:"), Err(id)])
}

fn tasks_key(id: &str) -> String {
    render(&[Ok("users:"), Err(id), Ok(":tasks")])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn distinct_values_give_distinct_keys(a in ".*", b in ".*") {
        prop_assume!(a != b);
        prop_assert_ne!(user_key(&a), user_key(&b));
        prop_assert_ne!(tasks_key(&a), tasks_key(&b));
    }

    #[test]
    fn values_never_add_segments_or_glob_characters(v in ".*") {
        let key = tasks_key(&v);
        prop_assert_eq!(key.split(':').count(), 3, "{}", key);
        prop_assert!(!key.contains(['*', '?', '[', ']', '\\', '{', '}', ' ', '\n']), "{}", key);
        prop_assert!(key.len() < 200);
    }

    #[test]
    fn hashed_arguments_distinguish_values(a in any::<(u64, String)>(), b in any::<(u64, String)>()) {
        prop_assume!(a != b);
        let hashed = |v: &(u64, String)| {
            let mut k = KeyBuilder::new();
            k.literal("users:filter").hash("filter", v);
            k.finish().unwrap()
        };
        prop_assert_ne!(hashed(&a), hashed(&b));
        prop_assert_eq!(hashed(&a), hashed(&a.clone()));
    }

    /// Invalidating `users:<a>:*` never reaches `users:<b>:tasks` (nor `users:<b>`) for b != a,
    /// whatever the values: checked through a real cache.
    #[test]
    fn pattern_invalidation_stays_inside_its_prefix(a in ".*", b in ".*") {
        prop_assume!(a != b);
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let cache = support::memory().await;
            let (victim, own) = (tasks_key(&b), user_key(&b));
            cache.set(&victim, &1, None).await;
            cache.set(&own, &2, None).await;
            let pattern = render(&[Ok("users:"), Err(&a), Ok(":*")]);
            cache.invalidate(&pattern).await.unwrap();
            cache.invalidate(&user_key(&a)).await.unwrap();
            assert_eq!(cache.get::<i32>(&victim).await, Some(1), "{pattern} reached {victim}");
            assert_eq!(cache.get::<i32>(&own).await, Some(2), "{} reached {own}", user_key(&a));
            // And it does reach its own.
            cache.set(&tasks_key(&a), &3, None).await;
            cache.invalidate(&pattern).await.unwrap();
            assert_eq!(cache.get::<i32>(&tasks_key(&a)).await, None);
        });
    }
}

/// Values a caller might pass that mean something to Redis: hash tags, globs, escapes.
const HOSTILE: [&str; 12] = [
    "{tag}", "}{", "{", "}", "a{b}c", "{users}", "*", "users:*", "\\", "[a-z]?", " \n", "é{ü}",
];

/// Through a real cache on one Redis and on a cluster: a hostile value stays inside its key
/// (no brace of it reaches Redis, so it forms no hash tag), its entry is served, and a pattern built from
/// one value invalidates its own keys and no other value's.
async fn hostile_values_stay_inside_their_keys(kind: Kind) {
    let redis = Topology::start(kind);
    let cache = support::redis_only(&redis).await;
    for (i, value) in HOSTILE.iter().enumerate() {
        cache.set(&user_key(value), &i, None).await;
        cache.set(&tasks_key(value), &i, None).await;
    }
    let stored: Vec<String> = redis.query(&["KEYS", "*"]);
    assert!(stored.len() >= 2 * HOSTILE.len(), "{stored:?}");
    for key in &stored {
        // The one hash tag is the runtime's own: an exact marker tagged with its entry's key.
        let tagged = key
            .strip_prefix("__inv:{")
            .and_then(|k| k.strip_suffix('}'));
        let value_part = tagged.unwrap_or(key);
        assert!(
            !value_part.contains(['{', '}']),
            "a brace from a value reached Redis: {key:?}"
        );
    }
    for (i, a) in HOSTILE.iter().enumerate() {
        assert_eq!(cache.get::<usize>(&user_key(a)).await, Some(i), "{a:?}");
        cache
            .invalidate(&render(&[Ok("users:"), Err(a), Ok(":*")]))
            .await
            .unwrap();
        assert_eq!(cache.get::<usize>(&tasks_key(a)).await, None, "{a:?}");
        assert_eq!(cache.get::<usize>(&user_key(a)).await, Some(i), "{a:?}");
        for (j, b) in HOSTILE.iter().enumerate().skip(i + 1) {
            assert_eq!(
                cache.get::<usize>(&tasks_key(b)).await,
                Some(j),
                "invalidating {a:?} reached {b:?}"
            );
        }
    }
}

/// On a cluster, one hash tag in many values does not pull their keys into one slot: they
/// spread over the masters as any keys do. The control shows the same strings used raw, as
/// keys, do land on one master.
#[tokio::test]
async fn a_hash_tag_in_values_does_not_choose_the_slot() {
    let Topology::Cluster(cluster) = Topology::start(Kind::Cluster) else {
        unreachable!()
    };
    let values: Vec<String> = (0..32).map(|i| format!("{{same}}{i}")).collect();
    let raw: BTreeSet<usize> = values
        .iter()
        .map(|v| cluster.master_of(&format!("users:{v}")))
        .collect();
    assert_eq!(raw.len(), 1, "control: a raw hash tag picks one slot");
    let ours: BTreeSet<usize> = values
        .iter()
        .map(|v| cluster.master_of(&user_key(v)))
        .collect();
    assert_eq!(ours.len(), 3, "keys spread over every master: {ours:?}");
}

integration_tests::on_every_topology!(
    with_l1:
    hostile_values_stay_inside_their_keys);
