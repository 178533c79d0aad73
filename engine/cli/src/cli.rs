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

    /// Operator config (plugin dirs, targets, grants); default: $ROTA_CONFIG, then the XDG config dir.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Which configured target of each plugin to use.
    #[arg(long, global = true, value_name = "NAME")]
    pub target: Option<String>,

    /// Use the rehearsal state (`<state dir>/rehearsal`: what `run --rehearse` recorded).
    #[arg(long, global = true)]
    pub rehearsal: bool,

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
    /// The encrypted secret store.
    #[command(subcommand)]
    Secrets(SecretsCmd),
    /// The run journal: list, show, resume or abort runs.
    #[command(subcommand)]
    Runs(RunsCmd),
    /// The tamper-evident audit log.
    #[command(subcommand)]
    Audit(AuditCmd),
    /// Credentials rota created or saw, and when they expire.
    Inventory(InventoryArgs),
    /// The state database: backups and integrity checks.
    #[command(subcommand)]
    State(StateCmd),
    /// The vendor simulators used for rehearsal.
    #[command(subcommand)]
    Sims(SimsCmd),
    /// Installed plugins: actions, schemas, documented or modeled, capabilities.
    #[command(subcommand)]
    Plugins(PluginsCmd),
}

#[derive(Debug, Subcommand)]
pub enum PluginsCmd {
    /// Every plugin found in the configured plugin directories.
    List(OutputArgs),
    /// One plugin: actions with schemas, declared vs granted capabilities, ABI, digest.
    Inspect {
        name: String,
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
}

#[derive(Debug, Subcommand)]
pub enum SecretsCmd {
    /// Secret names with their current, pending and previous versions.
    List(OutputArgs),
    /// The versions of one secret (never values).
    Versions {
        name: String,
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Store a new version from stdin or a no-echo prompt (never from argv); it becomes current.
    Put {
        name: String,
        /// Keep the new version pending instead of making it current.
        #[arg(long)]
        pending: bool,
    },
    /// Make a version current (default: the pending one).
    Promote {
        name: String,
        #[arg(long)]
        version: Option<u64>,
    },
    /// Remove a secret and all its versions.
    Rm {
        name: String,
        /// Do not ask.
        #[arg(long, short = 'y')]
        yes: bool,
    },
    /// Print a secret's value (audited). Needs --reveal.
    Get {
        name: String,
        #[arg(long)]
        version: Option<u64>,
        /// Yes, print the value.
        #[arg(long)]
        reveal: bool,
    },
    /// Write an age-encrypted export (decrypt with `age -d -i <identity>`).
    Export {
        /// A secret name, or all secrets when omitted.
        name: Option<String>,
        /// Also encrypt to this age recipient (repeatable).
        #[arg(long = "recipient", short = 'r')]
        recipients: Vec<String>,
        /// Where to write (default stdout).
        #[arg(long, short = 'o')]
        out: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum RunsCmd {
    /// Runs, newest first.
    List(OutputArgs),
    /// A run's timeline.
    Show {
        id: String,
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Continue an interrupted run without repeating what it finished.
    Resume {
        id: String,
        /// Resume even though the playbook or a plugin changed since.
        #[arg(long)]
        force: bool,
        /// Answer yes to every confirmation.
        #[arg(long, short = 'y')]
        yes: bool,
        /// Answers for manual steps.
        #[arg(long = "inputs", value_name = "FILE")]
        inputs_file: Option<PathBuf>,
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Give up an interrupted run: record it aborted and release its locks.
    Abort { id: String },
}

#[derive(Debug, Subcommand)]
pub enum AuditCmd {
    /// Check the HMAC chain of the audit log.
    Verify,
    /// Every entry as JSON lines.
    Export {
        #[arg(long, short = 'o')]
        out: Option<PathBuf>,
    },
}

#[derive(Debug, Args)]
pub struct InventoryArgs {
    /// Only credentials that expire within this long (e.g. 30d).
    #[arg(long)]
    pub due: Option<String>,
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

#[derive(Debug, Subcommand)]
pub enum StateCmd {
    /// A consistent online copy of the database (back up the identity too: see docs/security.md).
    Backup { file: PathBuf },
    /// Decrypt-check every secret version and the audit chain.
    Check,
}

#[derive(Debug, Subcommand)]
pub enum SimsCmd {
    /// Start every simulator on loopback and print their origins; runs until Ctrl-C.
    Serve {
        /// Fixture and fault seed.
        #[arg(long)]
        seed: Option<u64>,
        /// Simulator settings, YAML or JSON: seed, faults per system, time_scale,
        /// background_interval_ms, soar_lockout_threshold, ...
        #[arg(long, value_name = "FILE")]
        settings: Option<PathBuf>,
    },
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
    /// Fail at once if another run holds one of this run's credential locks.
    #[arg(long)]
    pub no_wait: bool,
    /// Rehearse: run against the bundled vendor simulators on loopback, with
    /// the profile beside the playbook (`<name>.rehearse.yaml`); nothing real is touched.
    #[arg(long)]
    pub rehearse: bool,
    /// The rehearsal profile to use instead of the one beside the playbook.
    #[arg(long, value_name = "FILE", requires = "rehearse")]
    pub profile: Option<PathBuf>,
    /// Take the guided (manual) path of every step whose action is modeled,
    /// as against a tenant where modeled actions are not enabled.
    #[arg(long)]
    pub guided: bool,
    /// Run the playbook once per entry of FILE (a YAML list of input maps,
    /// each shaped like an --inputs file), as independent runs in one process;
    /// -i and --inputs give every entry its defaults. Non-interactive.
    #[arg(long, value_name = "FILE", conflicts_with = "rehearse")]
    pub matrix: Option<PathBuf>,
    /// With --matrix: how many runs at once.
    #[arg(long, value_name = "N", default_value_t = 8, requires = "matrix")]
    pub concurrency: usize,
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
