//! Regression tests, one file per finding of the review of commit e97cf81 (`REVIEW.md`, R1-R26
//! for the runtime; the example API's E1-E9 are in `example-crud-api/tests/regression.rs`, the
//! macros' R5-R7 and R16 in `cache-macros/tests`). Each test fails on the code the finding was
//! made against.

#[path = "../support/mod.rs"]
mod support;

mod r01_generations;
mod r02_tls_and_auth;
mod r04_replay_race;
mod r08_fallback_outages;
mod r10_shutdown;
mod r11_r12_recovery;
mod r14_r15_sweep_and_flights;
mod r17_to_r22;
