//! tracing to stderr: `-v` (info), `-vv` (debug), `-vvv` (trace), or RUST_LOG.
//!
//! Design decision: logs never go to stdout, which carries the command's
//! output (and JSON lines with `--output json`). `-v` raises rota's own
//! crates only; dependencies (wasmtime and cranelift log enormously at trace)
//! stay at warn unless RUST_LOG asks for them.

use tracing_subscriber::EnvFilter;

pub fn init(verbose: u8) {
    let level = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let ours = ["rota", "rota_core", "rota_host", "rota_state", "rota_sims"]
        .map(|c| format!("{c}={level}"))
        .join(",");
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(format!("warn,{ours}")));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}
