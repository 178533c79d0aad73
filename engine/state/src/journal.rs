//! The run journal: what each run did, step by step, written as it happens.
//!
//! Design decision: the journal is an append-only event list per run
//! (`step_started`, `intent`, `capture`, `reconciled`, `revoked`,
//! `step_finished`, `resumed`, `run_finished`); [`RunRecord`] folds it into
//! per-step state, which is what a resume needs: the steps that finished
//! (with outputs), and for each one in flight, per idempotency key, the last
//! changing call it announced, the secrets captured for it and any revoke
//! of an orphan not known to have finished ([`RunRecord::in_flight_calls`]). Payloads are JSON in which secrets appear only as
//! handles (`{"$secret": "name@3"}`); the journal never sees a value, and
//! the caller is responsible for passing handles, not values.
//!
//! Captures are written by [`crate::SqliteStore`]'s `put` (same transaction
//! as the secret) and attached to the latest started attempt of the step
//! named in the provenance, carrying the capturing call's idempotency key.

use std::collections::BTreeMap;
use std::fmt;

use rota_core::reconcile::{Reconciled, RevokeOutcome, Revoked};
use rota_core::{Provenance, SecretRef};
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::audit::{self, AuditEvent};
use crate::db::{self, Durability, fmt_time, now, parse_time};
use crate::process::{Liveness, ProcessId};
use crate::{State, StateError};

/// Which iteration of a looping step: an index (`for_each` over a list) or a
/// key (over a map). Serialized untagged: `0` or `"acme"`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Iteration {
    Index(u64),
    Key(String),
}

/// A step, or one iteration of a looping step.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct StepKey {
    pub step: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iteration: Option<Iteration>,
}

impl StepKey {
    pub fn new(step: impl Into<String>) -> Self {
        Self {
            step: step.into(),
            iteration: None,
        }
    }

    pub fn at(step: impl Into<String>, iteration: Iteration) -> Self {
        Self {
            step: step.into(),
            iteration: Some(iteration),
        }
    }

    fn iteration_text(&self) -> Option<String> {
        self.iteration.as_ref().map(|i| json!(i).to_string())
    }
}

impl fmt::Display for StepKey {
    /// `mint`, `mint[2]`, `mint["acme"]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.iteration {
            None => write!(f, "{}", self.step),
            Some(Iteration::Index(i)) => write!(f, "{}[{i}]", self.step),
            Some(Iteration::Key(k)) => write!(f, "{}[{}]", self.step, json!(k)),
        }
    }
}

/// What `begin_run` records.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunStart {
    pub run_id: String,
    pub playbook_name: String,
    pub playbook_path: String,
    /// e.g. `sha256:<hex>` of the playbook file.
    pub playbook_digest: String,
    /// The run's inputs, secrets as handles.
    pub inputs: Value,
    /// Plugin name -> digest of the component used.
    pub plugin_digests: BTreeMap<String, String>,
    /// The operator's name when given (the OS user and host are recorded anyway).
    pub operator: Option<String>,
}

/// A call that changes something, recorded BEFORE it is made.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Intent {
    /// `plugin.action`, e.g. `plex.create_client_secret`.
    pub action: String,
    /// The rendered input, secrets as handles.
    pub input: Value,
    pub idempotency_key: Option<String>,
    /// What the action's snapshot action read at the vendor just before the call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<Value>,
    /// Set when this call revokes that vendor key ID, an orphan of the call
    /// named by `idempotency_key`, instead of being that call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revokes: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StepOutcome {
    Succeeded,
    Failed,
    Skipped,
    /// Finished by resume's reconciliation (adopted or redone).
    Recovered,
}

impl StepOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            StepOutcome::Succeeded => "succeeded",
            StepOutcome::Failed => "failed",
            StepOutcome::Skipped => "skipped",
            StepOutcome::Recovered => "recovered",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepError {
    /// A stable machine-readable kind, e.g. `plugin`, `timeout`, `http`.
    pub kind: String,
    /// Human-readable; must not contain secret values.
    pub message: String,
}

/// What `step_finished` records.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepEnd {
    pub outcome: StepOutcome,
    /// The step's outputs, secrets as handles (`Value::Null` when none).
    pub outputs: Value,
    pub error: Option<StepError>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunOutcome {
    Succeeded,
    Failed,
    Aborted,
}

impl RunOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            RunOutcome::Succeeded => "succeeded",
            RunOutcome::Failed => "failed",
            RunOutcome::Aborted => "aborted",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "succeeded" => Some(RunOutcome::Succeeded),
            "failed" => Some(RunOutcome::Failed),
            "aborted" => Some(RunOutcome::Aborted),
            _ => None,
        }
    }
}

