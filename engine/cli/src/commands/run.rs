//! `rota run` and `rota plan`; the run loop shared with `rota runs resume`.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Context;
use rota_core::event::{Outcome, StepStatus};
use rota_core::executor::{Executor, RunOptions, StartError, new_run_id};
use rota_core::inputs::Supplied;
use rota_core::journal::{Journal, NoJournal};
use rota_core::load::Loaded;
use rota_core::template::system_clock;
use rota_core::yaml::{Source, parse_value};
use rota_state::{LockWait, State};
use serde_json::Value;

use crate::cli::{Output, RunArgs};
use crate::commands::{Env, open_state};
use crate::console::Console;
use crate::discover;
use crate::exit::{self, Exit};
use crate::journal::StateJournal;

pub struct Run {
    pub args: RunArgs,
    pub plan: bool,
}

impl Run {
    pub fn execute(self) -> anyhow::Result<i32> {
        if self.args.rehearse {
            return self.rehearse();
        }
        let guided = self.args.guided;
        let env = Env::load_with(|c| if guided { guide(c) } else { c })?;
        let loaded = discover::find(&self.args.playbook, env.catalog.as_ref())?;
        let supplied = supplied(&self.args.inputs, self.args.inputs_file.as_deref())?;
        let runtime = runtime()?;
        env.start_plugins(&loaded, &runtime);
        let state = open_state()?;
        if let Some(file) = &self.args.matrix {
            let entries = crate::commands::matrix::entries(file, &supplied)?;
            let options = self.options(Supplied::default());
            return crate::commands::matrix::execute(
                &env,
                &state,
                &loaded,
                options,
                entries,
                self.args.concurrency,
                self.args.output,
                &runtime,
            );
        }
        let options = self.options(supplied);
        execute(
            &env,
            &state,
            &loaded,
            options,
            self.args.output,
            self.wait(),
            Mode::Fresh,
            &runtime,
        )
    }

    fn options(&self, supplied: Supplied) -> RunOptions {
        RunOptions {
            supplied,
            yes: self.args.yes,
            dry_run: self.plan || self.args.dry_run,
            run_id: Some(self.args.run_id.clone().unwrap_or_else(new_run_id)),
            seed: self.args.seed,
            resume: None,
            abort: false,
            in_flight: BTreeMap::new(),
            stand_in: None,
        }
    }

    fn wait(&self) -> LockWait {
        if self.args.no_wait {
            LockWait::NoWait
        } else {
            LockWait::Wait { timeout: None }
        }
    }

    #[cfg(not(feature = "rehearsal"))]
    fn rehearse(self) -> anyhow::Result<i32> {
        Err(exit::usage(
            "error: this rota was built without the vendor simulators (feature `rehearsal`), so it cannot rehearse",
        ))
    }

    /// `--rehearse`: the simulators start on this run's runtime, the plugins
    /// are granted exactly their origins, the profile supplies what a person
    /// would, and the vendors' state is shown at the end.
    #[cfg(feature = "rehearsal")]
    fn rehearse(self) -> anyhow::Result<i32> {
        use crate::rehearse;

        // Finding and validating the playbook needs only the manifests.
        let probe = Env::load()?;
        let loaded = discover::find(&self.args.playbook, probe.catalog.as_ref())?;
        drop(probe);
        let (profile, _) = rehearse::load_profile(
            self.args.profile.as_deref(),
            std::path::Path::new(&loaded.source.name),
        )?;
        let mut supplied = supplied(&self.args.inputs, self.args.inputs_file.as_deref())?;
        for (k, v) in &profile.inputs {
            supplied.values.entry(k.clone()).or_insert_with(|| v.clone());
        }
        let rt = runtime()?;
        let sims = rt.block_on(rehearse::start(&profile))?;
        rehearse::seed_inputs(&profile, &sims, &mut supplied)?;
        let output = self.args.output;
        let systems = rehearse::systems_used(&loaded, &profile);
        let result = (|| {
            let guided = self.args.guided;
            let env = Env::load_with(|c| rehearse::config(c, &sims, guided))?;
            env.start_plugins(&loaded, &rt);
            let state = crate::commands::open_state_for(true)?;
            rehearse::seed_secrets(&profile, &sims, &state.store())?;
            // What the operator answered in an --inputs file wins over the profile.
            let mut manual = profile.manual;
            manual.retain(|step, _| !supplied.manual.contains_key(step));
            let mut options = self.options(supplied);
            options.stand_in = Some(Arc::new(rehearse::RehearsalHands::new(manual, &sims)?));
            let run_id = options.run_id.clone().unwrap_or_default();
            let planned = options.dry_run;
            let result = execute(
                &env,
                &state,
                &loaded,
                options,
                output,
                self.wait(),
                Mode::Fresh,
                &rt,
            );
            if output == Output::Json {
                println!("{}", rehearse::state_json(&sims, &systems));
            } else {
                print!("{}", rehearse::summary(&sims, &systems, planned));
                if !planned {
                    println!(
                        "\nrehearsal records are kept apart from real ones: `rota --rehearsal runs show {run_id}`, \
                         `rota --rehearsal inventory`"
                    );
                }
            }
            result
        })();
        rt.block_on(sims.shutdown());
        result
    }
}

