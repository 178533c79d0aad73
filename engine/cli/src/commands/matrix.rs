//! `rota run <playbook> --matrix FILE`: the same procedure for many
//! independent targets in one process, at most `--concurrency` at a time.
//!
//! Design decisions:
//! - Each matrix entry is a run of its own (its own run id, journal, locks
//!   and outcome), exactly as if started alone, so one target's failure,
//!   resume or abort never touches another's; they share only the plugin
//!   host (one engine, one compile cache) and the state database.
//! - A matrix is non-interactive: confirmations need `--yes`, manual steps
//!   their answers in the entry. Two entries needing the same credential lock
//!   are a mistake in the file, so the second fails at once (`--no-wait`
//!   semantics) rather than blocking a worker.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures::StreamExt;
use rota_core::event::{Event, Outcome, Reporter};
use rota_core::executor::{Executor, RunOptions, StartError};
use rota_core::inputs::Supplied;
use rota_core::journal::Journal;
use rota_core::load::Loaded;
use rota_core::operator::Absent;
use rota_core::template::system_clock;
use rota_core::yaml::{Source, parse_value};
use rota_state::{LockWait, State};
use serde_json::{Value, json};

use crate::cli::Output;
use crate::commands::Env;
use crate::exit;
use crate::journal::StateJournal;

/// The entries of a matrix file: a YAML list, each entry shaped like an
/// `--inputs` file (input values, and `manual:` answers).
pub fn entries(path: &std::path::Path, shared: &Supplied) -> anyhow::Result<Vec<Supplied>> {
    let source = Source::read(path).map_err(|d| exit::usage(format!("error: {}", d.render(None))))?;
    let doc =
        parse_value(&source).map_err(|d| exit::usage(format!("error: {}", d.render(Some(&source.text)))))?;
    let Value::Array(items) = doc else {
        return Err(exit::usage(format!(
            "error: {}: a matrix file is a list of entries, each a mapping of input names to values \
             (and `manual:` answers), one per target",
            path.display()
        )));
    };
    if items.is_empty() {
        return Err(exit::usage(format!(
            "error: {}: the matrix has no entries",
            path.display()
        )));
    }
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let mut entry = Supplied::default();
        entry
            .add_file(item)
            .map_err(|e| exit::usage(format!("error: {}: entry {}: {e}", path.display(), i + 1)))?;
        // `-i` and `--inputs` give every entry its defaults.
        for (k, v) in &shared.values {
            if !entry.values.contains_key(k) {
                entry.values.insert(k.clone(), v.clone());
                if shared.from_cli.contains(k) {
                    entry.from_cli.push(k.clone());
                }
            }
        }
        for (step, answers) in &shared.manual {
            let mine = entry.manual.entry(step.clone()).or_default();
            for (name, v) in answers {
                mine.entry(name.clone()).or_insert_with(|| v.clone());
            }
        }
        out.push(entry);
    }
    Ok(out)
}

/// One line per finished run: text, or the `run_finished` JSON event.
struct Lines {
    output: Output,
    started: Mutex<std::collections::HashMap<String, Instant>>,
}

impl Reporter for Lines {
    fn event(&self, event: &Event) {
        match event {
            Event::RunStarted { run_id, .. } => {
                self.started
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(run_id.clone(), Instant::now());
            }
            Event::RunFinished {
                run_id,
                outcome,
                failure,
            } => {
                let took = self
                    .started
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(run_id)
                    .map(|t| t.elapsed())
                    .unwrap_or_default();
                if self.output == Output::Json {
                    if let Ok(line) = serde_json::to_string(event) {
                        println!("{line}");
                    }
                } else {
                    let word = match outcome {
                        Outcome::Succeeded => "ok",
                        Outcome::Planned => "planned",
                        Outcome::Failed => "FAILED",
                        Outcome::Declined => "declined",
                        Outcome::Interrupted => "stopped",
                    };
                    println!(
                        "{word:<9} {run_id}  {:.2}s{}",
                        took.as_secs_f64(),
                        failure.as_deref().map(|f| format!("  {f}")).unwrap_or_default()
                    );
                }
            }
            _ => {}
        }
    }
}