/// A secret captured during a step (written by the store's `put`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Capture {
    pub handle: SecretRef,
    /// The vendor's ID of the credential, for adoption or revocation.
    pub key_id: Option<String>,
    pub source: Option<String>,
    /// The capturing call (its item, in a `for_each`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
}

/// What happened, one journal entry.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EventData {
    /// The attempt number is [`JournalEvent::attempt`].
    StepStarted,
    Intent(Intent),
    Capture(Capture),
    /// A resume settled a call the interrupted run left in flight.
    Reconciled(Reconciled),
    /// A revoke announced by an intent (with `revokes`) ended.
    Revoked(Revoked),
    StepFinished(StepEnd),
    Resumed {
        forced: bool,
    },
    RunFinished {
        outcome: RunOutcome,
    },
}

impl EventData {
    pub fn kind(&self) -> &'static str {
        match self {
            EventData::StepStarted => "step_started",
            EventData::Intent(_) => "intent",
            EventData::Capture(_) => "capture",
            EventData::Reconciled(_) => "reconciled",
            EventData::Revoked(_) => "revoked",
            EventData::StepFinished(_) => "step_finished",
            EventData::Resumed { .. } => "resumed",
            EventData::RunFinished { .. } => "run_finished",
        }
    }
}

/// One journal entry as stored.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct JournalEvent {
    pub seq: u64,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub step: Option<StepKey>,
    pub attempt: Option<u32>,
    #[serde(flatten)]
    pub data: EventData,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    /// Not finished and its process is alive (or on another host).
    Running,
    /// Not finished and its process is gone: resumable.
    Interrupted,
    Succeeded,
    Failed,
    Aborted,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Interrupted => "interrupted",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Aborted => "aborted",
        }
    }
}

/// One row of `rota runs list`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RunSummary {
    pub id: String,
    pub playbook_name: String,
    pub playbook_path: String,
    pub playbook_digest: String,
    pub operator: Option<String>,
    pub os_user: String,
    pub host: String,
    /// The process that last ran it (the resuming one after a resume).
    pub pid: u32,
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub finished_at: Option<OffsetDateTime>,
    pub status: RunStatus,
    pub resumes: u32,
}

/// The latest attempt of one step (or iteration).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StepRecord {
    pub key: StepKey,
    pub attempt: u32,
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    /// `None` while in flight.
    pub end: Option<StepEnd>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub finished_at: Option<OffsetDateTime>,
    /// Intents of this attempt, oldest first.
    pub intents: Vec<Intent>,
    /// Secrets captured during this attempt.
    pub captures: Vec<Capture>,
}

impl StepRecord {
    pub fn is_in_flight(&self) -> bool {
        self.end.is_none()
    }

    /// The last call it announced: what a resume must reconcile.
    pub fn last_intent(&self) -> Option<&Intent> {
        self.intents.last()
    }
}

/// Everything the journal knows about a run: `rota runs show` and resume.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RunRecord {
    pub summary: RunSummary,
    pub inputs: Value,
    pub plugin_digests: BTreeMap<String, String>,
    /// Steps in the order they first started, each at its latest attempt.
    pub steps: Vec<StepRecord>,
    /// Captures whose provenance named no started step of this run.
    pub unattached_captures: Vec<Capture>,
    pub events: Vec<JournalEvent>,
}

impl RunRecord {
    pub fn step(&self, key: &StepKey) -> Option<&StepRecord> {
        self.steps.iter().find(|s| &s.key == key)
    }

    /// Steps (or iterations) that finished; a resume does not repeat them.
    pub fn completed(&self) -> impl Iterator<Item = &StepRecord> {
        self.steps.iter().filter(|s| !s.is_in_flight())
    }

    /// Steps started but not finished: what a resume must reconcile.
    pub fn in_flight(&self) -> impl Iterator<Item = &StepRecord> {
        self.steps.iter().filter(|s| s.is_in_flight())
    }

