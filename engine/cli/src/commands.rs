//! One subcommand, one file, one struct with an `execute()`.

mod audit;
mod completions;
mod inventory;
mod list;
mod matrix;
mod plugins;
mod run;
mod runs;
mod schema;
mod secrets;
mod show;
#[cfg(feature = "rehearsal")]
mod sims;
mod state;
mod validate;

use std::sync::Arc;

use rota_core::{ActionCatalog, ActionRunner};
use rota_host::{HostOptions, PluginHost};
use rota_state::State;

use crate::cli::{Cli, Command};
use crate::exit;

/// Options every command sees.
#[derive(Clone, Debug, Default)]
pub struct Globals {
    pub config: Option<std::path::PathBuf>,
    pub target: Option<String>,
    /// `--rehearsal`: the rehearsal state instead of the real one.
    pub rehearsal: bool,
}

static GLOBALS: std::sync::OnceLock<Globals> = std::sync::OnceLock::new();

/// The global options of this invocation.
pub fn globals() -> Globals {
    GLOBALS.get().cloned().unwrap_or_default()
}

/// What commands share: the operator config and the plugin host (the action
/// catalog and runner). The state is opened only by commands that need it
/// ([`open_state`]), so `validate`, `list` and `show` never touch it; they
/// read plugin manifests and never run plugin code.
pub struct Env {
    pub host: Arc<PluginHost>,
    pub catalog: Arc<dyn ActionCatalog>,
    pub runner: Arc<dyn ActionRunner>,
}

impl Env {
    pub fn load() -> anyhow::Result<Self> {
        Self::load_with(|c| c)
    }

    /// [`Env::load`] with the operator config adjusted first (a rehearsal
    /// replaces every grant; `--guided` turns modeled actions off).
    pub fn load_with(adjust: impl FnOnce(rota_host::Config) -> rota_host::Config) -> anyhow::Result<Self> {
        let globals = globals();
        let config = adjust(load_config(globals.config.as_deref())?);
        crate::discover::add_config_dirs(&config.playbooks);
        let state_dir = rota_state::StateConfig::from_env()
            .map(|c| c.dir)
            .map_err(|e| exit::environment(format!("error: {e}")))?;
        let mut opts = HostOptions::new(state_dir);
        opts.target = globals.target.clone();
        opts.bundled = true;
        let host = Arc::new(
            PluginHost::new(&config, opts)
                .map_err(|e| exit::environment(format!("error: cannot start the plugin host: {e}")))?,
        );
        Ok(Self {
            catalog: host.clone(),
            runner: host.clone(),
            host,
        })
    }
}

impl Env {
    /// The plugins a playbook's steps use (not `core`).
    pub fn plugins_used(loaded: &rota_core::load::Loaded) -> std::collections::BTreeSet<String> {
        rota_core::validate::sections(&loaded.playbook)
            .into_iter()
            .flat_map(|(_, steps)| steps.iter())
            .filter_map(|s| s.uses.as_deref()?.split_once('.').map(|(p, _)| p.to_owned()))
            .filter(|p| p != "core")
            .collect()
    }

    /// Starts loading (cached artifact, or compile) and linking every plugin
    /// the playbook uses, all at once in the background: by the first call
    /// they are ready, loaded in parallel and beside the run's own start
    /// (opening the state, journaling the start, resolving inputs). A load
    /// that fails here fails again, with its message, at the first call.
    pub fn start_plugins(&self, loaded: &rota_core::load::Loaded, runtime: &tokio::runtime::Runtime) {
        let host = self.host.clone();
        let names = Self::plugins_used(loaded);
        runtime.spawn(async move {
            if let Err(e) = host.preload_all(names.iter().map(String::as_str)).await {
                tracing::debug!(error = %e, "preloading the run's plugins failed");
            }
        });
    }

    /// The digest of every plugin the playbook's steps use, as journaled
    /// with a run: a resume refuses (unless forced) when one changed.
    pub fn plugin_digests(
        &self,
        loaded: &rota_core::load::Loaded,
    ) -> std::collections::BTreeMap<String, String> {
        Self::plugins_used(loaded)
            .into_iter()
            .filter_map(|p| {
                let digest = self.host.plugin(&p)?.digest().ok()?.to_owned();
                Some((p, digest))
            })
            .collect()
    }
}

/// The operator's config: user config (XDG, `$ROTA_CONFIG` or `--config`)
/// may grant capabilities; a `rota.yaml` in the working directory may only
/// add playbook paths and base URLs.
fn load_config(cli: Option<&std::path::Path>) -> anyhow::Result<rota_host::Config> {
    let bad = |e: rota_host::config::ConfigError| -> anyhow::Error { exit::usage(format!("error: {e}")) };
    let sources = rota_host::user_sources(cli).map_err(bad)?;
    let cwd_file = std::path::Path::new("rota.yaml");
    let cwd = if cwd_file.is_file() {
        Some(rota_host::Source::read(cwd_file).map_err(bad)?)
    } else {
        None
    };
    let config = rota_host::load_config(&sources, cwd.as_ref()).map_err(bad)?;
    for w in &config.warnings {
        eprintln!("warning: {w}");
    }
    Ok(config)
}

/// The embedded state under `ROTA_STATE_DIR` (default: the XDG data dir),
/// or its `rehearsal/` part with `--rehearsal`.
pub fn open_state() -> anyhow::Result<Arc<State>> {
    open_state_for(globals().rehearsal)
}

/// The real state, or the rehearsal's (`<state dir>/rehearsal`, its own
/// database and identity: simulated keys never mix with real ones).
pub fn open_state_for(rehearsal: bool) -> anyhow::Result<Arc<State>> {
    let env_error = |e: rota_state::StateError| -> anyhow::Error {
        exit::environment(format!("error: cannot open rota's state: {e}"))
    };
    if !rehearsal {
        return State::open_default().map_err(env_error);
    }
    let real = rota_state::StateConfig::from_env().map_err(env_error)?;
    let mut config = rota_state::StateConfig::in_dir(real.dir.join("rehearsal"));
    config.operator = real.operator;
    State::open_with(config).map_err(env_error)
}

/// A state error as an exit-4 error with context.
pub fn state_error(what: &str, e: rota_state::StateError) -> anyhow::Error {
    exit::environment(format!("error: {what}: {e}"))
}

pub fn execute(cli: Cli) -> anyhow::Result<i32> {
    let _ = GLOBALS.set(Globals {
        config: cli.config.clone(),
        target: cli.target.clone(),
        rehearsal: cli.rehearsal,
    });
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
        #[cfg(feature = "rehearsal")]
        Command::Sims(cmd) => sims::Sims { cmd }.execute(),
        #[cfg(not(feature = "rehearsal"))]
        Command::Sims(_) => Err(exit::usage(
            "error: this rota was built without the vendor simulators (feature `rehearsal`)",
        )),
        Command::Plugins(cmd) => plugins::Plugins { cmd }.execute(),
    }
}
