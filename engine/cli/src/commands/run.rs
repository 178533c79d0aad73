//! `rota run` and `rota plan`.

use std::sync::Arc;

use anyhow::Context;
use rota_core::event::Outcome;
use rota_core::executor::{Executor, RunOptions, StartError};
use rota_core::inputs::Supplied;
use rota_core::template::system_clock;
use rota_core::yaml::{Source, parse_value};

use crate::cli::{Output, RunArgs};
use crate::commands::Env;
use crate::console::Console;
use crate::discover;
use crate::exit::{self, Exit};

pub struct Run {
    pub args: RunArgs,
    pub plan: bool,
}

impl Run {
    pub fn execute(self) -> anyhow::Result<i32> {
        let env = Env::load()?;
        let loaded = discover::find(&self.args.playbook, env.catalog.as_ref())?;
        let supplied = self.supplied()?;
        let console = Arc::new(Console::new(self.args.output));
        let executor = Executor {
            catalog: env.catalog.clone(),
            runner: env.runner.clone(),
            store: env.store.clone(),
            operator: console.clone(),
            reporter: console,
            clock: system_clock(),
        };
        let options = RunOptions {
            supplied,
            yes: self.args.yes,
            dry_run: self.plan || self.args.dry_run,
            run_id: self.args.run_id.clone(),
            seed: self.args.seed,
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        let report = runtime
            .block_on(executor.run(&loaded, &options))
            .map_err(|e| match e {
                StartError::Inputs(problems) => exit::usage(format!(
                    "error: cannot run {}:\n{}",
                    loaded.playbook.name,
                    problems
                        .iter()
                        .map(|p| format!("  - {p}"))
                        .collect::<Vec<_>>()
                        .join("\n")
                )),
                StartError::Secrets(msg) => {
                    exit::usage(format!("error: cannot run {}: {msg}", loaded.playbook.name))
                }
            })?;
        if self.args.output == Output::Json {
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

    fn supplied(&self) -> anyhow::Result<Supplied> {
        let mut supplied = Supplied::default();
        for pair in &self.args.inputs {
            supplied.add_cli(pair).map_err(exit::usage)?;
        }
        if let Some(path) = &self.args.inputs_file {
            let source = Source::read(path).map_err(|d| exit::usage(format!("error: {}", d.render(None))))?;
            let doc = parse_value(&source)
                .map_err(|d| exit::usage(format!("error: {}", d.render(Some(&source.text)))))?;
            supplied
                .add_file(doc)
                .map_err(|e| exit::usage(format!("error: {}: {e}", path.display())))?;
        }
        Ok(supplied)
    }
}