    /// The changing calls an unfinished step left in flight, one per
    /// idempotency key (so each `for_each` item has its own), in the order
    /// they were first announced. It reads every attempt since the step last
    /// finished (an earlier resume may have adopted or redone some calls and
    /// been interrupted in turn): per key, the latest intent of the call
    /// itself, the captures after it, and the revokes whose end is not recorded.
    pub fn in_flight_calls(&self, key: &StepKey) -> Vec<InFlightCalls> {
        let since = self
            .events
            .iter()
            .rposition(|e| e.step.as_ref() == Some(key) && matches!(e.data, EventData::StepFinished(_)))
            .map_or(0, |i| i + 1);
        let mut out: Vec<InFlightCalls> = Vec::new();
        let mut latest: Option<usize> = None;
        for ev in self
            .events
            .iter()
            .skip(since)
            .filter(|e| e.step.as_ref() == Some(key))
        {
            let slot = |out: &mut Vec<InFlightCalls>, k: &str| -> usize {
                match out.iter().position(|c| c.idempotency_key == k) {
                    Some(i) => i,
                    None => {
                        out.push(InFlightCalls {
                            idempotency_key: k.to_owned(),
                            call: None,
                            captures: Vec::new(),
                            pending_revokes: Vec::new(),
                        });
                        out.len() - 1
                    }
                }
            };
            match &ev.data {
                EventData::Intent(intent) => {
                    let Some(k) = &intent.idempotency_key else {
                        continue;
                    };
                    let i = slot(&mut out, k);
                    if intent.revokes.is_some() {
                        out[i].pending_revokes.push(intent.clone());
                    } else {
                        out[i].call = Some(intent.clone());
                        out[i].captures.clear();
                        latest = Some(i);
                    }
                }
                EventData::Capture(capture) => {
                    let i = match &capture.idempotency_key {
                        Some(k) => Some(slot(&mut out, k)),
                        // Journals written before captures carried their key.
                        None => latest,
                    };
                    if let Some(i) = i {
                        out[i].captures.push(capture.clone());
                    }
                }
                EventData::Revoked(r) if r.outcome != RevokeOutcome::Failed => {
                    if let Some(c) = out.iter_mut().find(|c| c.idempotency_key == r.idempotency_key) {
                        c.pending_revokes.retain(|p| {
                            !(p.revokes.as_deref() == Some(r.key_id.as_str()) && p.action == r.action)
                        });
                    }
                }
                _ => {}
            }
        }
        out
    }

    /// Why this run cannot be resumed with the given playbook and plugin
    /// digests (empty: it can). Digest changes are listed so the caller can
    /// allow them with `--force`; a finished or still running run never resumes.
    pub fn resume_blockers(
        &self,
        playbook_digest: &str,
        plugin_digests: &BTreeMap<String, String>,
    ) -> Vec<ResumeBlocker> {
        let mut out = Vec::new();
        match self.summary.status {
            RunStatus::Interrupted => {}
            RunStatus::Running => out.push(ResumeBlocker::StillRunning {
                pid: self.summary.pid,
                host: self.summary.host.clone(),
            }),
            other => out.push(ResumeBlocker::Finished(other)),
        }
        if self.summary.playbook_digest != playbook_digest {
            out.push(ResumeBlocker::PlaybookChanged {
                recorded: self.summary.playbook_digest.clone(),
                now: playbook_digest.to_owned(),
            });
        }
        for (plugin, recorded) in &self.plugin_digests {
            let now = plugin_digests.get(plugin);
            if now != Some(recorded) {
                out.push(ResumeBlocker::PluginChanged {
                    plugin: plugin.clone(),
                    recorded: recorded.clone(),
                    now: now.cloned(),
                });
            }
        }
        out
    }
}

/// What a resume must settle for one idempotency key of an unfinished step.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct InFlightCalls {
    pub idempotency_key: String,
    /// The latest intent of the call itself. `None` only in a journal that
    /// recorded a revoke for a call it never announced.
    pub call: Option<Intent>,
    /// Secrets captured for the call after that intent, oldest first.
    pub captures: Vec<Capture>,
    /// Revoke intents (with `revokes`) whose success is not recorded.
    pub pending_revokes: Vec<Intent>,
}

/// One reason a run cannot resume.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum ResumeBlocker {
    Finished(RunStatus),
    StillRunning {
        pid: u32,
        host: String,
    },
    PlaybookChanged {
        recorded: String,
        now: String,
    },
    PluginChanged {
        plugin: String,
        recorded: String,
        now: Option<String>,
    },
}

impl ResumeBlocker {
    /// Digest changes may be overridden with `--force`; the others never.
    pub fn forceable(&self) -> bool {
        matches!(
            self,
            ResumeBlocker::PlaybookChanged { .. } | ResumeBlocker::PluginChanged { .. }
        )
    }
}

impl fmt::Display for ResumeBlocker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResumeBlocker::Finished(s) => write!(f, "the run already finished ({})", s.as_str()),
            ResumeBlocker::StillRunning { pid, host } => {
                write!(f, "the run is still running (pid {pid} on {host})")
            }
            ResumeBlocker::PlaybookChanged { recorded, now } => {
                write!(
                    f,
                    "the playbook changed since the run started ({recorded} -> {now})"
                )
            }
            ResumeBlocker::PluginChanged {
                plugin,
                recorded,
                now,
            } => match now {
                Some(now) => write!(
                    f,
                    "plugin {plugin} changed since the run started ({recorded} -> {now})"
                ),
                None => write!(f, "plugin {plugin} (digest {recorded}) is no longer available"),
            },
        }
    }
}

