//! One subcommand, one file, one struct with an `execute()`.

mod audit;
mod completions;
mod inventory;
mod list;
mod run;
mod runs;
mod schema;
mod secrets;
mod show;
mod sims;
mod state;
mod validate;

use std::sync::Arc;

use rota_core::{ActionCatalog, ActionRunner, NoPlugins};
use rota_state::State;

use crate::cli::{Cli, Command};
use crate::exit::{self, Exit};

/// What commands share: the action catalog and runner. The state is opened
/// only by commands that need it ([`open_state`]), so `validate`, `list` and
/// `show` never touch it.
pub struct Env {
    pub catalog: Arc<dyn ActionCatalog>,
    pub runner: Arc<dyn ActionRunner>,
}

impl Env {
    pub fn load() -> anyhow::Result<Self> {
        Ok(Self {
            catalog: Arc::new(NoPlugins),
            runner: Arc::new(NoPlugins),
        })
    }
}

/// The embedded state under `ROTA_STATE_DIR` (default: the XDG data dir).
pub fn open_state() -> anyhow::Result<Arc<State>> {
    State::open_default().map_err(|e| {
        Exit {
            code: exit::ENVIRONMENT,
            message: format!("error: cannot open rota's state: {e}"),
        }
        .into()
    })
}

/// A state error as an exit-4 error with context.
pub fn state_error(what: &str, e: rota_state::StateError) -> anyhow::Error {
    Exit {
        code: exit::ENVIRONMENT,
        message: format!("error: {what}: {e}"),
    }
    .into()
}

pub fn execute(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::Run(args) => run::Run { args, plan: false }.execute(),
        Command::Plan(args) => run::Run { args, plan: true }.execute(),
        Command::List(args) => list::List { args }.execute(),
        Command::Validate(args) => validate::Validate { args }.execute(),
        Command::Show(args) => show::Show { args }.execute(),
        Command::Schema => schema::Schema.execute(),
        Command::Completions(args) => completions::Completions { args }.execute(),
        Command::Secrets(cmd) => secrets::Secrets { cmd }.execute(),
        Command::Runs(cmd) => runs::Runs { cmd }.execute(),
        Command::Audit(cmd) => audit::Audit { cmd }.execute(),
        Command::Inventory(args) => inventory::Inventory { args }.execute(),
        Command::State(cmd) => state::StateCmd { cmd }.execute(),
        Command::Sims(cmd) => sims::Sims { cmd }.execute(),
    }
}
