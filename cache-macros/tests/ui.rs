//! Compile-time behaviour: diagnostics (`ui/fail`, snapshots reviewed by hand; regenerate with
//! `TRYBUILD=overwrite cargo test -p cache-macros --test ui`) and expansions that must compile
//! cleanly in hostile surroundings (`ui/pass`). The snapshots depend on the rustc version.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/fail/*.rs");
    t.pass("tests/ui/pass/*.rs");
}