fn journal_err(run_id: &str, reason: impl Into<String>) -> StateError {
    StateError::Journal {
        run_id: run_id.to_owned(),
        reason: reason.into(),
    }
}

/// Fails unless the run exists and has not finished.
fn ensure_open_run(c: &Connection, run_id: &str) -> Result<(), StateError> {
    let outcome: Option<Option<String>> = c
        .prepare_cached("SELECT outcome FROM runs WHERE id = ?1")?
        .query_row([run_id], |r| r.get(0))
        .optional()?;
    match outcome {
        None => Err(StateError::UnknownRun(run_id.to_owned())),
        Some(Some(o)) => Err(journal_err(run_id, format!("the run already finished ({o})"))),
        Some(None) => Ok(()),
    }
}

/// Fails while the run's recorded process is alive and is not `me`.
fn ensure_not_running_elsewhere(c: &Connection, run_id: &str, me: &ProcessId) -> Result<(), StateError> {
    let holder = db::row(
        c,
        "SELECT pid, host, process_start FROM runs WHERE id = ?1",
        [run_id],
        |r| {
            Ok(ProcessId {
                pid: r.get(0)?,
                host: r.get(1)?,
                start: r.get(2)?,
            })
        },
    )?;
    if &holder != me && holder.liveness() != Liveness::Dead {
        return Err(journal_err(
            run_id,
            format!("it is still running (pid {} on {})", holder.pid, holder.host),
        ));
    }
    Ok(())
}

/// The latest attempt of `key`, and whether it finished.
/// The attempt of a step that is in flight, or a journal error saying why not.
fn in_flight_attempt(
    c: &Connection,
    run_id: &str,
    key: &StepKey,
    why: impl FnOnce() -> String,
) -> Result<u32, StateError> {
    match latest_attempt(c, run_id, key)? {
        Some((attempt, false)) => Ok(attempt),
        _ => Err(journal_err(run_id, why())),
    }
}

fn latest_attempt(c: &Connection, run_id: &str, key: &StepKey) -> Result<Option<(u32, bool)>, StateError> {
    let iteration = key.iteration_text();
    let started: Option<(i64, i64)> = c
        .prepare_cached(
            "SELECT seq, attempt FROM journal WHERE run_id = ?1 AND kind = 'step_started'
               AND step_id = ?2 AND iteration IS ?3 ORDER BY seq DESC LIMIT 1",
        )?
        .query_row(params![run_id, key.step, iteration], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()?;
    let Some((seq, attempt)) = started else {
        return Ok(None);
    };
    let finished: i64 = c
        .prepare_cached(
            "SELECT COUNT(*) FROM journal WHERE run_id = ?1 AND kind = 'step_finished'
               AND step_id = ?2 AND iteration IS ?3 AND seq > ?4",
        )?
        .query_row(params![run_id, key.step, iteration, seq], |r| r.get(0))?;
    Ok(Some((attempt as u32, finished > 0)))
}

/// A step's `step_started` row, in an open run, attempts counting from 1.
fn insert_start(c: &Connection, run_id: &str, key: &StepKey, attempt: u32) -> Result<(), StateError> {
    ensure_open_run(c, run_id)?;
    if attempt == 0 {
        return Err(journal_err(run_id, format!("step {key}: attempts count from 1")));
    }
    insert_event(
        c,
        run_id,
        Some(key),
        Some(attempt),
        "step_started",
        &json!({"attempt": attempt}),
    )
    .map(|_| ())
}

/// A step's `step_finished` row for `attempt`.
fn insert_end(
    c: &Connection,
    run_id: &str,
    key: &StepKey,
    attempt: u32,
    end: &StepEnd,
) -> Result<(), StateError> {
    insert_event(
        c,
        run_id,
        Some(key),
        Some(attempt),
        "step_finished",
        &serde_json::to_value(end)?,
    )
    .map(|_| ())
}

fn insert_event(
    c: &Connection,
    run_id: &str,
    key: Option<&StepKey>,
    attempt: Option<u32>,
    kind: &str,
    payload: &Value,
) -> Result<u64, StateError> {
    c.prepare_cached(
        "INSERT INTO journal (run_id, at, kind, step_id, iteration, attempt, payload)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        run_id,
        fmt_time(now()),
        kind,
        key.map(|k| k.step.clone()),
        key.and_then(StepKey::iteration_text),
        attempt,
        payload.to_string()
    ])?;
    Ok(c.last_insert_rowid() as u64)
}

