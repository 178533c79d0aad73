//! `cargo xtask`: the single entry point for building plugins, tests and benches.
fn main() {}
