//! The run loop: inputs -> steps in order -> on_failure -> finally.
//!
//! Design decisions:
//! - A failed step fails the run unless it is `recoverable`; compensation
//!   (`on_failure`) runs and the run STILL ends failed; `finally` always runs.
//!   Nothing turns a failure into success.
//! - Only transient errors are retried (rate limits, 5xx, dropped
//!   connections; a timeout only for read-only actions, since a changing call
//!   that timed out may have happened).
//! - Time goes through tokio, so tests run retries under a paused clock.
//! - A step whose action is not enabled for the target (a `modeled` action on
//!   a real tenant) runs its `manual:` fallback; its outputs have the same
//!   shape, so later steps do not care which path ran.
//! - A resume settles each call the interrupted run left in flight before it
//!   redoes anything (`recover.rs`); when it cannot, it stops without
//!   compensating, so the run stays resumable and abortable.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Map, Value, json};
use time::OffsetDateTime;

use crate::action::{
    ActionCall, ActionCatalog, ActionError, ActionRunner, ActionSpec, CaptureTarget, ResumePolicy,
};
use crate::core_actions::{self, split_uses};
use crate::event::{Event, Outcome, Reporter, StepStatus};
use crate::inputs::{self, Supplied};
use crate::journal::{At, IntentRecord, Journal, JournalError, crash_point};
use crate::load::Loaded;
use crate::operator::{Operator, StandIn};
use crate::playbook::{InputType, ManualOutput, Retry, Step};
use crate::reconcile::InFlightCall;
use crate::scope::{Binding, SecretScope};
use crate::secret::{Secret, SecretRef};
use crate::store::{Provenance, SecretStore};
use crate::template::{Clock, EncodedContext, TemplateError, Templates, type_name};
use crate::validate::{Section, sections};

/// How to run.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    pub supplied: Supplied,
    /// Answer yes to every confirmation.
    pub yes: bool,
    /// Plan only: run read-only actions, show what the others would do.
    pub dry_run: bool,
    /// Fixes the run id (tests, resume).
    pub run_id: Option<String>,
    /// Seeds retry jitter (tests).
    pub seed: Option<u64>,
    /// Continue an interrupted run: these steps finished before and are not
    /// repeated (id -> status and outputs, as journaled).
    pub resume: Option<BTreeMap<String, (StepStatus, Value)>>,
    /// Give up an interrupted run: replay what it finished, run no further
    /// step, run its compensation (`on_failure`) and `finally`.
    pub abort: bool,
    /// Continue an interrupted run: the changing calls each unfinished step
    /// had announced (step id -> one per idempotency key), settled by their
    /// action's resume policy before the step's call is made again.
    pub in_flight: BTreeMap<String, Vec<InFlightCall>>,
    /// Performs manual steps instead of the operator (rehearsal).
    pub stand_in: Option<Arc<dyn StandIn>>,
}

/// Why a run could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{}", .0.join("\n"))]
    Inputs(Vec<String>),
    #[error("{0}")]
    Secrets(String),
    /// Another run holds one of this run's credential locks.
    #[error("{0}")]
    Locked(String),
    #[error("{0}")]
    Journal(String),
}

/// Why a step failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StepError {
    #[error("{plugin}.{action}: {error}")]
    Action {
        plugin: String,
        action: String,
        error: ActionError,
    },
    #[error("in {field}: {error}")]
    Template { field: String, error: String },
    #[error("{0}")]
    Invalid(String),
    #[error("assertion failed: {0}")]
    Assertion(String),
    #[error("the operator declined: {0}")]
    Declined(String),
    #[error("{0}")]
    NeedsOperator(String),
    #[error("{0}")]
    Secret(String),
    #[error("item {index}: {error}")]
    Item { index: usize, error: Box<StepError> },
    /// In a plan: the step depends on outputs of a step the plan did not run.
    #[error("{0}")]
    KnownAtRunTime(String),
    #[error("{0}")]
    Journal(String),
    /// A resume could not settle a call the interrupted run left in flight:
    /// the run stops here, uncompensated, and stays resumable.
    #[error("{0}")]
    ResumeStopped(String),
}

impl StepError {
    /// Whether this error stops a resume (rather than failing the run).
    pub fn stops_resume(&self) -> bool {
        match self {
            StepError::ResumeStopped(_) => true,
            StepError::Item { error, .. } => error.stops_resume(),
            _ => false,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            StepError::Action { error, .. } => error.kind(),
            StepError::Template { .. } => "template",
            StepError::Invalid(_) => "invalid",
            StepError::Assertion(_) => "assertion",
            StepError::Declined(_) => "declined",
            StepError::NeedsOperator(_) => "needs-operator",
            StepError::Secret(_) => "secret",
            StepError::Item { error, .. } => error.kind(),
            StepError::KnownAtRunTime(_) => "planned",
            StepError::Journal(_) => "journal",
            StepError::ResumeStopped(_) => "resume-stopped",
        }
    }
}

/// What happened to one step.
#[derive(Clone, Debug, serde::Serialize)]
pub struct StepRecord {
    pub id: String,
    pub name: String,
    pub section: &'static str,
    pub status: StepStatus,
    pub attempts: u32,
    pub outputs: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_kind: Option<&'static str>,
}

/// The result of a run.
#[derive(Clone, Debug, serde::Serialize)]
pub struct RunReport {
    pub run_id: String,
    pub playbook: String,
    pub outcome: Outcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    pub steps: Vec<StepRecord>,
}

/// Everything a run needs from outside.
#[derive(Clone)]
pub struct Executor {
    pub catalog: Arc<dyn ActionCatalog>,
    pub runner: Arc<dyn ActionRunner>,
    pub store: Arc<dyn SecretStore>,
    pub operator: Arc<dyn Operator>,
    pub reporter: Arc<dyn Reporter>,
    pub journal: Arc<dyn Journal>,
    pub clock: Clock,
}

/// A fresh run id: UTC time plus randomness, sortable and easy to type.
pub fn new_run_id() -> String {
    let now = OffsetDateTime::now_utc();
    let suffix: u16 = rand::rng().random();
    format!(
        "{:04}{:02}{:02}-{:02}{:02}{:02}-{suffix:04x}",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second()
    )
}

