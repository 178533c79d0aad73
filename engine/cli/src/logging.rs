//! tracing to stderr: `-v` (info), `-vv` (debug), `-vvv` (trace), or RUST_LOG.
//!
//! Design decision: logs never go to stdout, which carries the command's
//! output (and JSON lines with `--output json`).

use tracing_subscriber::EnvFilter;

pub fn init(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}
