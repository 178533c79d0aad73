//! End-to-end tests: the real `rota` binary in a temp dir, asserting exact
//! stdout, stderr and exit codes. One test binary, a module per area.

mod cases;
mod cli;
mod constellix;
mod interactive;
mod leaks;
mod matrix;
mod plex;
mod plugins;
mod plytix;
mod pty;
#[cfg(feature = "crash-points")]
mod reconcile;
mod rehearsal;
mod sims;
mod soar;
mod state;
mod test;
