//! `rota runs list|show|resume|abort`: the run journal.
//!
//! Design decision: a resume never repeats a finished step and never blindly
//! repeats a vendor call that was in flight: without a way to read back what
//! the vendor did, it refuses and says which call to check, rather than risk
//! minting a second key or deleting the wrong one.

use std::path::Path;

use rota_core::SecretRef;
use rota_core::executor::RunOptions;
use rota_core::load::load_file;
use rota_state::{LockWait, render};
use serde_json::Value;

use crate::cli::{Output, RunsCmd};
use crate::commands::run::{Finished, execute, supplied};
use crate::commands::{Env, open_state, state_error};
use crate::exit::{self, Exit};
use crate::journal::status_of;

pub struct Runs {
    pub cmd: RunsCmd,
}

impl Runs {
    pub fn execute(self) -> anyhow::Result<i32> {
        let state = open_state()?;
        match self.cmd {
            RunsCmd::List(args) => {
                let runs = state
                    .list_runs()
                    .map_err(|e| state_error("cannot read the journal", e))?;
                if args.output == Output::Json {
                    println!("{}", serde_json::to_string_pretty(&runs)?);
                } else if runs.is_empty() {
                    println!("no runs recorded");
                } else {
                    print!("{}", render::runs_list(&runs));
                }
                Ok(exit::OK)
            }
            RunsCmd::Show { id, output } => {
                let run = state
                    .load_run(&id)
                    .map_err(|e| exit::usage(format!("error: {e}")))?;
                if output == Output::Json {
                    println!("{}", serde_json::to_string_pretty(&run)?);
                } else {
                    print!("{}", render::run_timeline(&run));
                }
                Ok(exit::OK)
            }
            RunsCmd::Abort { id } => {
                let released = state
                    .abort_run(&id)
                    .map_err(|e| exit::usage(format!("error: {e}")))?;
                println!("run {id} aborted; {released} lock(s) released");
                Ok(exit::OK)
            }
            RunsCmd::Resume {
                id,
                force,
                yes,
                inputs_file,
                output,
            } => {
                let env = Env::load()?;
                let record = state
                    .load_run(&id)
                    .map_err(|e| exit::usage(format!("error: {e}")))?;
                let path = &record.summary.playbook_path;
                let loaded = load_file(Path::new(path), env.catalog.as_ref()).map_err(|d| {
                    exit::usage(format!(
                        "error: cannot resume run {id}: its playbook {path} does not load (resume from the directory the run started in):\n{}",
                        d.render()
                    ))
                })?;
                let blockers = record.resume_blockers(&loaded.digest, &Default::default());
                let refused: Vec<String> = blockers
                    .iter()
                    .filter(|b| !(force && b.forceable()))
                    .map(|b| {
                        if b.forceable() {
                            format!("{b} (--force resumes anyway)")
                        } else {
                            b.to_string()
                        }
                    })
                    .collect();
                if !refused.is_empty() {
                    return Err(exit::usage(format!(
                        "error: cannot resume run {id}:\n{}",
                        refused
                            .iter()
                            .map(|r| format!("  - {r}"))
                            .collect::<Vec<_>>()
                            .join("\n")
                    )));
                }
                for step in record.in_flight() {
                    if let Some(intent) = step.last_intent()
                        && !intent.action.starts_with("core.")
                    {
                        return Err(Exit {
                            code: exit::RUN_FAILED,
                            message: format!(
                                "error: cannot resume run {id}: step {} was calling {} when the run stopped, and rota cannot \
                                 read back whether the vendor applied it. Check the vendor (input: {}), then either finish \
                                 by hand and `rota runs abort {id}`, or abort and start a new run.",
                                step.key, intent.action, intent.input
                            ),
                        }
                        .into());
                    }
                }
                let finished: Finished = record
                    .completed()
                    .filter(|s| s.key.iteration.is_none())
                    .filter_map(|s| {
                        s.end
                            .as_ref()
                            .map(|end| (s.key.step.clone(), (status_of(end.outcome), end.outputs.clone())))
                    })
                    .collect();
                let mut supplied = supplied(&[], inputs_file.as_deref())?;
                if let Value::Object(inputs) = &record.inputs {
                    for (k, v) in inputs {
                        // Secret inputs were journaled as handles; the run takes names.
                        let v = match SecretRef::from_json(v) {
                            Some(h) => Value::String(h.name),
                            None => v.clone(),
                        };
                        if !v.is_null() {
                            supplied.values.insert(k.clone(), v);
                        }
                    }
                }
                state
                    .mark_resumed(&id, force)
                    .map_err(|e| state_error("cannot resume", e))?;
                let options = RunOptions {
                    supplied,
                    yes,
                    dry_run: false,
                    run_id: Some(id),
                    seed: None,
                    resume: Some(finished),
                };
                execute(
                    &env,
                    &state,
                    &loaded,
                    options,
                    output,
                    LockWait::Wait { timeout: None },
                    true,
                )
            }
        }
    }
}
