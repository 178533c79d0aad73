//! The `rota` binary: clap parses, one call runs, the error chain is printed
//! once, and the exit code comes from the error.

mod cli;
mod commands;
mod console;
mod discover;
mod exit;
mod journal;
mod logging;
#[cfg(feature = "rehearsal")]
mod rehearse;

use clap::Parser;

/// `rota ... | head` should end quietly when the reader goes away, as other
/// Unix tools do, not panic on the first write to a closed pipe.
#[cfg(unix)]
#[allow(
    unsafe_code,
    reason = "restoring the default SIGPIPE action is one libc call with no Rust-side state"
)]
fn default_sigpipe() {
    // SAFETY: signal(2) with SIG_DFL installs no handler code; nothing else
    // in the process has changed SIGPIPE yet.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

#[cfg(not(unix))]
fn default_sigpipe() {}

fn main() {
    default_sigpipe();
    let cli = cli::Cli::parse();
    logging::init(cli.verbose);
    let code = match commands::execute(cli) {
        Ok(code) => code,
        Err(e) => {
            let code = exit::code_of(&e);
            eprintln!("{}", exit::render(&e));
            code
        }
    };
    std::process::exit(code);
}
