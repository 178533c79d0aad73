//! One subcommand, one file, one struct with an `execute()`.

mod completions;
mod list;
mod run;
mod schema;
mod show;
mod validate;

use std::sync::Arc;

use rota_core::{ActionCatalog, ActionRunner, MemoryStore, NoPlugins, SecretStore};

use crate::cli::{Cli, Command};

/// What commands share: the action catalog/runner and the secret store.
pub struct Env {
    pub catalog: Arc<dyn ActionCatalog>,
    pub runner: Arc<dyn ActionRunner>,
    pub store: Arc<dyn SecretStore>,
}

impl Env {
    pub fn load() -> anyhow::Result<Self> {
        Ok(Self {
            catalog: Arc::new(NoPlugins),
            runner: Arc::new(NoPlugins),
            store: Arc::new(MemoryStore::new()),
        })
    }
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
    }
}