/// Every target's modeled actions off: each such step takes its manual path.
fn guide(mut config: rota_host::Config) -> rota_host::Config {
    for plugin in config.plugins.values_mut() {
        for target in &mut plugin.targets {
            target.modeled = rota_host::Modeled::Disabled;
        }
    }
    config
}

/// The async runtime a run (and a rehearsal's simulators) runs on.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// A new run, or one that continues an interrupted run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Fresh,
    Resume,
    /// Replays what finished, then runs only compensation and `finally`.
    Abort,
}

/// Runs (or plans, or resumes) a loaded playbook against the state.
#[allow(
    clippy::too_many_arguments,
    reason = "one call site per mode; a struct would only rename them"
)]
pub fn execute(
    env: &Env,
    state: &Arc<State>,
    loaded: &Loaded,
    options: RunOptions,
    output: Output,
    wait: LockWait,
    mode: Mode,
    runtime: &tokio::runtime::Runtime,
) -> anyhow::Result<i32> {
    let console = Arc::new(Console::new(output));
    let journal: Arc<dyn Journal> = if options.dry_run {
        Arc::new(NoJournal)
    } else {
        Arc::new(StateJournal {
            state: state.clone(),
            playbook_name: loaded.playbook.name.clone(),
            playbook_path: loaded.source.name.clone(),
            playbook_digest: loaded.digest.clone(),
            plugin_digests: env.plugin_digests(loaded),
            wait,
            resuming: mode != Mode::Fresh,
            aborting: mode == Mode::Abort,
        })
    };
    let executor = Executor {
        catalog: env.catalog.clone(),
        runner: env.runner.clone(),
        store: Arc::new(state.store()),
        operator: console.clone(),
        reporter: console,
        journal,
        clock: system_clock(),
    };
    let name = &loaded.playbook.name;
    let report = runtime
        .block_on(executor.run(loaded, &options))
        .map_err(|e| match e {
            StartError::Inputs(problems) => exit::usage(format!(
                "error: cannot run {name}:\n{}",
                problems
                    .iter()
                    .map(|p| format!("  - {p}"))
                    .collect::<Vec<_>>()
                    .join("\n")
            )),
            StartError::Secrets(msg) => exit::usage(format!("error: cannot run {name}: {msg}")),
            StartError::Locked(msg) => Exit {
                code: exit::LOCKED,
                message: format!("error: cannot run {name}: {msg}"),
            }
            .into(),
            StartError::Journal(msg) => exit::environment(format!("error: cannot run {name}: {msg}")),
        })?;
    if output == Output::Json {
        println!(
            "{}",
            serde_json::to_string(&serde_json::json!({"event": "report", "report": report}))?
        );
    }
    match report.outcome {
        Outcome::Succeeded | Outcome::Planned => Ok(exit::OK),
        Outcome::Failed => Err(Exit {
            code: exit::RUN_FAILED,
            message: format!(
                "error: run {} failed: {}",
                report.run_id,
                report.failure.unwrap_or_default()
            ),
        }
        .into()),
        Outcome::Interrupted => Err(Exit {
            code: exit::RUN_FAILED,
            message: format!(
                "error: run {} stopped: {}",
                report.run_id,
                report.failure.unwrap_or_default()
            ),
        }
        .into()),
        Outcome::Declined => Err(Exit {
            code: exit::DECLINED,
            message: format!(
                "error: run {} stopped: {}",
                report.run_id,
                report.failure.unwrap_or_default()
            ),
        }
        .into()),
    }
}

/// `-i` pairs and an `--inputs` file, as the executor takes them.
pub fn supplied(pairs: &[String], file: Option<&std::path::Path>) -> anyhow::Result<Supplied> {
    let mut supplied = Supplied::default();
    for pair in pairs {
        supplied.add_cli(pair).map_err(exit::usage)?;
    }
    if let Some(path) = file {
        let source = Source::read(path).map_err(|d| exit::usage(format!("error: {}", d.render(None))))?;
        let doc = parse_value(&source)
            .map_err(|d| exit::usage(format!("error: {}", d.render(Some(&source.text)))))?;
        supplied
            .add_file(doc)
            .map_err(|e| exit::usage(format!("error: {}: {e}", path.display())))?;
    }
    Ok(supplied)
}

/// Journaled results of finished steps, for a resume.
pub type Finished = BTreeMap<String, (StepStatus, Value)>;
