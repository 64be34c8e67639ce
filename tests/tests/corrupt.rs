//! Corrupt, truncated and foreign entries are misses, counted, and overwritten by the next fill.

mod support;

use integration_tests::{Kind, Topology};
use support::{Loader, User, user};

async fn corrupt_and_foreign_entries_are_misses(kind: Kind) {
    let redis = Topology::start(kind);
    let cache = support::redis_only(&redis).await;
    let good = serde_json::to_string(&user(1, "x")).unwrap();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("random bytes", vec![0xff, 0x00, 0x13, 0x37, 0xfe]),
        ("empty", Vec::new()),
        ("plain JSON, no envelope", good.clone().into_bytes()),
        (
            "truncated envelope",
            format!(r#"{{"v":1,"t":0,"g":[0,0,0],"d":{good}"#).into_bytes(),
        ),
        (
            "another type's JSON",
            br#"{"v":1,"t":0,"g":[0,0,0],"d":"a string"}"#.to_vec(),
        ),
        (
            "future version",
            format!(r#"{{"v":2,"t":0,"g":[0,0,0],"d":{good}}}"#).into_bytes(),
        ),
        ("a redis hash", Vec::new()),
    ];
    for (i, (what, bytes)) in cases.into_iter().enumerate() {
        let key = format!("users:{i}");
        if what == "a redis hash" {
            let () = redis.query(&["HSET", &key, "f", "v"]);
        } else {
            redis.set_bytes(&key, &bytes);
        }
        let before = cache.stats();
        let loader = Loader::default();
        let got = cache
            .get_or_load(&key, None, loader.load(user(i as i32, "fresh")))
            .await;
        assert_eq!(got.unwrap(), user(i as i32, "fresh"), "{what}");
        assert_eq!(loader.runs(), 1, "{what}: a miss");
        let after = cache.stats();
        assert_eq!(after.totals.misses, before.totals.misses + 1, "{what}");
        if what != "a redis hash" {
            assert_eq!(
                after.totals.decode_failures,
                before.totals.decode_failures + 1,
                "{what}"
            );
        }
        // The next fill overwrote the entry.
        assert_eq!(
            cache.get::<User>(&key).await,
            Some(user(i as i32, "fresh")),
            "{what}"
        );
    }
}

integration_tests::on_every_topology!(
    with_l1:
    corrupt_and_foreign_entries_are_misses,);
