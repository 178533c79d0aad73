//! `rota runs list|show|resume|abort`: the run journal.
//!
//! Design decision: a resume never repeats a finished step and never blindly
//! repeats a vendor call that was in flight: it hands each such call, as the
//! journal recorded it, to the executor, which settles it by its action's
//! resume policy (repeat, or reconcile against the vendor's state). A call
//! whose action declares neither makes the resume refuse up front, naming the
//! call to check, rather than risk minting a second key or deleting the wrong
//! one. `abort` replays what the run finished and runs its compensation
//! (`on_failure`) and `finally`.

use std::collections::BTreeMap;
use std::path::Path;

use rota_core::core_actions::split_uses;
use rota_core::executor::RunOptions;
use rota_core::load::{Loaded, load_file};
use rota_core::reconcile::{self, InFlightCall, PendingRevoke, Resolution};
use rota_core::{ActionCatalog, SecretRef};
use rota_state::{LockWait, RunRecord, render};
use serde_json::Value;

use crate::cli::{Output, RunsCmd};
use crate::commands::run::{Finished, Mode, execute, runtime, supplied};
use crate::commands::{Env, open_state, state_error};
use crate::exit::{self, Exit};
use crate::journal::status_of;

pub struct Runs {
    pub cmd: RunsCmd,
}

const WAIT: LockWait = LockWait::Wait { timeout: None };

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
                let env = Env::load()?;
                let record = state
                    .load_run(&id)
                    .map_err(|e| exit::usage(format!("error: {e}")))?;
                if rehearsal() {
                    // The simulators of a rehearsal ended with its process:
                    // there is nothing left to compensate.
                    let released = state
                        .abort_run(&id)
                        .map_err(|e| exit::usage(format!("error: {e}")))?;
                    println!(
                        "rehearsal run {id} aborted; {released} lock(s) released (its simulators ended with it, so \
                         there was nothing to compensate)"
                    );
                    return Ok(exit::OK);
                }
                let (loaded, options) = match prepare(&env, &record, &id, None, true) {
                    Ok(p) => p,
                    Err(e) => {
                        // Without its playbook nothing can be compensated:
                        // record the abort and free the locks anyway.
                        eprintln!(
                            "{}\nrecording the abort without running compensation",
                            exit::render(&e)
                        );
                        let released = state
                            .abort_run(&id)
                            .map_err(|e| exit::usage(format!("error: {e}")))?;
                        println!("run {id} aborted; {released} lock(s) released");
                        return Ok(exit::OK);
                    }
                };
                let options = RunOptions {
                    abort: true,
                    yes: true,
                    ..options
                };
                state
                    .mark_resumed(&id, true)
                    .map_err(|e| state_error("cannot abort", e))?;
                match execute(
                    &env,
                    &state,
                    &loaded,
                    options,
                    Output::Text,
                    WAIT,
                    Mode::Abort,
                    &runtime()?,
                ) {
                    // The run is over either way; its compensation is reported above.
                    Err(e) if exit::code_of(&e) == exit::RUN_FAILED => {
                        println!("run {id} aborted");
                        Ok(exit::OK)
                    }
                    other => other,
                }
            }
            RunsCmd::Resume {
                id,
                force,
                yes,
                inputs_file,
                output,
            } => {
                if rehearsal() {
                    return Err(exit::usage(format!(
                        "error: run {id} is a rehearsal: its simulators ended with its process, so it cannot be \
                         continued; `rota --rehearsal runs abort {id}` gives it up, and a new `rota run ... \
                         --rehearse` starts afresh"
                    )));
                }
                let env = Env::load()?;
                let record = state
                    .load_run(&id)
                    .map_err(|e| exit::usage(format!("error: {e}")))?;
                let in_flight = in_flight_calls(&record, &id, env.catalog.as_ref())?;
                let (loaded, options) = prepare(&env, &record, &id, inputs_file.as_deref(), force)?;
                let options = RunOptions {
                    yes,
                    in_flight,
                    ..options
                };
                state
                    .mark_resumed(&id, force)
                    .map_err(|e| state_error("cannot resume", e))?;
                execute(
                    &env,
                    &state,
                    &loaded,
                    options,
                    output,
                    WAIT,
                    Mode::Resume,
                    &runtime()?,
                )
            }
        }
    }
}