struct Run<'a> {
    ex: &'a Executor,
    loaded: &'a Loaded,
    opts: &'a RunOptions,
    templates: Templates,
    scope: Arc<SecretScope>,
    run_id: String,
    inputs: Value,
    /// secrets id -> where its captures go.
    captures: BTreeMap<String, CaptureTarget>,
    steps_ctx: Mutex<Map<String, Value>>,
    /// The render context (`inputs`, `steps`, `run`) with secret handles
    /// encoded, kept up to date as steps finish: renders share it rather
    /// than each copying and encoding every step's outputs.
    encoded: Mutex<Arc<EncodedContext>>,
    /// In a plan, the outputs of each step the plan did not run, as
    /// placeholders naming them (`<secret_id of add_new_secret>`): what a
    /// later step's `describe:` and `confirm:` show in their place. Never
    /// an action's input.
    planned_outputs: Mutex<Map<String, Value>>,
    failure: Mutex<Option<Value>>,
    records: Mutex<Vec<StepRecord>>,
    rng: Mutex<StdRng>,
    /// One question at a time, even from concurrent for_each items.
    operator_lock: tokio::sync::Mutex<()>,
    /// Calls the interrupted run left in flight, by idempotency key; each is
    /// taken (once) by the first attempt of its call.
    in_flight: Mutex<BTreeMap<String, InFlightCall>>,
    /// Changing calls of this run whose intent is journaled and whose outcome
    /// is not known yet, by idempotency key: a failure that may have been
    /// applied at the vendor is reconciled before it is retried or given up.
    unsettled: Mutex<BTreeMap<String, InFlightCall>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Executor {
    /// Runs (or with `dry_run`, plans) a validated playbook.
    pub async fn run(&self, loaded: &Loaded, opts: &RunOptions) -> Result<RunReport, StartError> {
        let templates = Templates::new(self.clock.clone());
        let run_id = opts.run_id.clone().unwrap_or_else(new_run_id);
        let scope = Arc::new(SecretScope::new(self.store.clone(), run_id.clone()));
        let mut values =
            inputs::resolve(&loaded.playbook, &opts.supplied, &templates).map_err(StartError::Inputs)?;
        self.bind_secret_inputs(loaded, &scope, &mut values)?;
        let inputs = Value::Object(values);
        let captures = render_secret_decls(loaded, &templates, &inputs)?;
        if opts.resume.is_some() {
            bind_captured_before(loaded, &scope, &captures);
        }
        if !opts.dry_run {
            let locks = render_locks(loaded, &templates, &inputs)?;
            self.journal
                .run_started(&run_id, &inputs, &locks)
                .map_err(|e| match e {
                    JournalError::Locked(m) => StartError::Locked(m),
                    JournalError::Write(m) => StartError::Journal(m),
                })?;
        }
        let seed = opts.seed.unwrap_or_else(|| rand::rng().random());
        let run = Run {
            ex: self,
            loaded,
            opts,
            templates,
            scope,
            run_id,
            inputs,
            captures,
            steps_ctx: Mutex::new(Map::new()),
            encoded: Mutex::new(Arc::new(EncodedContext::new(&Value::Null))),
            planned_outputs: Mutex::new(Map::new()),
            failure: Mutex::new(None),
            records: Mutex::new(Vec::new()),
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
            operator_lock: tokio::sync::Mutex::new(()),
            in_flight: Mutex::new(
                opts.in_flight
                    .values()
                    .flatten()
                    .map(|c| (c.idempotency_key.clone(), c.clone()))
                    .collect(),
            ),
            unsettled: Mutex::new(BTreeMap::new()),
        };
        *lock(&run.encoded) = Arc::new(EncodedContext::new(&run.context(None)));
        Ok(run.execute().await)
    }

    fn bind_secret_inputs(
        &self,
        loaded: &Loaded,
        scope: &SecretScope,
        values: &mut Map<String, Value>,
    ) -> Result<(), StartError> {
        for (name, input) in loaded.playbook.inputs.iter() {
            if input.kind != InputType::Secret {
                continue;
            }
            let Some(secret_name) = values.get(name).and_then(Value::as_str).map(str::to_owned) else {
                continue;
            };
            let handle = self
                .store
                .resolve(&secret_name, crate::store::Stage::Current)
                .map_err(|e| StartError::Secrets(format!("input \"{name}\": {e}")))?
                .ok_or_else(|| {
                    StartError::Secrets(format!(
                        "input \"{name}\": no current version of secret \"{secret_name}\" in the store; add it with `rota secrets put {secret_name}`"
                    ))
                })?;
            scope.bind(
                &secret_name,
                Binding {
                    send_to: input.send_to.iter().cloned().collect(),
                    ephemeral: false,
                },
            );
            values.insert(name.clone(), handle.to_json());
        }
        Ok(())
    }
}

fn render_secret_decls(
    loaded: &Loaded,
    templates: &Templates,
    inputs: &Value,
) -> Result<BTreeMap<String, CaptureTarget>, StartError> {
    let ctx = json!({ "inputs": inputs });
    let mut out = BTreeMap::new();
    for (id, decl) in loaded.playbook.secrets.iter() {
        let name = templates
            .render_text(&decl.name, &ctx)
            .map_err(|e| StartError::Secrets(format!("secrets.{id}.name: {e}")))?;
        crate::secret::validate_secret_name(&name)
            .map_err(|e| StartError::Secrets(format!("secrets.{id}.name: {e}")))?;
        out.insert(
            id.clone(),
            CaptureTarget {
                name,
                send_to: decl.send_to.clone(),
                ephemeral: decl.ephemeral,
            },
        );
    }
    Ok(out)
}

/// A resumed run binds the secrets the interrupted run captured as that run
/// did (its `send_to` plus the capturing plugins), so handles in replayed or
/// adopted outputs reach the same plugins and no others.
fn bind_captured_before(loaded: &Loaded, scope: &SecretScope, captures: &BTreeMap<String, CaptureTarget>) {
    let [(_, main), (_, on_failure), (_, finally)] = sections(&loaded.playbook);
    for (id, target) in captures {
        if target.ephemeral {
            continue;
        }
        let mut send_to: std::collections::BTreeSet<String> = target.send_to.iter().cloned().collect();
        for step in main.iter().chain(on_failure).chain(finally) {
            if step.captures.iter().any(|(_, secret)| secret == id)
                && let Some((plugin, _)) = step.uses.as_deref().and_then(split_uses)
            {
                send_to.insert(plugin.to_owned());
            }
        }
        scope.bind(
            &target.name,
            Binding {
                send_to,
                ephemeral: false,
            },
        );
    }
}

fn render_locks(loaded: &Loaded, templates: &Templates, inputs: &Value) -> Result<Vec<String>, StartError> {
    let ctx = json!({ "inputs": inputs });
    loaded
        .playbook
        .locks
        .iter()
        .enumerate()
        .map(|(i, l)| {
            templates
                .render_text(l, &ctx)
                .map_err(|e| StartError::Secrets(format!("locks[{i}]: {e}")))
        })
        .collect()
}

/// Result of one attempt-loop: outputs and attempts used.
type BodyResult = Result<(Value, u32), (StepError, u32)>;