/// Called by the store's `put` inside its transaction. With `step`, the
/// capture attaches to that exact step/iteration's latest attempt; without,
/// to the latest started attempt of `provenance.step_id`, whatever its iteration.
pub(crate) fn record_capture(
    c: &Connection,
    run_id: &str,
    handle: &SecretRef,
    provenance: &Provenance,
    step: Option<&StepKey>,
) -> Result<(), StateError> {
    let step: Option<(String, Option<String>, Option<i64>)> = match (step, &provenance.step_id) {
        (Some(key), _) => Some((
            key.step.clone(),
            key.iteration_text(),
            latest_attempt(c, run_id, key)?.map(|(a, _)| i64::from(a)),
        )),
        (None, None) => None,
        (None, Some(step_id)) => c
            .query_row(
                "SELECT step_id, iteration, attempt FROM journal WHERE run_id = ?1 AND kind = 'step_started'
                   AND step_id = ?2 ORDER BY seq DESC LIMIT 1",
                params![run_id, step_id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?
            .or_else(|| Some((step_id.clone(), None, None))),
    };
    let payload = json!({
        "handle": handle.to_string(),
        "key_id": provenance.key_id,
        "source": provenance.source,
        "idempotency_key": provenance.idempotency_key,
    });
    let (step_id, iteration, attempt) = match step {
        Some((s, i, a)) => (Some(s), i, a),
        None => (None, None, None),
    };
    db::exec(
        c,
        "INSERT INTO journal (run_id, at, kind, step_id, iteration, attempt, payload)
         VALUES (?1, ?2, 'capture', ?3, ?4, ?5, ?6)",
        params![
            run_id,
            fmt_time(now()),
            step_id,
            iteration,
            attempt,
            payload.to_string()
        ],
    )?;
    Ok(())
}

impl State {
    /// Records a new run (and audits `run.start`). The run belongs to this
    /// process until it finishes or another process resumes it.
    pub fn begin_run(&self, start: &RunStart) -> Result<(), StateError> {
        // Ordered: until the run's first synced write nothing has changed at
        // a vendor, and that write makes this record durable with it.
        self.db.write_with(Durability::Ordered, |tx| {
            let exists: i64 = db::row(
                tx,
                "SELECT COUNT(*) FROM runs WHERE id = ?1",
                [&start.run_id],
                |r| r.get(0),
            )?;
            if exists > 0 {
                return Err(StateError::DuplicateRun(start.run_id.clone()));
            }
            let operator = start.operator.clone().or_else(|| self.actor.operator.clone());
            db::exec(
                tx,
                "INSERT INTO runs (id, playbook_name, playbook_path, playbook_digest, inputs, plugin_digests,
                                   operator, os_user, host, pid, process_start, started_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                params![
                    start.run_id,
                    start.playbook_name,
                    start.playbook_path,
                    start.playbook_digest,
                    start.inputs.to_string(),
                    serde_json::to_string(&start.plugin_digests)?,
                    operator,
                    self.actor.os_user,
                    self.actor.host,
                    self.process.pid,
                    self.process.start,
                    fmt_time(now())
                ],
            )?;
            audit::append(
                self,
                tx,
                &AuditEvent::new("run.start")
                    .run_id(Some(&start.run_id))
                    .detail(json!({
                        "playbook": start.playbook_name,
                        "playbook_digest": start.playbook_digest,
                        "operator": operator,
                    })),
            )?;
            Ok(())
        })
    }

    /// A step (or iteration) begins its `attempt` (1-based).
    pub fn step_started(&self, run_id: &str, key: &StepKey, attempt: u32) -> Result<(), StateError> {
        self.db.write_with(Durability::Ordered, |tx| {
            insert_start(tx, run_id, key, attempt)?;
            Ok(())
        })
    }

    /// Records a changing call BEFORE it is made, synced. The step must be
    /// in flight.
    pub fn intent(&self, run_id: &str, key: &StepKey, intent: &Intent) -> Result<(), StateError> {
        self.intent_with(run_id, key, intent, Durability::Synced)
    }

    /// [`State::intent`] with a durability: [`Durability::Synced`] unless
    /// repeating the call is harmless, when an intent lost to an OS crash
    /// only means the resume repeats the call.
    pub fn intent_with(
        &self,
        run_id: &str,
        key: &StepKey,
        intent: &Intent,
        durability: Durability,
    ) -> Result<(), StateError> {
        self.db.write_with(durability, |tx| {
            ensure_open_run(tx, run_id)?;
            let attempt = in_flight_attempt(tx, run_id, key, || {
                format!("intent for step {key}, which is not in flight")
            })?;
            insert_event(
                tx,
                run_id,
                Some(key),
                Some(attempt),
                "intent",
                &serde_json::to_value(intent)?,
            )?;
            Ok(())
        })
    }

    /// A resume settled a call the interrupted run left in flight. The step
    /// must be in flight.
    pub fn reconciled(&self, run_id: &str, key: &StepKey, record: &Reconciled) -> Result<(), StateError> {
        // Lost to an OS crash, the resume decides again from the vendor's state.
        self.step_event(
            run_id,
            key,
            "reconciled",
            &serde_json::to_value(record)?,
            Durability::Ordered,
        )
    }

    /// A revoke announced by an intent ended. The step must be in flight.
    pub fn revoked(&self, run_id: &str, key: &StepKey, record: &Revoked) -> Result<(), StateError> {
        self.step_event(
            run_id,
            key,
            "revoked",
            &serde_json::to_value(record)?,
            Durability::Synced,
        )
    }

    fn step_event(
        &self,
        run_id: &str,
        key: &StepKey,
        kind: &str,
        payload: &Value,
        durability: Durability,
    ) -> Result<(), StateError> {
        self.db.write_with(durability, |tx| {
            ensure_open_run(tx, run_id)?;
            let attempt = in_flight_attempt(tx, run_id, key, || {
                format!("{kind} for step {key}, which is not in flight")
            })?;
            insert_event(tx, run_id, Some(key), Some(attempt), kind, payload)?;
            Ok(())
        })
    }

    /// A step (or iteration) ends. The step must be in flight.
    pub fn step_finished(&self, run_id: &str, key: &StepKey, end: &StepEnd) -> Result<(), StateError> {
        // Lost to an OS crash, the step is in flight again: the resume
        // settles it (its captured secret, if any, was committed synced).
        self.db.write_with(Durability::Ordered, |tx| {
            ensure_open_run(tx, run_id)?;
            let attempt = in_flight_attempt(tx, run_id, key, || {
                format!("step {key} finished but is not in flight")
            })?;
            insert_end(tx, run_id, key, attempt, end)
        })
    }

    /// A step (or iteration) that changed nothing started its `attempt` and
    /// ended: both records in one transaction.
    pub fn step_done(
        &self,
        run_id: &str,
        key: &StepKey,
        attempt: u32,
        end: &StepEnd,
    ) -> Result<(), StateError> {
        self.db.write_with(Durability::Ordered, |tx| {
            insert_start(tx, run_id, key, attempt)?;
            insert_end(tx, run_id, key, attempt, end)
        })
    }

    /// The run ends (and `run.finish` is audited). Locks are NOT released
    /// here: call [`State::release_locks`].
    pub fn run_finished(&self, run_id: &str, outcome: RunOutcome) -> Result<(), StateError> {
        self.db.write(|tx| {
            ensure_open_run(tx, run_id)?;
            db::exec(
                tx,
                "UPDATE runs SET outcome = ?2, finished_at = ?3 WHERE id = ?1",
                params![run_id, outcome.as_str(), fmt_time(now())],
            )?;
            insert_event(
                tx,
                run_id,
                None,
                None,
                "run_finished",
                &json!({"outcome": outcome}),
            )?;
            audit::append(
                self,
                tx,
                &AuditEvent::new("run.finish")
                    .run_id(Some(run_id))
                    .detail(json!({"outcome": outcome})),
            )?;
            Ok(())
        })
    }

    /// `rota runs abort`: after the caller ran the compensation, marks the
    /// run `aborted` and releases its locks in one transaction. Refused while
    /// the run's process is alive (unless it is this process). Returns how
    /// many locks were released.
    pub fn abort_run(&self, run_id: &str) -> Result<usize, StateError> {
        self.db.write(|tx| {
            ensure_open_run(tx, run_id)?;
            ensure_not_running_elsewhere(tx, run_id, &self.process)?;
            db::exec(
                tx,
                "UPDATE runs SET outcome = 'aborted', finished_at = ?2 WHERE id = ?1",
                params![run_id, fmt_time(now())],
            )?;
            insert_event(
                tx,
                run_id,
                None,
                None,
                "run_finished",
                &json!({"outcome": RunOutcome::Aborted}),
            )?;
            let released = db::exec(tx, "DELETE FROM locks WHERE run_id = ?1", [run_id])?;
            audit::append(
                self,
                tx,
                &AuditEvent::new("run.abort")
                    .run_id(Some(run_id))
                    .detail(json!({"locks_released": released})),
            )?;
            Ok(released)
        })
    }

    /// This process takes over an interrupted run (journals `resumed`,
    /// audits `run.resume`). Refused if the run finished or its process is
    /// still alive. Digest checks are the caller's: see
    /// [`RunRecord::resume_blockers`]; `forced` records that they were overridden.
    pub fn mark_resumed(&self, run_id: &str, forced: bool) -> Result<(), StateError> {
        self.db.write(|tx| {
            ensure_open_run(tx, run_id)?;
            ensure_not_running_elsewhere(tx, run_id, &self.process)?;
            db::exec(tx,
                "UPDATE runs SET pid = ?2, host = ?3, process_start = ?4, resumes = resumes + 1 WHERE id = ?1",
                params![run_id, self.process.pid, self.process.host, self.process.start],
            )?;
            insert_event(tx, run_id, None, None, "resumed", &json!({"forced": forced}))?;
            audit::append(
                self,
                tx,
                &AuditEvent::new("run.resume")
                    .run_id(Some(run_id))
                    .detail(json!({"forced": forced})),
            )?;
            Ok(())
        })
    }

    /// All runs, newest first.
    pub fn list_runs(&self) -> Result<Vec<RunSummary>, StateError> {
        self.db.with(|c| {
            let mut stmt = c.prepare_cached(&format!("{SUMMARY_SELECT} ORDER BY started_at DESC, id"))?;
            let rows = stmt.query_map([], summary_row)?;
            let mut out = Vec::new();
            for row in rows {
                out.push(row?.into_summary()?);
            }
            Ok(out)
        })
    }

    /// The full record of one run.
    pub fn load_run(&self, run_id: &str) -> Result<RunRecord, StateError> {
        self.db.with(|c| {
            let raw = c
                .query_row(&format!("{SUMMARY_SELECT} WHERE id = ?1"), [run_id], summary_row)
                .optional()?
                .ok_or_else(|| StateError::UnknownRun(run_id.to_owned()))?;
            let inputs: Value = serde_json::from_str(&raw.inputs)?;
            let plugin_digests: BTreeMap<String, String> = serde_json::from_str(&raw.plugin_digests)?;
            let summary = raw.into_summary()?;
            let mut stmt = c.prepare_cached(
                "SELECT seq, at, kind, step_id, iteration, attempt, payload FROM journal
                 WHERE run_id = ?1 ORDER BY seq",
            )?;
            let rows = stmt.query_map([run_id], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, Option<String>>(3)?,
                    r.get::<_, Option<String>>(4)?,
                    r.get::<_, Option<i64>>(5)?,
                    r.get::<_, String>(6)?,
                ))
            })?;
            let mut events = Vec::new();
            for row in rows {
                let (seq, at, kind, step_id, iteration, attempt, payload) = row?;
                let step = match step_id {
                    None => None,
                    Some(step) => Some(StepKey {
                        step,
                        iteration: iteration.as_deref().map(serde_json::from_str).transpose()?,
                    }),
                };
                let payload: Value = serde_json::from_str(&payload)?;
                events.push(JournalEvent {
                    seq: seq as u64,
                    at: parse_time(&at)?,
                    step,
                    attempt: attempt.map(|a| a as u32),
                    data: parse_event(run_id, &kind, payload)?,
                });
            }
            Ok(fold(summary, inputs, plugin_digests, events))
        })
    }
}

