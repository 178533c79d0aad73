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

fn main() {
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