/// The changing calls each unfinished step left in flight, as the executor
/// settles them; refuses the resume when one cannot be settled.
fn in_flight_calls(
    record: &RunRecord,
    id: &str,
    catalog: &dyn ActionCatalog,
) -> anyhow::Result<BTreeMap<String, Vec<InFlightCall>>> {
    let refuse = |message: String| -> anyhow::Error {
        Exit {
            code: exit::RUN_FAILED,
            message: format!("error: {message}"),
        }
        .into()
    };
    let mut out: BTreeMap<String, Vec<InFlightCall>> = BTreeMap::new();
    for step in record.in_flight() {
        for calls in record.in_flight_calls(&step.key) {
            let Some(intent) = calls.call else {
                return Err(refuse(format!(
                    "cannot resume run {id}: step {} journaled a revoke for call {} but never the call itself; \
                     check the vendor, then `rota runs abort {id}`",
                    step.key, calls.idempotency_key
                )));
            };
            let call = InFlightCall {
                action: intent.action,
                input: intent.input,
                idempotency_key: calls.idempotency_key,
                snapshot: intent.snapshot,
                captured: calls.captures.iter().map(|c| c.handle.clone()).collect(),
                key_id: calls.captures.iter().rev().find_map(|c| c.key_id.clone()),
                pending_revokes: calls
                    .pending_revokes
                    .into_iter()
                    .filter_map(|p| {
                        Some(PendingRevoke {
                            key_id: p.revokes?,
                            action: p.action,
                            input: p.input,
                        })
                    })
                    .collect(),
            };
            let spec = split_uses(&call.action).and_then(|(p, a)| catalog.lookup(p, a));
            if reconcile::resolve(&call, spec.as_ref()) == Resolution::Refuse {
                return Err(refuse(reconcile::refusal(id, &step.key.to_string(), &call)));
            }
            out.entry(step.key.step.clone()).or_default().push(call);
        }
    }
    Ok(out)
}

/// `--rehearsal`: the command reads the rehearsal state.
fn rehearsal() -> bool {
    crate::commands::globals().rehearsal
}

/// The playbook and options to continue (or abort) a journaled run.
fn prepare(
    env: &Env,
    record: &RunRecord,
    id: &str,
    inputs_file: Option<&Path>,
    force: bool,
) -> anyhow::Result<(Loaded, RunOptions)> {
    let path = &record.summary.playbook_path;
    let loaded = load_file(Path::new(path), env.catalog.as_ref()).map_err(|d| {
        exit::usage(format!(
            "error: run {id}: its playbook {path} does not load (run this from the directory the run started in):\n{}",
            d.render()
        ))
    })?;
    let refused: Vec<String> = record
        .resume_blockers(&loaded.digest, &env.plugin_digests(&loaded))
        .iter()
        .filter(|b| !(force && b.forceable()))
        .map(|b| {
            if b.forceable() {
                format!("{b} (--force continues anyway)")
            } else {
                b.to_string()
            }
        })
        .collect();
    if !refused.is_empty() {
        return Err(exit::usage(format!(
            "error: run {id} cannot continue:\n{}",
            refused
                .iter()
                .map(|r| format!("  - {r}"))
                .collect::<Vec<_>>()
                .join("\n")
        )));
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
    let mut supplied = supplied(&[], inputs_file)?;
    if let Value::Object(inputs) = &record.inputs {
        for (k, v) in inputs {
            // Secret inputs were journaled as handles; a run takes names.
            let v = match SecretRef::from_json(v) {
                Some(h) => Value::String(h.name),
                None => v.clone(),
            };
            if !v.is_null() {
                supplied.values.insert(k.clone(), v);
            }
        }
    }
    let options = RunOptions {
        supplied,
        yes: false,
        dry_run: false,
        run_id: Some(id.to_owned()),
        seed: None,
        resume: Some(finished),
        abort: false,
        in_flight: BTreeMap::new(),
        stand_in: None,
    };
    Ok((loaded, options))
}
