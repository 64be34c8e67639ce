//! Key injection: distinct argument values give distinct keys, and no argument value can make
//! a pattern invalidation reach a key outside its prefix.

mod support;

use cache_runtime::KeyBuilder;
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