impl Run<'_> {
    fn emit(&self, e: Event) {
        // Events hold ids, statuses and handles only (see event.rs), so the
        // debug log can carry them whole.
        tracing::debug!(run = %self.run_id, event = ?e, "run event");
        self.ex.reporter.event(&e);
    }

    fn context(&self, item: Option<&Value>) -> Value {
        let mut ctx = json!({
            "inputs": self.inputs,
            "steps": Value::Object(lock(&self.steps_ctx).clone()),
            "run": self.run_ctx(),
        });
        if let (Some(item), Some(map)) = (item, ctx.as_object_mut()) {
            map.insert("item".to_owned(), item.clone());
        }
        ctx
    }

    /// What templates see as `run`.
    fn run_ctx(&self) -> Value {
        json!({
            "id": self.run_id,
            "dry_run": self.opts.dry_run,
            "failure": lock(&self.failure).clone().unwrap_or(Value::Null),
        })
    }

    /// [`Run::context`], encoded for rendering (shared, not copied).
    fn render_ctx(&self, item: Option<&Value>) -> Arc<EncodedContext> {
        let base = lock(&self.encoded).clone();
        match item {
            None => base,
            Some(item) => Arc::new(base.with("item", item)),
        }
    }

    /// [`Run::description_context`], encoded for rendering.
    fn description_render_ctx(&self, item: Option<&Value>) -> Arc<EncodedContext> {
        if self.opts.dry_run {
            Arc::new(EncodedContext::new(&self.description_context(item)))
        } else {
            self.render_ctx(item)
        }
    }

    /// Records what `steps.<id>` shows templates.
    fn set_step_ctx(&self, id: &str, entry: Value) {
        Arc::make_mut(&mut lock(&self.encoded)).set_in("steps", id, &entry);
        lock(&self.steps_ctx).insert(id.to_owned(), entry);
    }

    /// Records what `run.failure` shows templates.
    fn set_failure(&self, failure: Value) {
        *lock(&self.failure) = Some(failure);
        let run = self.run_ctx();
        Arc::make_mut(&mut lock(&self.encoded)).set("run", &run);
    }

    /// The context `describe:` and `confirm:` are rendered in: in a plan,
    /// the outputs of steps it did not run are placeholders naming them, so
    /// a plan still says what a step would do with what an earlier planned
    /// step would produce.
    fn description_context(&self, item: Option<&Value>) -> Value {
        let mut ctx = self.context(item);
        if self.opts.dry_run
            && let Some(steps) = ctx.get_mut("steps").and_then(Value::as_object_mut)
        {
            for (id, placeholders) in lock(&self.planned_outputs).iter() {
                if let Some(entry) = steps.get_mut(id).and_then(Value::as_object_mut) {
                    entry.insert("outputs".to_owned(), placeholders.clone());
                }
            }
        }
        ctx
    }

    /// Placeholders for the outputs a planned step would have: the output
    /// schema's properties, or its manual step's outputs.
    fn placeholders(&self, step: &Step, spec: Option<&ActionSpec>) -> Value {
        let mut names: Vec<String> = spec
            .and_then(|s| s.output_schema.get("properties"))
            .and_then(Value::as_object)
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default();
        if let Some(m) = &step.manual {
            names.extend(m.outputs.keys().cloned());
        }
        Value::Object(
            names
                .into_iter()
                .map(|n| {
                    let shown = format!("<{n} of {}>", step.id);
                    (n, Value::String(shown))
                })
                .collect(),
        )
    }

    async fn execute(&self) -> RunReport {
        self.emit(Event::RunStarted {
            run_id: self.run_id.clone(),
            playbook: self.loaded.playbook.name.clone(),
            dry_run: self.opts.dry_run,
        });
        let [(_, main), (_, on_failure), (_, finally)] = sections(&self.loaded.playbook);
        // Every step is known from the start, so `finally` can ask whether a
        // step ran (`steps.x.status` is "not_run") without a template error.
        for step in main.iter().chain(on_failure).chain(finally) {
            self.set_step_ctx(
                &step.id,
                json!({"status": "not_run", "outputs": {}, "error": null}),
            );
        }
        let mut outcome = if self.opts.dry_run {
            Outcome::Planned
        } else {
            Outcome::Succeeded
        };
        let mut failure_text = None;
        for step in main {
            let finished = self
                .opts
                .resume
                .as_ref()
                .is_some_and(|r| r.contains_key(&step.id));
            if self.opts.abort && !finished {
                failure_text = Some(format!("run aborted by the operator before step {}", step.id));
                outcome = Outcome::Failed;
                self.set_failure(json!({"step": step.id, "kind": "aborted", "message": "run aborted"}));
                break;
            }
            if let Some(err) = self.step(Section::Steps, step).await {
                if err.stops_resume() {
                    return self.stopped(step, &err);
                }
                outcome = if matches!(err, StepError::Declined(_)) {
                    Outcome::Declined
                } else {
                    Outcome::Failed
                };
                failure_text = Some(format!("step {} failed: {err}", step.id));
                self.set_failure(json!({"step": step.id, "kind": err.kind(), "message": err.to_string()}));
                break;
            }
        }
        if failure_text.is_some() {
            for step in on_failure {
                // Compensation goes on past a failing compensation step: each
                // undoes something different.
                let _ = self.step(Section::OnFailure, step).await;
            }
        }
        for step in finally {
            if let Some(err) = self.step(Section::Finally, step).await
                && failure_text.is_none()
            {
                outcome = Outcome::Failed;
                failure_text = Some(format!("step {} failed: {err}", step.id));
            }
        }
        let mut failure = failure_text.map(|t| self.scope.redact(&t));
        if !self.opts.dry_run
            && let Err(e) = self.ex.journal.run_finished(&self.run_id, outcome)
        {
            failure = Some(match failure {
                Some(f) => format!("{f}; and {e}"),
                None => e.to_string(),
            });
            outcome = Outcome::Failed;
        }
        self.emit(Event::RunFinished {
            run_id: self.run_id.clone(),
            outcome,
            failure: failure.clone(),
        });
        RunReport {
            run_id: self.run_id.clone(),
            playbook: self.loaded.playbook.name.clone(),
            outcome,
            failure,
            steps: lock(&self.records).clone(),
        }
    }

    /// A resume that could not settle an in-flight call ends here: no step
    /// end, no compensation, no `finally`, no run end in the journal, so the
    /// run is still interrupted (its locks are freed when this process exits).
    fn stopped(&self, step: &Step, err: &StepError) -> RunReport {
        let failure = Some(self.scope.redact(&format!(
            "resume stopped at step {}: {err}\nthe run is still interrupted: nothing was compensated; once the cause is fixed, \
             `rota runs resume {run}` continues it, or `rota runs abort {run}` gives it up",
            step.id,
            run = self.run_id
        )));
        self.emit(Event::RunFinished {
            run_id: self.run_id.clone(),
            outcome: Outcome::Interrupted,
            failure: failure.clone(),
        });
        RunReport {
            run_id: self.run_id.clone(),
            playbook: self.loaded.playbook.name.clone(),
            outcome: Outcome::Interrupted,
            failure,
            steps: lock(&self.records).clone(),
        }
    }

    /// Runs one step; returns the error if it failed the run.
    async fn step(&self, section: Section, step: &Step) -> Option<StepError> {
        if let Some((status, outputs)) = self.opts.resume.as_ref().and_then(|r| r.get(&step.id)) {
            return self.replay(section, step, *status, outputs.clone());
        }
        let started = Instant::now();
        let at = At {
            step: &step.id,
            iteration: None,
        };
        let spec = self.spec_of(step);
        let path = self.path_of(step, spec.as_ref());
        // The step's `if`, decided once and before anything of the step
        // happens. With for_each, an `if` that reads `item` is decided per
        // item (in body); any other `if` is decided here, before the list is
        // rendered, so a skipped step never needs its list (it may come
        // from a step that did not run).
        let gate = step
            .condition
            .as_ref()
            .filter(|cond| step.for_each.is_none() || !reads_item(cond))
            .map(|cond| self.condition(cond, None, "if"));
        let skipped = matches!(gate, Some(Ok(false)));
        // A step that changes nothing (skipped, or a read-only action that
        // captures nothing) is journaled whole when it ends, in one commit:
        // lost to a kill before that, a resume simply runs it, which changes
        // nothing either. Any other step is journaled as started first.
        let whole = skipped
            || (matches!(path, StepPath::Core | StepPath::Automated)
                && spec
                    .as_ref()
                    .is_some_and(|s| s.read_only && s.captures.is_empty()));
        if !self.opts.dry_run {
            if !whole && let Err(e) = self.ex.journal.step_started(&self.run_id, at, 1) {
                return Some(StepError::Journal(e.to_string()));
            }
            crash_point(&step.id, "start");
        }
        self.emit(Event::StepStarted {
            id: step.id.clone(),
            name: step.display_name().to_owned(),
            section: section.key(),
            iteration: None,
            path: path.label(),
        });
        let result = match gate {
            Some(Ok(false)) => Ok(StepOutcome::Skipped),
            Some(Err(e)) => Err((e, 0)),
            _ => self.step_inner(step, spec.as_ref(), path).await,
        };
        let result = match result {
            Err((StepError::KnownAtRunTime(why), _)) => {
                self.emit(Event::WouldDo {
                    id: step.id.clone(),
                    description: format!(
                        "would run {}; {why}",
                        step.uses.as_deref().unwrap_or("the manual step")
                    ),
                    input: None,
                });
                Ok(StepOutcome::Done {
                    outputs: json!({}),
                    attempts: 0,
                    planned: true,
                })
            }
            other => other,
        };
        let (status, outputs, attempts, error) = match result {
            Ok(StepOutcome::Skipped) => (StepStatus::Skipped, json!({}), 0, None),
            Ok(StepOutcome::Done {
                outputs,
                attempts,
                planned,
            }) => (
                if planned {
                    StepStatus::Planned
                } else {
                    StepStatus::Succeeded
                },
                outputs,
                attempts,
                None,
            ),
            Err((e, attempts)) => {
                let status = if step.recoverable && !matches!(e, StepError::Declined(_)) {
                    StepStatus::Recovered
                } else {
                    StepStatus::Failed
                };
                (status, json!({}), attempts, Some(e))
            }
        };
        let error_text = error.as_ref().map(|e| self.scope.redact(&e.to_string()));
        if let Some(e) = error.as_ref().filter(|e| e.stops_resume()) {
            // The step stays in flight in the journal: a later resume settles it.
            self.emit(Event::StepFinished {
                id: step.id.clone(),
                status,
                duration: started.elapsed(),
                error: error_text,
            });
            return Some(e.clone());
        }
        if !self.opts.dry_run {
            let error = error
                .as_ref()
                .zip(error_text.as_deref())
                .map(|(e, t)| (e.kind(), t));
            let journaled = if whole {
                self.ex
                    .journal
                    .step_done(&self.run_id, at, 1, status, &outputs, error)
            } else {
                self.ex
                    .journal
                    .step_finished(&self.run_id, at, status, &outputs, error)
            };
            if let Err(e) = journaled {
                return Some(StepError::Journal(e.to_string()));
            }
            crash_point(&step.id, "end");
        }
        if status == StepStatus::Planned {
            lock(&self.planned_outputs).insert(step.id.clone(), self.placeholders(step, spec.as_ref()));
        }
        self.set_step_ctx(
            &step.id,
            json!({
                "status": status.as_str(),
                "outputs": outputs,
                "error": error_text.clone().map(Value::String).unwrap_or(Value::Null),
            }),
        );
        lock(&self.records).push(StepRecord {
            id: step.id.clone(),
            name: step.display_name().to_owned(),
            section: section.key(),
            status,
            attempts,
            outputs,
            error: error_text.clone(),
            error_kind: error.as_ref().map(StepError::kind),
        });
        self.emit(Event::StepFinished {
            id: step.id.clone(),
            status,
            duration: started.elapsed(),
            error: error_text,
        });
        match status {
            StepStatus::Failed => error,
            _ => None,
        }
    }

    /// A step the interrupted run finished: its journaled result, not a repeat.
    fn replay(&self, section: Section, step: &Step, status: StepStatus, outputs: Value) -> Option<StepError> {
        self.set_step_ctx(
            &step.id,
            json!({"status": status.as_str(), "outputs": outputs, "error": null}),
        );
        lock(&self.records).push(StepRecord {
            id: step.id.clone(),
            name: step.display_name().to_owned(),
            section: section.key(),
            status,
            attempts: 0,
            outputs,
            error: None,
            error_kind: None,
        });
        self.emit(Event::Message {
            id: step.id.clone(),
            level: "info".to_owned(),
            message: "done before the interruption; not repeated".to_owned(),
        });
        self.emit(Event::StepFinished {
            id: step.id.clone(),
            status,
            duration: Duration::ZERO,
            error: None,
        });
        None
    }

    fn spec_of(&self, step: &Step) -> Option<ActionSpec> {
        let (plugin, action) = split_uses(step.uses.as_deref()?)?;
        if plugin == "core" {
            core_actions::lookup(action)
        } else {
            self.ex.catalog.lookup(plugin, action)
        }
    }

    fn path_of(&self, step: &Step, spec: Option<&ActionSpec>) -> StepPath {
        match spec {
            Some(s) if s.plugin == "core" => StepPath::Core,
            Some(s) if self.ex.catalog.is_enabled(s) => StepPath::Automated,
            _ if step.manual.is_some() => StepPath::Manual,
            _ => StepPath::Unavailable,
        }
    }

    async fn step_inner(
        &self,
        step: &Step,
        spec: Option<&ActionSpec>,
        path: StepPath,
    ) -> Result<StepOutcome, (StepError, u32)> {
        // The step-level `if` was decided by `step` (it passed).
        let Some(list) = &step.for_each else {
            let (outputs, attempts) = self.body(step, spec, path, None).await?;
            return Ok(StepOutcome::Done {
                outputs,
                attempts,
                planned: self.opts.dry_run && !self.really_ran(spec, path),
            });
        };
        let items = match list {
            Value::Array(items) => items.clone(),
            Value::String(s) => match self.templates.render_value_in(s, &self.render_ctx(None)) {
                Ok(Value::Array(items)) => items,
                Ok(other) => {
                    return Err((
                        StepError::Invalid(format!("for_each must yield a list, got {}", type_name(&other))),
                        0,
                    ));
                }
                Err(e) => return Err((self.template_error("for_each", e), 0)),
            },
            other => {
                return Err((
                    StepError::Invalid(format!("for_each must be a list, got {}", type_name(other))),
                    0,
                ));
            }
        };
        let concurrency = step.concurrency.unwrap_or(1).max(1) as usize;
        let failed = std::sync::atomic::AtomicBool::new(false);
        // Indices, not `(i, &item)` pairs: a closure taking a reference would
        // make the run's future unprovably `Send` (rustc's higher-ranked
        // closure limitation), and a `--matrix` spawns each run as a task.
        let items = &items;
        let results: Vec<(usize, BodyResult)> = futures::stream::iter(0..items.len())
            .map(|i| {
                let item = &items[i];
                let failed = &failed;
                async move {
                    if failed.load(std::sync::atomic::Ordering::SeqCst) {
                        return (
                            i,
                            Err((
                                StepError::Invalid("not started: an earlier item failed".to_owned()),
                                0,
                            )),
                        );
                    }
                    let r = self.body(step, spec, path, Some((i, item))).await;
                    if r.is_err() {
                        failed.store(true, std::sync::atomic::Ordering::SeqCst);
                    }
                    (i, r)
                }
            })
            .buffer_unordered(concurrency)
            .collect()
            .await;
        let mut ordered = results;
        ordered.sort_by_key(|(i, _)| *i);
        let mut outputs = Vec::with_capacity(ordered.len());
        let mut attempts = 0;
        let mut first_error = None;
        for (i, r) in ordered {
            match r {
                Ok((o, a)) => {
                    attempts += a;
                    outputs.push(o);
                }
                Err((e, a)) => {
                    attempts += a;
                    if first_error.is_none()
                        && !matches!(&e, StepError::Invalid(m) if m.starts_with("not started"))
                    {
                        first_error = Some(match e {
                            StepError::KnownAtRunTime(_) => e,
                            e => StepError::Item {
                                index: i,
                                error: Box::new(e),
                            },
                        });
                    }
                    outputs.push(Value::Null);
                }
            }
        }
        match first_error {
            Some(e) => Err((e, attempts)),
            None => Ok(StepOutcome::Done {
                outputs: Value::Array(outputs),
                attempts,
                planned: self.opts.dry_run && !self.really_ran(spec, path),
            }),
        }
    }

    /// Whether the step's action really runs in a plan (read-only, or core).
    fn really_ran(&self, spec: Option<&ActionSpec>, path: StepPath) -> bool {
        matches!(path, StepPath::Core | StepPath::Automated)
            && spec.is_some_and(|s| s.read_only && s.action != "sleep")
    }

    fn condition(&self, cond: &Value, item: Option<&Value>, field: &str) -> Result<bool, StepError> {
        match cond {
            Value::Bool(b) => Ok(*b),
            Value::String(s) => match self.templates.render_value_in(s, &self.render_ctx(item)) {
                Ok(Value::Bool(b)) => Ok(b),
                Ok(other) => Err(StepError::Invalid(format!(
                    "\"{field}\" must yield a boolean, got {} ({})",
                    type_name(&other),
                    short(&other)
                ))),
                Err(e) => Err(self.template_error(field, e)),
            },
            other => Err(StepError::Invalid(format!(
                "\"{field}\" must be a boolean, got {}",
                type_name(other)
            ))),
        }
    }

    fn template_error(&self, field: &str, e: TemplateError) -> StepError {
        let mut error = e.to_string();
        if let TemplateError::Missing(path) = &e {
            let segs: Vec<&str> = path.split('.').collect();
            if let ["steps", id, "outputs", ..] = segs.as_slice()
                && let Some(status) = lock(&self.steps_ctx)
                    .get(*id)
                    .and_then(|s| s.get("status"))
                    .and_then(Value::as_str)
                && status != "succeeded"
            {
                if status == "planned" {
                    return StepError::KnownAtRunTime(format!(
                        "its {field} depends on step {id}, which a plan does not run"
                    ));
                }
                error = format!("{error} (step {id} {status}, so it has no outputs)");
            }
        }
        StepError::Template {
            field: field.to_owned(),
            error,
        }
    }

    /// One execution of the step (or of one for_each item): confirm, then the
    /// action with retries, or the manual path.
    async fn body(
        &self,
        step: &Step,
        spec: Option<&ActionSpec>,
        path: StepPath,
        item: Option<(usize, &Value)>,
    ) -> BodyResult {
        let item_value = item.map(|(_, v)| v);
        if item.is_some()
            && let Some(cond) = &step.condition
            && !self.condition(cond, item_value, "if").map_err(|e| (e, 0))?
        {
            return Ok((json!({"skipped": true}), 0));
        }
        if let Some(q) = &step.confirm {
            let question = self
                .templates
                .render_text_in(q, &self.description_render_ctx(item_value))
                .map_err(|e| (self.template_error("confirm", e), 0))?;
            self.confirm(step, &question).await.map_err(|e| (e, 0))?;
        }
        match path {
            StepPath::Core | StepPath::Automated => {
                let Some(spec) = spec else {
                    return Err((StepError::Invalid("action is not installed".to_owned()), 0));
                };
                let rendered = self
                    .templates
                    .render_tree_in(&Value::Object(step.with.clone()), &self.render_ctx(item_value))
                    .map_err(|(field, e)| (self.template_error(&format!("with.{field}"), e), 0));
                let described = match &step.describe {
                    Some(d) => Some(
                        self.templates
                            .render_text_in(d, &self.description_render_ctx(item_value))
                            .map_err(|e| (self.template_error("describe", e), 0))?,
                    ),
                    None => None,
                };
                let planned_only = self.opts.dry_run && !self.really_ran(Some(spec), path);
                let input = match (rendered, &described) {
                    // A plan still says what a changing step would do when only
                    // its input waits on a step the plan does not run (e.g. the
                    // secret a previous step would mint).
                    (Err((StepError::KnownAtRunTime(_), _)), Some(d)) if planned_only => {
                        self.emit(Event::WouldDo {
                            id: step.id.clone(),
                            description: format!("would {d}"),
                            input: None,
                        });
                        return Ok((json!({}), 0));
                    }
                    (r, _) => r?,
                };
                if planned_only {
                    self.emit(Event::WouldDo {
                        id: step.id.clone(),
                        description: match described {
                            Some(d) => format!("would {d}"),
                            None => format!("would run {}", spec.qualified_name()),
                        },
                        input: Some(input),
                    });
                    return Ok((json!({}), 0));
                }
                if let Some(d) = described
                    && !self.opts.dry_run
                {
                    self.emit(Event::Message {
                        id: step.id.clone(),
                        level: "info".to_owned(),
                        message: d,
                    });
                }
                self.with_retries(step, spec, input, item.map(|(i, _)| i)).await
            }
            StepPath::Manual => self
                .manual(step, spec, item_value)
                .await
                .map(|o| (o, 1))
                .map_err(|e| (e, 1)),
            StepPath::Unavailable => Err((
                StepError::Invalid(format!(
                    "{} is not enabled for this target and the step has no manual fallback",
                    step.uses.as_deref().unwrap_or("the action")
                )),
                0,
            )),
        }
    }

    async fn confirm(&self, step: &Step, question: &str) -> Result<(), StepError> {
        if self.opts.dry_run {
            self.emit(Event::WouldDo {
                id: step.id.clone(),
                description: format!("would ask: {question}"),
                input: None,
            });
            return Ok(());
        }
        if self.opts.yes {
            self.emit(Event::Message {
                id: step.id.clone(),
                level: "info".to_owned(),
                message: format!("confirmed by --yes: {question}"),
            });
            return Ok(());
        }
        if !self.ex.operator.is_interactive() {
            return Err(StepError::NeedsOperator(format!(
                "step {} needs a confirmation and no one can answer (not a terminal): \"{question}\"; run it in a terminal or pass --yes",
                step.id
            )));
        }
        let _guard = self.operator_lock.lock().await;
        let operator = self.ex.operator.clone();
        let q = question.to_owned();
        let answer = tokio::task::spawn_blocking(move || operator.confirm(&q))
            .await
            .map_err(|e| StepError::NeedsOperator(e.to_string()))?
            .map_err(|e| StepError::NeedsOperator(format!("cannot ask for confirmation: {e}")))?;
        if answer {
            Ok(())
        } else {
            Err(StepError::Declined(question.to_owned()))
        }
    }

    async fn with_retries(
        &self,
        step: &Step,
        spec: &ActionSpec,
        input: Value,
        iteration: Option<usize>,
    ) -> BodyResult {
        let policy = retry_policy(step);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = self.attempt(step, spec, &input, iteration, attempt).await;
            match result {
                Ok(out) => return Ok((out, attempt)),
                Err(StepError::Action {
                    plugin,
                    action,
                    error,
                }) => {
                    // A changing call that failed after it may have reached
                    // the vendor is settled first: never retried blindly
                    // (a second key), never left as an orphan.
                    let key = idempotency_key(&self.run_id, step, iteration);
                    let unsettled = lock(&self.unsettled).remove(&key);
                    if let Some(mut call) = unsettled
                        && may_have_applied(spec, &error)
                    {
                        (call.captured, call.key_id) = self.scope.captured_for(&key);
                        let site = CallSite {
                            step,
                            spec,
                            input: &input,
                            idempotency_key: &key,
                            attempt,
                        };
                        self.note_settling(step, spec, &error);
                        match self.recover(&site, call).await {
                            Ok(Some(adopted)) => {
                                self.record_inventory(spec, &adopted).map_err(|e| (e, attempt))?;
                                return Ok((adopted, attempt));
                            }
                            Ok(None) => {}
                            Err(e) => return Err((e, attempt)),
                        }
                    }
                    let transient = error.is_transient()
                        || (retry_settled(spec)
                            && matches!(error, ActionError::Limit(ref m) if m.contains("timed out")));
                    if !transient || attempt >= policy.attempts {
                        return Err((
                            StepError::Action {
                                plugin,
                                action,
                                error,
                            },
                            attempt,
                        ));
                    }
                    let delay = self.backoff(&policy, attempt, error.retry_after());
                    self.emit(Event::StepRetrying {
                        id: step.id.clone(),
                        attempt: attempt + 1,
                        delay,
                        error: self.scope.redact(&error.to_string()),
                    });
                    tokio::time::sleep(delay).await;
                }
                Err(other) => return Err((other, attempt)),
            }
        }
    }

    fn note_settling(&self, step: &Step, spec: &ActionSpec, error: &ActionError) {
        self.emit(Event::Message {
            id: step.id.clone(),
            level: "info".to_owned(),
            message: format!(
                "{} failed after it may have reached the vendor ({}); reading the vendor's state before going on",
                spec.qualified_name(),
                self.scope.redact(&error.to_string())
            ),
        });
    }

    /// delay * factor^(n-1), capped, jittered into [d/2, d]; never shorter
    /// than what the vendor asked for with Retry-After.
    fn backoff(&self, policy: &Retry, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let exp = policy.factor.powi(attempt.saturating_sub(1).min(63) as i32);
        let base = policy.delay.0.as_secs_f64() * exp;
        let capped = base.min(policy.max_delay.0.as_secs_f64());
        let chosen = if policy.jitter {
            let r: f64 = lock(&self.rng).random_range(0.5..=1.0);
            capped * r
        } else {
            capped
        };
        let d = Duration::from_secs_f64(chosen.max(0.0));
        match retry_after {
            Some(ra) if ra > d => ra,
            _ => d,
        }
    }

    async fn attempt(
        &self,
        step: &Step,
        spec: &ActionSpec,
        input: &Value,
        iteration: Option<usize>,
        attempt: u32,
    ) -> Result<Value, StepError> {
        let fut = self.invoke(step, spec, input.clone(), iteration, attempt);
        let wrap = |error| StepError::Action {
            plugin: spec.plugin.clone(),
            action: spec.action.clone(),
            error,
        };
        match step.timeout {
            Some(t) => match tokio::time::timeout(t.0, fut).await {
                Ok(r) => r,
                Err(_) => Err(wrap(ActionError::Limit(format!(
                    "timed out after {t} (the step's timeout)"
                )))),
            },
            None => fut.await,
        }
    }

    async fn invoke(
        &self,
        step: &Step,
        spec: &ActionSpec,
        input: Value,
        iteration: Option<usize>,
        attempt: u32,
    ) -> Result<Value, StepError> {
        let idempotency_key = idempotency_key(&self.run_id, step, iteration);
        let site = CallSite {
            step,
            spec,
            input: &input,
            idempotency_key: &idempotency_key,
            attempt,
        };
        let interrupted = lock(&self.in_flight).remove(&idempotency_key);
        if let Some(call) = interrupted
            && let Some(adopted) = self.recover(&site, call).await?
        {
            self.record_inventory(spec, &adopted)?;
            return Ok(adopted);
        }
        if !spec.read_only {
            let snapshot = self.snapshot(&site).await?;
            // The journal tracks whole steps; the idempotency key names the item.
            let at = At {
                step: &step.id,
                iteration: None,
            };
            let record = IntentRecord {
                action: &spec.qualified_name(),
                input: &input,
                idempotency_key: &idempotency_key,
                snapshot: snapshot.as_ref(),
                revokes: None,
                repeatable: spec.resume == ResumePolicy::Repeat && spec.captures.is_empty(),
            };
            self.ex
                .journal
                .intent(&self.run_id, at, &record)
                .map_err(|e| StepError::Journal(e.to_string()))?;
            if spec.plugin != "core" {
                lock(&self.unsettled).insert(
                    idempotency_key.clone(),
                    InFlightCall {
                        action: spec.qualified_name(),
                        input: input.clone(),
                        idempotency_key: idempotency_key.clone(),
                        snapshot,
                        captured: Vec::new(),
                        key_id: None,
                        pending_revokes: Vec::new(),
                    },
                );
            }
            crash_point(&step.id, "intent");
        }
        if spec.plugin == "core" {
            return self.core_action(step, spec, &input).await;
        }
        let mut captures = BTreeMap::new();
        for (capture, secret_id) in step.captures.iter() {
            if let Some(target) = self.captures.get(secret_id) {
                captures.insert(capture.clone(), target.clone());
            }
        }
        tracing::info!(
            run = %self.run_id,
            step = %step.id,
            plugin = %spec.plugin,
            action = %spec.action,
            attempt,
            "invoking action"
        );
        let output = match self
            .plugin_call(&site, &spec.action, input.clone(), captures)
            .await
        {
            Err(ActionError::CaptureFailed { message, key_id }) => {
                lock(&self.unsettled).remove(&idempotency_key);
                return Err(self.capture_failed(&site, message, key_id).await);
            }
            r => r.map_err(|error| StepError::Action {
                plugin: spec.plugin.clone(),
                action: spec.action.clone(),
                error,
            })?,
        };
        lock(&self.unsettled).remove(&idempotency_key);
        if !self.opts.dry_run {
            self.record_inventory(spec, &output)?;
        }
        Ok(output)
    }

    /// Calls `action` of the site's plugin, as part of the site's call
    /// (same step, idempotency key and attempt).
    async fn plugin_call(
        &self,
        site: &CallSite<'_>,
        action: &str,
        input: Value,
        captures: BTreeMap<String, CaptureTarget>,
    ) -> Result<Value, ActionError> {
        let call = ActionCall {
            run_id: self.run_id.clone(),
            step_id: site.step.id.clone(),
            attempt: site.attempt,
            idempotency_key: site.idempotency_key.to_owned(),
            plugin: site.spec.plugin.clone(),
            action: action.to_owned(),
            input,
            captures,
            secrets: self.scope.clone(),
        };
        self.ex.runner.invoke(call).await
    }

    /// An action's output may list the credentials it created or saw under
    /// `inventory` (`[{account, key_id, created, expires, consumers, status}]`,
    /// `vendor` defaulting to the plugin): each goes to `rota inventory`.
    /// Plans record nothing.
    fn record_inventory(&self, spec: &ActionSpec, output: &Value) -> Result<(), StepError> {
        let Some(items) = output.get("inventory").and_then(Value::as_array) else {
            return Ok(());
        };
        let mut reports = Vec::with_capacity(items.len());
        for item in items {
            let mut report = item.clone();
            let Some(map) = report.as_object_mut() else {
                return Err(StepError::Invalid(format!(
                    "{}: an inventory entry must be an object, got {}",
                    spec.qualified_name(),
                    type_name(item)
                )));
            };
            map.entry("vendor").or_insert_with(|| json!(spec.plugin));
            map.entry("status").or_insert_with(|| json!("active"));
            reports.push(report);
        }
        if reports.is_empty() {
            return Ok(());
        }
        self.ex
            .journal
            .record_credentials(&self.run_id, &reports)
            .map_err(|e| StepError::Journal(format!("{}: {e}", spec.qualified_name())))
    }

    async fn core_action(&self, step: &Step, spec: &ActionSpec, input: &Value) -> Result<Value, StepError> {
        let field = |name: &str| input.get(name);
        let bad = |msg: String| StepError::Invalid(format!("{}: {msg}", spec.qualified_name()));
        match spec.action.as_str() {
            "assert" => {
                let that = field("that").ok_or_else(|| bad("\"that\" is required".to_owned()))?;
                let Value::Bool(ok) = that else {
                    return Err(bad(format!(
                        "\"that\" must be a boolean, got {}",
                        type_name(that)
                    )));
                };
                if *ok {
                    Ok(json!({}))
                } else {
                    let msg = field("message")
                        .and_then(Value::as_str)
                        .unwrap_or("the condition is false");
                    Err(StepError::Assertion(msg.to_owned()))
                }
            }
            "log" => {
                let message = field("message")
                    .map(|m| m.as_str().map(str::to_owned).unwrap_or_else(|| m.to_string()))
                    .ok_or_else(|| bad("\"message\" is required".to_owned()))?;
                let level = field("level")
                    .and_then(Value::as_str)
                    .unwrap_or("info")
                    .to_owned();
                self.emit(Event::Message {
                    id: step.id.clone(),
                    level,
                    message: self.scope.redact(&message),
                });
                Ok(json!({}))
            }
            "sleep" => {
                let text = field("for")
                    .and_then(Value::as_str)
                    .ok_or_else(|| bad("\"for\" must be a duration".to_owned()))?;
                let d = crate::duration::parse_duration(text).map_err(bad)?;
                if self.opts.dry_run {
                    self.emit(Event::WouldDo {
                        id: step.id.clone(),
                        description: format!("would wait {text}"),
                        input: None,
                    });
                } else {
                    tokio::time::sleep(d).await;
                }
                Ok(json!({}))
            }
            "inventory.record" => {
                let mut report = input.clone();
                if let Some(map) = report.as_object_mut() {
                    map.entry("status").or_insert_with(|| json!("active"));
                }
                if !self.opts.dry_run {
                    self.ex
                        .journal
                        .record_credential(&self.run_id, &report)
                        .map_err(|e| StepError::Journal(e.to_string()))?;
                }
                Ok(json!({}))
            }
            "secret.promote" | "secret.discard" => {
                let handle = field("secret")
                    .and_then(SecretRef::from_json)
                    .ok_or_else(|| bad("\"secret\" must be a secret handle".to_owned()))?;
                let r = if spec.action == "secret.promote" {
                    self.ex.store.promote(&handle)
                } else {
                    self.ex.store.discard(&handle)
                };
                r.map_err(|e| StepError::Secret(e.to_string()))?;
                Ok(json!({"secret": handle.to_json()}))
            }
            other => Err(bad(format!("unknown core action {other}"))),
        }
    }

    async fn manual(
        &self,
        step: &Step,
        spec: Option<&ActionSpec>,
        item: Option<&Value>,
    ) -> Result<Value, StepError> {
        let Some(manual) = &step.manual else {
            return Err(StepError::Invalid("no manual instructions".to_owned()));
        };
        let text = self
            .templates
            .render_text_in(&manual.instructions, &self.render_ctx(item))
            .map_err(|e| self.template_error("manual.instructions", e))?;
        if self.opts.dry_run {
            let asks: Vec<&str> = manual.outputs.keys().map(String::as_str).collect();
            self.emit(Event::WouldDo {
                id: step.id.clone(),
                description: if asks.is_empty() {
                    "would show the manual instructions and wait for the operator".to_owned()
                } else {
                    format!(
                        "would show the manual instructions and ask for: {}",
                        asks.join(", ")
                    )
                },
                input: None,
            });
            return Ok(json!({}));
        }
        let performed = match &self.opts.stand_in {
            Some(hands) => hands
                .perform(&step.id, &self.context(item))
                .await
                .map_err(|e| StepError::NeedsOperator(format!("step {}: {e}", step.id)))?,
            None => None,
        };
        if let Some(p) = &performed {
            self.emit(Event::Message {
                id: step.id.clone(),
                level: "info".to_owned(),
                message: p.note.clone(),
            });
        }
        let (supplied, source) = match &performed {
            Some(p) => (Some(&p.answers), "rehearsal"),
            None => (self.opts.supplied.manual.get(&step.id), "inputs-file"),
        };
        let interactive = self.ex.operator.is_interactive() && performed.is_none();
        let _guard = self.operator_lock.lock().await;
        if interactive {
            let operator = self.ex.operator.clone();
            let (id, t) = (step.id.clone(), text.clone());
            tokio::task::spawn_blocking(move || operator.instructions(&id, &t))
                .await
                .map_err(|e| StepError::NeedsOperator(e.to_string()))?;
        }
        let mut outputs = Map::new();
        for (name, out) in manual.outputs.iter() {
            let value = match supplied.and_then(|s| s.get(name)) {
                Some(v) => self.accept_supplied(step, name, out, v, source)?,
                None if interactive => self.prompt(step, name, out).await?,
                None => {
                    return Err(StepError::NeedsOperator(format!(
                        "step {} is a manual step and needs a value for \"{name}\" ({}), but no one can answer (not a terminal); \
                         supply it in an --inputs file:\n  manual:\n    {}:\n      {name}: <value>",
                        step.id, out.prompt, step.id
                    )));
                }
            };
            outputs.insert(name.clone(), value);
        }
        if manual.outputs.is_empty() {
            match supplied {
                Some(_) => {}
                None if interactive && self.opts.yes => {}
                None if interactive => {
                    let operator = self.ex.operator.clone();
                    let q = format!(
                        "Have you completed \"{}\" as described above?",
                        step.display_name()
                    );
                    let done = tokio::task::spawn_blocking(move || operator.confirm(&q))
                        .await
                        .map_err(|e| StepError::NeedsOperator(e.to_string()))?
                        .map_err(|e| StepError::NeedsOperator(format!("cannot ask: {e}")))?;
                    if !done {
                        return Err(StepError::Declined(format!(
                            "manual step {} was not completed",
                            step.id
                        )));
                    }
                }
                None => {
                    return Err(StepError::NeedsOperator(format!(
                        "step {} is a manual step and no one can confirm it was done (not a terminal); \
                         after doing it, say so in an --inputs file:\n  manual:\n    {}:\n      done: true",
                        step.id, step.id
                    )));
                }
            }
        }
        let outputs = Value::Object(outputs);
        if let Some(spec) = spec {
            check_manual_outputs(spec, &outputs)?;
        }
        Ok(outputs)
    }

    fn accept_supplied(
        &self,
        step: &Step,
        name: &str,
        out: &ManualOutput,
        v: &Value,
        source: &str,
    ) -> Result<Value, StepError> {
        let text = match v {
            Value::String(s) => s.clone(),
            Value::Number(_) | Value::Bool(_) => v.to_string(),
            other => {
                return Err(StepError::Invalid(format!(
                    "manual.{}.{name}: expected a {}, got {}",
                    step.id,
                    out.kind.as_str(),
                    type_name(other)
                )));
            }
        };
        self.typed_answer(step, out, text, source)
            .map_err(|e| StepError::Invalid(format!("manual.{}.{name}: {e}", step.id)))
    }

    async fn prompt(&self, step: &Step, name: &str, out: &ManualOutput) -> Result<Value, StepError> {
        let mut last_error = String::new();
        for _ in 0..3 {
            let operator = self.ex.operator.clone();
            let prompt = if last_error.is_empty() {
                out.prompt.clone()
            } else {
                format!("{last_error}. {}", out.prompt)
            };
            let secret = out.kind == InputType::Secret;
            let answer = tokio::task::spawn_blocking(move || {
                if secret {
                    operator.ask_secret(&prompt)
                } else {
                    operator.ask(&prompt).map(Secret::new)
                }
            })
            .await
            .map_err(|e| StepError::NeedsOperator(e.to_string()))?
            .map_err(|e| StepError::NeedsOperator(format!("cannot read \"{name}\": {e}")))?;
            match self.typed_answer(step, out, answer.expose().to_owned(), "prompt") {
                Ok(v) => return Ok(v),
                Err(e) => last_error = e,
            }
        }
        Err(StepError::Invalid(format!(
            "no valid value for \"{name}\" after 3 tries: {last_error}"
        )))
    }

    fn typed_answer(
        &self,
        step: &Step,
        out: &ManualOutput,
        text: String,
        source: &str,
    ) -> Result<Value, String> {
        let text = Secret::new(text);
        let value = text.expose().trim();
        if let Some(p) = &out.pattern {
            let re = regex::Regex::new(&format!("^(?:{p})$")).map_err(|e| e.to_string())?;
            if !re.is_match(value) {
                return Err(if out.kind == InputType::Secret {
                    format!("the value does not match the expected pattern {p}")
                } else {
                    format!("\"{value}\" does not match {p}")
                });
            }
        }
        match out.kind {
            InputType::Integer => value
                .parse::<i64>()
                .map(Value::from)
                .map_err(|_| format!("\"{value}\" is not an integer")),
            InputType::Boolean => match value {
                "true" | "yes" | "y" => Ok(Value::Bool(true)),
                "false" | "no" | "n" => Ok(Value::Bool(false)),
                _ => Err(format!("\"{value}\" is not yes or no")),
            },
            InputType::Secret => {
                if value.is_empty() {
                    return Err("the value is empty".to_owned());
                }
                let id = out.secret.as_deref().unwrap_or_default();
                let target = self
                    .captures
                    .get(id)
                    .ok_or_else(|| format!("unknown secret \"{id}\""))?;
                let handle = self
                    .scope
                    .capture(
                        "manual",
                        target,
                        Secret::new(value),
                        Provenance {
                            run_id: Some(self.run_id.clone()),
                            step_id: Some(step.id.clone()),
                            source: Some(source.to_owned()),
                            key_id: None,
                            idempotency_key: None,
                        },
                    )
                    .map_err(|e| e.to_string())?;
                Ok(handle.to_json())
            }
            _ => Ok(Value::String(value.to_owned())),
        }
    }
}

