//! The run journal and credential locks on the embedded state: the CLI's
//! implementation of `rota_core::journal::Journal`.
//!
//! Design decision: the executor knows only the trait; this adapter owns
//! everything about the state's types (step keys, outcomes, lock waiting), so
//! a different store would replace this one file.

use std::collections::BTreeMap;
use std::sync::Arc;

use rota_core::event::{Outcome, StepStatus};
use rota_core::journal::{At, IntentRecord, Journal, JournalError};
use rota_core::reconcile::{Reconciled, Revoked};
use rota_state::{
    Durability, Intent, Iteration, LockWait, RunOutcome, RunStart, State, StateError, StepEnd, StepKey,
    StepOutcome,
};
use serde_json::Value;

pub struct StateJournal {
    pub state: Arc<State>,
    pub playbook_name: String,
    pub playbook_path: String,
    pub playbook_digest: String,
    pub plugin_digests: BTreeMap<String, String>,
    pub wait: LockWait,
    /// Continuing an interrupted run: the run exists, only its locks are retaken.
    pub resuming: bool,
    /// `rota runs abort`: the run ends `aborted`, not `failed`.
    pub aborting: bool,
}

fn key(at: At<'_>) -> StepKey {
    match at.iteration {
        Some(i) => StepKey::at(at.step, Iteration::Index(i as u64)),
        None => StepKey::new(at.step),
    }
}

fn write(e: StateError) -> JournalError {
    JournalError::Write(e.to_string())
}

pub fn outcome_of(status: StepStatus) -> StepOutcome {
    match status {
        StepStatus::Succeeded | StepStatus::Planned => StepOutcome::Succeeded,
        StepStatus::Failed => StepOutcome::Failed,
        StepStatus::Skipped => StepOutcome::Skipped,
        StepStatus::Recovered => StepOutcome::Recovered,
    }
}

pub fn status_of(outcome: StepOutcome) -> StepStatus {
    match outcome {
        StepOutcome::Succeeded => StepStatus::Succeeded,
        StepOutcome::Failed => StepStatus::Failed,
        StepOutcome::Skipped => StepStatus::Skipped,
        StepOutcome::Recovered => StepStatus::Recovered,
    }
}

impl Journal for StateJournal {
    fn run_started(&self, run_id: &str, inputs: &Value, locks: &[String]) -> Result<(), JournalError> {
        if !self.resuming {
            self.state
                .begin_run(&RunStart {
                    run_id: run_id.to_owned(),
                    playbook_name: self.playbook_name.clone(),
                    playbook_path: self.playbook_path.clone(),
                    playbook_digest: self.playbook_digest.clone(),
                    inputs: inputs.clone(),
                    plugin_digests: self.plugin_digests.clone(),
                    operator: None,
                })
                .map_err(write)?;
        }
        let mut on_wait = |holder: &rota_state::LockHolder| {
            eprintln!(
                "waiting for lock {:?}, held by run {} (pid {} on {}); --no-wait fails at once",
                holder.name, holder.run_id, holder.pid, holder.host
            );
        };
        match self.state.acquire_locks(locks, run_id, self.wait, &mut on_wait) {
            Ok(()) => Ok(()),
            Err(e @ (StateError::LockHeld(_) | StateError::LockTimeout(_))) => {
                // The run never started a step: record it as failed so it is
                // not mistaken for an interrupted one.
                let _ = self.state.run_finished(run_id, RunOutcome::Failed);
                Err(JournalError::Locked(e.to_string()))
            }
            Err(e) => Err(write(e)),
        }
    }

    fn step_started(&self, run_id: &str, at: At<'_>, attempt: u32) -> Result<(), JournalError> {
        self.state.step_started(run_id, &key(at), attempt).map_err(write)
    }

    fn intent(&self, run_id: &str, at: At<'_>, record: &IntentRecord<'_>) -> Result<(), JournalError> {
        let intent = Intent {
            action: record.action.to_owned(),
            input: record.input.clone(),
            idempotency_key: Some(record.idempotency_key.to_owned()),
            snapshot: record.snapshot.cloned(),
            revokes: record.revokes.map(str::to_owned),
        };
        let durability = if record.repeatable {
            Durability::Ordered
        } else {
            Durability::Synced
        };
        self.state
            .intent_with(run_id, &key(at), &intent, durability)
            .map_err(write)
    }

    fn reconciled(&self, run_id: &str, at: At<'_>, record: &Reconciled) -> Result<(), JournalError> {
        self.state.reconciled(run_id, &key(at), record).map_err(write)
    }

    fn revoked(&self, run_id: &str, at: At<'_>, record: &Revoked) -> Result<(), JournalError> {
        self.state.revoked(run_id, &key(at), record).map_err(write)
    }

    fn step_finished(
        &self,
        run_id: &str,
        at: At<'_>,
        status: StepStatus,
        outputs: &Value,
        error: Option<(&str, &str)>,
    ) -> Result<(), JournalError> {
        self.state
            .step_finished(run_id, &key(at), &step_end(status, outputs, error))
            .map_err(write)
    }

    fn step_done(
        &self,
        run_id: &str,
        at: At<'_>,
        attempt: u32,
        status: StepStatus,
        outputs: &Value,
        error: Option<(&str, &str)>,
    ) -> Result<(), JournalError> {
        self.state
            .step_done(run_id, &key(at), attempt, &step_end(status, outputs, error))
            .map_err(write)
    }

    fn run_finished(&self, run_id: &str, outcome: Outcome) -> Result<(), JournalError> {
        let outcome = match outcome {
            _ if self.aborting => RunOutcome::Aborted,
            Outcome::Succeeded | Outcome::Planned => RunOutcome::Succeeded,
            Outcome::Failed | Outcome::Interrupted => RunOutcome::Failed,
            Outcome::Declined => RunOutcome::Aborted,
        };
        self.state.run_finished(run_id, outcome).map_err(write)?;
        self.state.release_locks(run_id).map(|_| ()).map_err(write)
    }

    fn record_credential(&self, run_id: &str, report: &Value) -> Result<(), JournalError> {
        self.record_credentials(run_id, std::slice::from_ref(report))
    }

    fn record_credentials(&self, _run_id: &str, reports: &[Value]) -> Result<(), JournalError> {
        let reports = reports
            .iter()
            .map(|r| serde_json::from_value::<rota_state::CredentialReport>(r.clone()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| JournalError::Write(format!("not a credential report: {e}")))?;
        self.state.inventory_record_all(&reports).map_err(write)
    }
}

fn step_end(status: StepStatus, outputs: &Value, error: Option<(&str, &str)>) -> StepEnd {
    StepEnd {
        outcome: outcome_of(status),
        outputs: outputs.clone(),
        error: error.map(|(kind, message)| rota_state::StepError {
            kind: kind.to_owned(),
            message: message.to_owned(),
        }),
    }
}
