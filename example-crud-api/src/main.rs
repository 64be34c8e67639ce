//! Run with: `cargo run -p example-crud-api` (placeholder until the example issue lands).
fn main() {}