/// Checks a manual fallback's outputs against the action's output schema.
fn check_manual_outputs(spec: &ActionSpec, outputs: &Value) -> Result<(), StepError> {
    let Some(props) = core_actions::properties(&spec.output_schema) else {
        return Ok(());
    };
    for (name, v) in outputs.as_object().into_iter().flatten() {
        let Some(prop) = props.get(name) else { continue };
        let ok = if core_actions::takes_secret(prop) {
            SecretRef::from_json(v).is_some()
        } else {
            match core_actions::json_type(prop) {
                Some("string") => v.is_string(),
                Some("integer") => v.is_i64() || v.is_u64(),
                Some("number") => v.is_number(),
                Some("boolean") => v.is_boolean(),
                _ => true,
            }
        };
        if !ok {
            return Err(StepError::Invalid(format!(
                "manual output \"{name}\" does not match {}'s output type",
                spec.qualified_name()
            )));
        }
        // The rest of the property's schema holds too: an answer the action
        // could never have returned (a failed check answered "no" where the
        // action outputs `ok: {const: true}`) must not pass as success.
        if !core_actions::takes_secret(prop)
            && let Ok(schema) = crate::schema::Schema::compile(prop)
            && let Some(failure) = schema.check(v)
        {
            return Err(StepError::Invalid(format!(
                "manual output \"{name}\" is not what {} would return: {}",
                spec.qualified_name(),
                failure.message
            )));
        }
    }
    Ok(())
}

