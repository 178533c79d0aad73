//! The executor's record of a run, written as it happens.
//!
//! Design decision: the executor calls a [`Journal`] at every boundary (run
//! start with its resolved inputs and locks, each attempt, the intent of
//! every call that changes something BEFORE the call, each step's end). A
//! journal write that fails stops the run: a change whose intent could not be
//! recorded is never made. `rota-state` implements this trait on SQLite;
//! [`NoJournal`] serves tests and plans.

use serde_json::Value;

use crate::event::{Outcome, StepStatus};
use crate::reconcile::{Reconciled, Revoked};

/// A step, or one `for_each` item of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct At<'a> {
    pub step: &'a str,
    pub iteration: Option<usize>,
}

/// A changing call, announced before it is made.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct IntentRecord<'a> {
    /// `plugin.action`.
    pub action: &'a str,
    /// The rendered input, secrets as handles.
    pub input: &'a Value,
    pub idempotency_key: &'a str,
    /// The output of the action's snapshot action, taken just before the call.
    pub snapshot: Option<&'a Value>,
    /// Set when the call revokes this vendor key ID, an orphan of the call
    /// named by `idempotency_key`, rather than being that call itself.
    pub revokes: Option<&'a str>,
    /// Repeating the call is harmless (`resume: repeat`, no capture, not a
    /// revoke): its intent need not reach the disk before the call, since
    /// losing it to an OS crash only means a resume repeats the call.
    pub repeatable: bool,
}

pub trait Journal: Send + Sync {
    /// The run's inputs are resolved (secrets as handles) and its locks
    /// rendered; the journal takes the locks here. An error stops the run
    /// before any step.
    fn run_started(&self, run_id: &str, inputs: &Value, locks: &[String]) -> Result<(), JournalError>;
    fn step_started(&self, run_id: &str, at: At<'_>, attempt: u32) -> Result<(), JournalError>;
    /// Recorded before a call that changes something.
    fn intent(&self, run_id: &str, at: At<'_>, intent: &IntentRecord<'_>) -> Result<(), JournalError>;
    /// A resume decided what to do with a call the interrupted run left in flight.
    fn reconciled(&self, run_id: &str, at: At<'_>, record: &Reconciled) -> Result<(), JournalError>;
    /// A revoke (announced with [`Journal::intent`]) ended.
    fn revoked(&self, run_id: &str, at: At<'_>, record: &Revoked) -> Result<(), JournalError>;
    fn step_finished(
        &self,
        run_id: &str,
        at: At<'_>,
        status: StepStatus,
        outputs: &Value,
        error: Option<(&str, &str)>,
    ) -> Result<(), JournalError>;
    /// A step that changed nothing started and ended: both records at once
    /// (one write where the journal can), never one without the other.
    fn step_done(
        &self,
        run_id: &str,
        at: At<'_>,
        attempt: u32,
        status: StepStatus,
        outputs: &Value,
        error: Option<(&str, &str)>,
    ) -> Result<(), JournalError> {
        self.step_started(run_id, at, attempt)?;
        self.step_finished(run_id, at, status, outputs, error)
    }
    /// Releases the run's locks.
    fn run_finished(&self, run_id: &str, outcome: Outcome) -> Result<(), JournalError>;
    /// Records a credential the run created or saw in the inventory
    /// (`{vendor, account, key_id, created, expires, consumers, status, secret}`).
    fn record_credential(&self, run_id: &str, report: &Value) -> Result<(), JournalError>;
    /// [`Journal::record_credential`] for every report of one answer, all or
    /// none (one write where the journal can).
    fn record_credentials(&self, run_id: &str, reports: &[Value]) -> Result<(), JournalError> {
        reports.iter().try_for_each(|r| self.record_credential(run_id, r))
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum JournalError {
    /// Another run holds a credential lock.
    #[error("{0}")]
    Locked(String),
    #[error("cannot write the run journal: {0}")]
    Write(String),
}

/// Records nothing.
#[derive(Debug, Default)]
pub struct NoJournal;

impl Journal for NoJournal {
    fn run_started(&self, _: &str, _: &Value, _: &[String]) -> Result<(), JournalError> {
        Ok(())
    }
    fn step_started(&self, _: &str, _: At<'_>, _: u32) -> Result<(), JournalError> {
        Ok(())
    }
    fn intent(&self, _: &str, _: At<'_>, _: &IntentRecord<'_>) -> Result<(), JournalError> {
        Ok(())
    }
    fn reconciled(&self, _: &str, _: At<'_>, _: &Reconciled) -> Result<(), JournalError> {
        Ok(())
    }
    fn revoked(&self, _: &str, _: At<'_>, _: &Revoked) -> Result<(), JournalError> {
        Ok(())
    }
    fn step_finished(
        &self,
        _: &str,
        _: At<'_>,
        _: StepStatus,
        _: &Value,
        _: Option<(&str, &str)>,
    ) -> Result<(), JournalError> {
        Ok(())
    }
    fn run_finished(&self, _: &str, _: Outcome) -> Result<(), JournalError> {
        Ok(())
    }
    fn record_credential(&self, _: &str, _: &Value) -> Result<(), JournalError> {
        Ok(())
    }
}

/// Deterministic crash points for resume tests: with the `crash-points`
/// feature, `ROTA_CRASH_AT=<step>:<phase>` aborts the process (no unwinding,
/// no cleanup: as a kill -9 would) when the run reaches that point. Phases:
/// `start` (step started: journaled, unless the step changes nothing and is
/// journaled whole at its end), `intent` (intent journaled, call not made),
/// `answer` (the vendor's answer carrying a secret for the store is in the
/// host's hands, not yet stored; run-only tokens do not count), `capture`
/// (a secret captured and committed), `revoke` (a revoke's intent
/// journaled, the revoke not made), `end` (step finished and journaled).
/// Inside a `for_each`, the first item to reach the point aborts.
pub fn crash_point(step: &str, phase: &str) {
    #[cfg(feature = "crash-points")]
    if let Ok(at) = std::env::var("ROTA_CRASH_AT")
        && at == format!("{step}:{phase}")
    {
        eprintln!("rota: crash point {at} reached, aborting");
        std::process::abort();
    }
    #[cfg(not(feature = "crash-points"))]
    let _ = (step, phase);
}

/// Deterministic failure injection for tests: with the `crash-points`
/// feature, `ROTA_FAIL_AT=<step>:<what>` makes `what` fail at that step
/// (`capture-commit`: the store refuses to commit a captured secret). Always
/// false in normal builds.
pub fn fail_point(step: &str, what: &str) -> bool {
    #[cfg(feature = "crash-points")]
    if let Ok(at) = std::env::var("ROTA_FAIL_AT")
        && at == format!("{step}:{what}")
    {
        return true;
    }
    let _ = (step, what);
    false
}