fn parse_event(run_id: &str, kind: &str, payload: Value) -> Result<EventData, StateError> {
    let bad = |what: &str| journal_err(run_id, format!("journal entry {kind} is unreadable: {what}"));
    Ok(match kind {
        "step_started" => EventData::StepStarted,
        "intent" => EventData::Intent(serde_json::from_value(payload)?),
        "capture" => EventData::Capture(Capture {
            handle: payload
                .get("handle")
                .and_then(Value::as_str)
                .and_then(|h| h.parse().ok())
                .ok_or_else(|| bad("no handle"))?,
            key_id: payload.get("key_id").and_then(Value::as_str).map(str::to_owned),
            source: payload.get("source").and_then(Value::as_str).map(str::to_owned),
            idempotency_key: payload
                .get("idempotency_key")
                .and_then(Value::as_str)
                .map(str::to_owned),
        }),
        "reconciled" => EventData::Reconciled(serde_json::from_value(payload)?),
        "revoked" => EventData::Revoked(serde_json::from_value(payload)?),
        "step_finished" => EventData::StepFinished(serde_json::from_value(payload)?),
        "resumed" => EventData::Resumed {
            forced: payload.get("forced").and_then(Value::as_bool).unwrap_or(false),
        },
        "run_finished" => EventData::RunFinished {
            outcome: payload
                .get("outcome")
                .and_then(Value::as_str)
                .and_then(RunOutcome::parse)
                .ok_or_else(|| bad("no outcome"))?,
        },
        other => return Err(bad(&format!("unknown kind {other:?}"))),
    })
}