/// Whether a step's `if` refers to `item` (so it must be decided per item).
/// A condition that cannot be analyzed counts as reading it: the per-item
/// path then reports the template error as before.
fn reads_item(cond: &Value) -> bool {
    let Value::String(s) = cond else { return false };
    match crate::template::analyze(s, &Templates::has_helper) {
        Ok((refs, _)) => refs
            .iter()
            .any(|r| r.segments.first().map(String::as_str) == Some("item")),
        Err(_) => true,
    }
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 40 {
        format!("{}...", s.chars().take(40).collect::<String>())
    } else {
        s
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StepPath {
    Core,
    Automated,
    Manual,
    Unavailable,
}

impl StepPath {
    fn label(self) -> &'static str {
        match self {
            StepPath::Core => "core",
            StepPath::Automated => "automated",
            StepPath::Manual => "manual",
            StepPath::Unavailable => "unavailable",
        }
    }
}

enum StepOutcome {
    Skipped,
    Done {
        outputs: Value,
        attempts: u32,
        planned: bool,
    },
}

/// One changing call being made: what the recovery paths need to know.
/// `run/step`, or `run/step/<item index>` for a `for_each` item: stable
/// across attempts and resumes of the same call.
fn idempotency_key(run_id: &str, step: &Step, iteration: Option<usize>) -> String {
    match iteration {
        Some(i) => format!("{run_id}/{}/{i}", step.id),
        None => format!("{run_id}/{}", step.id),
    }
}

/// The step's retry policy, or a single attempt.
fn retry_policy(step: &Step) -> Retry {
    step.retry.clone().unwrap_or(Retry {
        attempts: 1,
        delay: crate::duration::DurationSpec(Duration::from_secs(1)),
        factor: 2.0,
        max_delay: crate::duration::DurationSpec(Duration::from_secs(30)),
        jitter: true,
    })
}

/// Whether a failed call of `spec` may still have been applied at the
/// vendor, so that it must be reconciled before anything else: a changing
/// action that can be reconciled, and an error that does not say the vendor
/// (or the sandbox) refused the request before acting on it.
fn may_have_applied(spec: &ActionSpec, error: &ActionError) -> bool {
    !spec.read_only
        && matches!(spec.resume, ResumePolicy::Reconcile { .. })
        && !matches!(
            error,
            ActionError::InvalidInput(_)
                | ActionError::Unauthorized(_)
                | ActionError::Forbidden(_)
                | ActionError::NotFound(_)
                | ActionError::Conflict(_)
                | ActionError::RateLimited { .. }
                | ActionError::Denied(_)
        )
}

/// A timeout can be retried when repeating cannot double anything: the
/// action changes nothing, or a reconciliation settles the first try.
fn retry_settled(spec: &ActionSpec) -> bool {
    spec.read_only || matches!(spec.resume, ResumePolicy::Reconcile { .. })
}

struct CallSite<'a> {
    step: &'a Step,
    spec: &'a ActionSpec,
    input: &'a Value,
    idempotency_key: &'a str,
    attempt: u32,
}

mod recover;
#[cfg(test)]
mod tests;
