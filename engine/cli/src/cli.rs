//! The command line, as clap types.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::exit;

#[derive(Debug, Parser)]
#[command(
    name = "rota",
    version,
    about = "Runs documented credential procedures as declarative playbooks with sandboxed plugins",
    after_help = exit::HELP
)]
pub struct Cli {
    /// More logging on stderr (-v info, -vv debug, -vvv trace); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a playbook.
    Run(RunArgs),
    /// Show what a run would do, executing nothing that changes anything (= run --dry-run).
    Plan(RunArgs),
    /// List the playbooks on the search path.
    List(OutputArgs),
    /// Check playbooks without running anything.
    Validate(ValidateArgs),
    /// Describe a playbook: inputs, secrets, steps.
    Show(ShowArgs),
    /// Print the JSON Schema of the playbook format.
    Schema,
    /// Print shell completions.
    Completions(CompletionsArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Output {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct OutputArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// A playbook name (searched in ./playbooks and $ROTA_PLAYBOOK_PATH) or a path.
    pub playbook: String,
    /// An input value, key=value (repeatable). Secret inputs take a secret NAME.
    #[arg(short = 'i', long = "input", value_name = "KEY=VALUE")]
    pub inputs: Vec<String>,
    /// A YAML file of input values (and `manual:` answers for manual steps).
    #[arg(long = "inputs", value_name = "FILE")]
    pub inputs_file: Option<PathBuf>,
    /// Answer yes to every confirmation.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Show what would happen without changing anything.
    #[arg(long)]
    pub dry_run: bool,
    /// Output format: text (progress per step) or json (one event per line).
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
    /// Fix the run id (for scripts and tests).
    #[arg(long, hide = true)]
    pub run_id: Option<String>,
    /// Seed retry jitter (for tests).
    #[arg(long, hide = true)]
    pub seed: Option<u64>,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Playbook files or directories (default: every playbook on the search path).
    pub paths: Vec<PathBuf>,
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// A playbook name or path.
    pub playbook: String,
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    pub shell: clap_complete::Shell,
}
