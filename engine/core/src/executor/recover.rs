//! The executor's recovery paths around one changing call: the snapshot
//! taken before it, the revoke of a key whose secret could not be stored,
//! and a resume's reconciliation of the call the interrupted run left in
//! flight.
//!
//! Design decision: every recovery call is journaled like any other (a
//! revoke's intent before it, its end after; each reconciliation's decision),
//! and anything a resume cannot settle stops the resume with
//! [`StepError::ResumeStopped`] saying what is known, rather than guessing.

use std::collections::BTreeMap;

use serde_json::Value;

use super::{CallSite, Run, StepError};
use crate::action::{ActionError, ActionSpec, ResumePolicy};
use crate::core_actions::split_uses;
use crate::event::Event;
use crate::journal::{At, IntentRecord, crash_point};
use crate::reconcile::{
    self, Answer, Decision, InFlightCall, Reconciled, Resolution, RevokeOutcome, Revoked,
};
use crate::secret::SecretRef;

impl Run<'_> {
    fn at<'s>(&self, site: &'s CallSite<'_>) -> At<'s> {
        At {
            step: &site.step.id,
            iteration: None,
        }
    }

    fn note(&self, site: &CallSite<'_>, message: String) {
        self.emit(Event::Message {
            id: site.step.id.clone(),
            level: "info".to_owned(),
            message,
        });
    }

    /// Runs the action's snapshot action (if it declares one) just before the
    /// call; its output is journaled with the intent. A failure fails the
    /// attempt as the call would (retried only if transient).
    pub(super) async fn snapshot(&self, site: &CallSite<'_>) -> Result<Option<Value>, StepError> {
        let ResumePolicy::Reconcile {
            snapshot: Some(action),
            ..
        } = &site.spec.resume
        else {
            return Ok(None);
        };
        let input = reconcile::snapshot_input(site.input);
        self.plugin_call(site, action, input, BTreeMap::new())
            .await
            .map(Some)
            .map_err(|error| StepError::Action {
                plugin: site.spec.plugin.clone(),
                action: action.clone(),
                error,
            })
    }

    /// The vendor minted a key whose secret could not be stored: revoke it at
    /// once by the key ID the host read, and fail the step saying so.
    pub(super) async fn capture_failed(
        &self,
        site: &CallSite<'_>,
        message: String,
        key_id: Option<String>,
    ) -> StepError {
        let spec = site.spec;
        let what = spec.qualified_name();
        let outcome = match (&spec.revoke, &key_id) {
            (Some(revoke), Some(id)) => {
                let action = format!("{}.{revoke}", spec.plugin);
                match self
                    .revoke(site, &action, reconcile::revoke_input(site.input, id), id)
                    .await
                {
                    Ok(RevokeOutcome::AlreadyGone) => {
                        format!("rota ran {action} for key {id}: the vendor no longer has it")
                    }
                    Ok(_) => format!("rota revoked key {id} with {action}"),
                    Err(e) => format!(
                        "revoking key {id} with {action} FAILED ({e}): delete key {id} at the vendor by hand"
                    ),
                }
            }
            (None, Some(id)) => format!(
                "{what} declares no revoke action: delete key {id} at the vendor by hand"
            ),
            (_, None) => format!(
                "the vendor's key ID is unknown ({what} declares no key_id, or the answer had none): \
                 find the key this call created at the vendor and delete it by hand"
            ),
        };
        StepError::Action {
            plugin: spec.plugin.clone(),
            action: spec.action.clone(),
            error: ActionError::CaptureFailed {
                message: format!("{message}; {outcome}"),
                key_id,
            },
        }
    }

    /// Revokes `key_id` with `action` (`plugin.action`), journaling the intent
    /// before the call and its end after. A not-found answer means the key is
    /// already gone. `Err` says why it failed.
    async fn revoke(
        &self,
        site: &CallSite<'_>,
        action: &str,
        envelope: Value,
        key_id: &str,
    ) -> Result<RevokeOutcome, String> {
        let at = self.at(site);
        let record = IntentRecord {
            action,
            input: &envelope,
            idempotency_key: site.idempotency_key,
            snapshot: None,
            revokes: Some(key_id),
        };
        self.ex
            .journal
            .intent(&self.run_id, at, &record)
            .map_err(|e| e.to_string())?;
        crash_point(&site.step.id, "revoke");
        let Some((_, name)) = split_uses(action) else {
            return Err(format!("{action} is not a plugin action"));
        };
        let result = self.plugin_call(site, name, envelope, BTreeMap::new()).await;
        let (outcome, error) = match result {
            Ok(_) => (RevokeOutcome::Revoked, None),
            Err(ActionError::NotFound(_)) => (RevokeOutcome::AlreadyGone, None),
            Err(e) => (RevokeOutcome::Failed, Some(self.scope.redact(&e.to_string()))),
        };
        let end = Revoked {
            action: action.to_owned(),
            idempotency_key: site.idempotency_key.to_owned(),
            key_id: key_id.to_owned(),
            outcome,
            error: error.clone(),
        };
        self.ex
            .journal
            .revoked(&self.run_id, at, &end)
            .map_err(|e| e.to_string())?;
        match error {
            Some(e) => Err(e),
            None => Ok(outcome),
        }
    }

    fn reconciled(&self, site: &CallSite<'_>, call: &InFlightCall, decision: Decision, key_ids: Vec<String>) -> Result<(), StepError> {
        let record = Reconciled {
            action: call.action.clone(),
            idempotency_key: call.idempotency_key.clone(),
            decision,
            key_ids,
        };
        self.ex
            .journal
            .reconciled(&self.run_id, self.at(site), &record)
            .map_err(|e| StepError::Journal(e.to_string()))
    }

    /// Settles a call the interrupted run left in flight, before the site's
    /// call is made again: `Some(result)` when its result is adopted (the
    /// vendor is not called again), `None` when the call must be redone.
    pub(super) async fn recover(&self, site: &CallSite<'_>, call: InFlightCall) -> Result<Option<Value>, StepError> {
        let run = &self.run_id;
        let stop = |what: String| {
            StepError::ResumeStopped(format!(
                "{what}\nwhat the journal holds for the interrupted {} call ({}): {}",
                call.action,
                call.idempotency_key,
                known(&call)
            ))
        };
        for pending in &call.pending_revokes {
            let outcome = self
                .revoke(site, &pending.action, pending.input.clone(), &pending.key_id)
                .await
                .map_err(|e| {
                    stop(format!(
                        "revoking orphan key {} with {} (announced before the interruption) failed: {e}",
                        pending.key_id, pending.action
                    ))
                })?;
            self.note(
                site,
                match outcome {
                    RevokeOutcome::AlreadyGone => format!("key {} was already revoked", pending.key_id),
                    _ => format!("revoked orphan key {} with {}", pending.key_id, pending.action),
                },
            );
        }
        let spec: Option<ActionSpec> = if call.action == site.spec.qualified_name() {
            Some(site.spec.clone())
        } else {
            split_uses(&call.action).and_then(|(p, a)| self.ex.catalog.lookup(p, a))
        };
        let reconcile_action = match reconcile::resolve(&call, spec.as_ref()) {
            Resolution::Redo => return Ok(None),
            Resolution::Refuse => {
                return Err(StepError::ResumeStopped(reconcile::refusal(run, &site.step.id, &call)));
            }
            Resolution::Repeat => {
                self.reconciled(site, &call, Decision::Repeated, Vec::new())?;
                self.note(
                    site,
                    format!("{} was in flight; repeating it (resume: repeat)", call.action),
                );
                return Ok(None);
            }
            Resolution::Reconcile { action } => action,
        };
        let Some(spec) = spec else {
            return Ok(None);
        };
        let reconciler = format!("{}.{reconcile_action}", spec.plugin);
        let captured = self.captured_by_name(site, &call);
        let envelope = reconcile::reconcile_input(
            &call.input,
            call.snapshot.as_ref(),
            &captured,
            call.key_id.as_deref(),
        );
        let answer = self
            .plugin_call(site, &reconcile_action, envelope, BTreeMap::new())
            .await
            .map_err(|e| {
                stop(format!(
                    "cannot reconcile: {reconciler} failed: {}",
                    self.scope.redact(&e.to_string())
                ))
            })?;
        let answer = reconcile::parse_answer(&reconciler, &answer).map_err(stop)?;
        match answer {
            Answer::Applied(output) => {
                reconcile::check_adopted(&spec, &output, &call.captured)
                    .map_err(|e| stop(format!("{reconciler} found the call applied, but {e}")))?;
                let key_ids: Vec<String> = call.key_id.iter().cloned().collect();
                self.reconciled(site, &call, Decision::Adopted, key_ids)?;
                self.note(
                    site,
                    format!(
                        "{} was in flight; {reconciler} found it applied: its result is adopted{}",
                        call.action,
                        call.key_id
                            .as_ref()
                            .map(|k| format!(" (key {k})"))
                            .unwrap_or_default()
                    ),
                );
                Ok(Some(output))
            }
            Answer::NotApplied => {
                self.reconciled(site, &call, Decision::NotApplied, Vec::new())?;
                self.note(
                    site,
                    format!(
                        "{} was in flight; {reconciler} found it not applied: redoing it",
                        call.action
                    ),
                );
                Ok(None)
            }
            Answer::Orphaned(ids) => {
                self.reconciled(site, &call, Decision::Orphaned, ids.clone())?;
                let Some(revoke) = &spec.revoke else {
                    return Err(stop(format!(
                        "{reconciler} found orphan key(s) {} left by the interrupted call, and {} declares no revoke \
                         action: delete them at the vendor by hand",
                        ids.join(", "),
                        call.action
                    )));
                };
                let revoker = format!("{}.{revoke}", spec.plugin);
                for id in &ids {
                    let outcome = self
                        .revoke(site, &revoker, reconcile::revoke_input(&call.input, id), id)
                        .await
                        .map_err(|e| {
                            stop(format!(
                                "{reconciler} found orphan key {id} left by the interrupted call; revoking it with \
                                 {revoker} failed: {e}"
                            ))
                        })?;
                    self.note(
                        site,
                        match outcome {
                            RevokeOutcome::AlreadyGone => format!("orphan key {id} was already gone"),
                            _ => format!("revoked orphan key {id} with {revoker}"),
                        },
                    );
                }
                self.note(
                    site,
                    format!("{} was in flight and left orphans, now revoked: redoing it", call.action),
                );
                Ok(None)
            }
        }
    }

    /// The call's captured handles under the action's capture names (the
    /// step maps each capture name to a `secrets` entry, whose name the
    /// handle carries). The latest version wins if one name was captured twice.
    fn captured_by_name(&self, site: &CallSite<'_>, call: &InFlightCall) -> BTreeMap<String, SecretRef> {
        let mut out = BTreeMap::new();
        for handle in &call.captured {
            for (capture, secret_id) in site.step.captures.iter() {
                if self
                    .captures
                    .get(secret_id)
                    .is_some_and(|t| t.name == handle.name)
                {
                    out.insert(capture.clone(), handle.clone());
                }
            }
        }
        out
    }
}

/// What the journal holds about an interrupted call, for messages.
fn known(call: &InFlightCall) -> String {
    let mut parts = vec![match &call.snapshot {
        Some(_) => "intent with a snapshot of the vendor's state".to_owned(),
        None => "intent, no snapshot".to_owned(),
    }];
    if call.captured.is_empty() {
        parts.push("no secret captured".to_owned());
    } else {
        parts.push(format!(
            "captured {}",
            call.captured.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
        ));
    }
    parts.push(match &call.key_id {
        Some(k) => format!("vendor key ID {k}"),
        None => "no vendor key ID recorded".to_owned(),
    });
    parts.join("; ")
}
