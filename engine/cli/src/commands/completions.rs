//! `rota completions <shell>`.

use clap::CommandFactory;

use crate::cli::{Cli, CompletionsArgs};
use crate::exit;

pub struct Completions {
    pub args: CompletionsArgs,
}

impl Completions {
    pub fn execute(self) -> anyhow::Result<i32> {
        let mut cmd = Cli::command();
        clap_complete::generate(self.args.shell, &mut cmd, "rota", &mut std::io::stdout());
        Ok(exit::OK)
    }
}
