//! End-to-end tests: the real `rota` binary in a temp dir, asserting exact
//! stdout, stderr and exit codes. One test binary, a module per area.

mod cases;
mod cli;
mod interactive;
mod leaks;
mod plugins;
#[cfg(feature = "crash-points")]
mod reconcile;
mod state;
mod test;