fn fold(
    summary: RunSummary,
    inputs: Value,
    plugin_digests: BTreeMap<String, String>,
    events: Vec<JournalEvent>,
) -> RunRecord {
    let mut steps: Vec<StepRecord> = Vec::new();
    let mut unattached = Vec::new();
    for ev in &events {
        let idx = ev
            .step
            .as_ref()
            .and_then(|k| steps.iter().position(|s| &s.key == k));
        match (&ev.data, &ev.step) {
            (EventData::StepStarted, Some(key)) => {
                let fresh = StepRecord {
                    key: key.clone(),
                    attempt: ev.attempt.unwrap_or(1),
                    started_at: ev.at,
                    end: None,
                    finished_at: None,
                    intents: Vec::new(),
                    captures: Vec::new(),
                };
                match idx {
                    Some(i) => steps[i] = fresh,
                    None => steps.push(fresh),
                }
            }
            (EventData::Intent(intent), Some(_)) => {
                if let Some(i) = idx {
                    steps[i].intents.push(intent.clone());
                }
            }
            (EventData::Capture(capture), Some(_)) => match idx {
                Some(i) if ev.attempt == Some(steps[i].attempt) => steps[i].captures.push(capture.clone()),
                _ => unattached.push(capture.clone()),
            },
            (EventData::Capture(capture), None) => unattached.push(capture.clone()),
            (EventData::StepFinished(end), Some(_)) => {
                if let Some(i) = idx {
                    steps[i].end = Some(end.clone());
                    steps[i].finished_at = Some(ev.at);
                }
            }
            _ => {}
        }
    }
    RunRecord {
        summary,
        inputs,
        plugin_digests,
        steps,
        unattached_captures: unattached,
        events,
    }
}