/// Runs every entry; the exit code is 0 only if every run succeeded.
#[allow(clippy::too_many_arguments, reason = "the run's options, as `run` takes them")]
pub fn execute(
    env: &Env,
    state: &Arc<State>,
    loaded: &Loaded,
    base: RunOptions,
    entries: Vec<Supplied>,
    concurrency: usize,
    output: Output,
    runtime: &tokio::runtime::Runtime,
) -> anyhow::Result<i32> {
    let journal: Arc<dyn Journal> = Arc::new(StateJournal {
        state: state.clone(),
        playbook_name: loaded.playbook.name.clone(),
        playbook_path: loaded.source.name.clone(),
        playbook_digest: loaded.digest.clone(),
        plugin_digests: env.plugin_digests(loaded),
        wait: LockWait::NoWait,
        resuming: false,
        aborting: false,
    });
    let reporter = Arc::new(Lines {
        output,
        started: Mutex::new(Default::default()),
    });
    let executor = Arc::new(Executor {
        catalog: env.catalog.clone(),
        runner: env.runner.clone(),
        store: Arc::new(state.store()),
        operator: Arc::new(Absent),
        reporter: reporter.clone(),
        journal,
        clock: system_clock(),
    });
    let loaded = Arc::new(loaded.clone());
    let prefix = base
        .run_id
        .clone()
        .unwrap_or_else(rota_core::executor::new_run_id);
    let width = entries.len().to_string().len();
    let total = entries.len();
    let began = Instant::now();
    // Each run is a task of its own, so runs proceed on every worker and a
    // run waiting for the disk (a synced write) or a plugin call holds up
    // no other.
    let runs: Vec<(String, Result<Outcome, String>)> = runtime.block_on(async {
        futures::stream::iter(entries.into_iter().enumerate())
            .map(|(i, supplied)| {
                let run_id = format!("{prefix}-{:0width$}", i + 1);
                let options = RunOptions {
                    supplied,
                    run_id: Some(run_id.clone()),
                    ..base.clone()
                };
                let executor = executor.clone();
                let loaded = loaded.clone();
                let task = tokio::spawn(async move {
                    match executor.run(&loaded, &options).await {
                        Ok(report) => Ok(report.outcome),
                        Err(StartError::Inputs(problems)) => Err(problems.join("; ")),
                        Err(other) => Err(other.to_string()),
                    }
                });
                async move {
                    let r = task
                        .await
                        .unwrap_or_else(|e| Err(format!("the run stopped unexpectedly: {e}")));
                    (run_id, r)
                }
            })
            .buffer_unordered(concurrency.max(1))
            .collect()
            .await
    });
    let elapsed = began.elapsed();
    let mut counts = std::collections::BTreeMap::<&str, usize>::new();
    for (run_id, r) in &runs {
        match r {
            Ok(o) => {
                *counts
                    .entry(match o {
                        Outcome::Succeeded | Outcome::Planned => "succeeded",
                        Outcome::Failed => "failed",
                        Outcome::Declined => "declined",
                        Outcome::Interrupted => "stopped",
                    })
                    .or_default() += 1
            }
            Err(why) => {
                *counts.entry("not started").or_default() += 1;
                if output == Output::Json {
                    println!(
                        "{}",
                        json!({"event": "run_not_started", "run_id": run_id, "reason": why})
                    );
                } else {
                    println!("{:<9} {run_id}  {why}", "REFUSED");
                }
            }
        }
    }
    let ok = counts.get("succeeded").copied().unwrap_or(0);
    if output == Output::Json {
        println!(
            "{}",
            json!({"event": "matrix_finished", "runs": total, "outcomes": counts,
                   "seconds": elapsed.as_secs_f64(), "concurrency": concurrency})
        );
    } else {
        let summary: Vec<String> = counts.iter().map(|(k, n)| format!("{n} {k}")).collect();
        println!(
            "matrix of {total} runs of {} (concurrency {concurrency}): {} in {:.2}s",
            loaded.playbook.name,
            summary.join(", "),
            elapsed.as_secs_f64()
        );
    }
    if ok == total {
        Ok(exit::OK)
    } else {
        Err(exit::Exit {
            code: exit::RUN_FAILED,
            message: format!("error: {} of {total} runs did not succeed", total - ok),
        }
        .into())
    }
}