const SUMMARY_SELECT: &str =
    "SELECT id, playbook_name, playbook_path, playbook_digest, operator, os_user, host,
    pid, process_start, started_at, finished_at, outcome, resumes, inputs, plugin_digests FROM runs";

struct RawRun {
    id: String,
    playbook_name: String,
    playbook_path: String,
    playbook_digest: String,
    operator: Option<String>,
    os_user: String,
    host: String,
    pid: u32,
    process_start: String,
    started_at: String,
    finished_at: Option<String>,
    outcome: Option<String>,
    resumes: u32,
    inputs: String,
    plugin_digests: String,
}

fn summary_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawRun> {
    Ok(RawRun {
        id: r.get(0)?,
        playbook_name: r.get(1)?,
        playbook_path: r.get(2)?,
        playbook_digest: r.get(3)?,
        operator: r.get(4)?,
        os_user: r.get(5)?,
        host: r.get(6)?,
        pid: r.get(7)?,
        process_start: r.get(8)?,
        started_at: r.get(9)?,
        finished_at: r.get(10)?,
        outcome: r.get(11)?,
        resumes: r.get(12)?,
        inputs: r.get(13)?,
        plugin_digests: r.get(14)?,
    })
}

impl RawRun {
    fn into_summary(self) -> Result<RunSummary, StateError> {
        let status = match self.outcome.as_deref() {
            Some(o) => match RunOutcome::parse(o) {
                Some(RunOutcome::Succeeded) => RunStatus::Succeeded,
                Some(RunOutcome::Failed) => RunStatus::Failed,
                Some(RunOutcome::Aborted) => RunStatus::Aborted,
                None => return Err(journal_err(&self.id, format!("unknown outcome {o:?}"))),
            },
            None => {
                let process = ProcessId {
                    pid: self.pid,
                    host: self.host.clone(),
                    start: self.process_start.clone(),
                };
                if process.is_dead() {
                    RunStatus::Interrupted
                } else {
                    RunStatus::Running
                }
            }
        };
        Ok(RunSummary {
            started_at: parse_time(&self.started_at)?,
            finished_at: self.finished_at.as_deref().map(parse_time).transpose()?,
            id: self.id,
            playbook_name: self.playbook_name,
            playbook_path: self.playbook_path,
            playbook_digest: self.playbook_digest,
            operator: self.operator,
            os_user: self.os_user,
            host: self.host,
            pid: self.pid,
            status,
            resumes: self.resumes,
        })
    }
}
