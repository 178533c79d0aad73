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
            (None, Some(id)) => {
                format!("{what} declares no revoke action: delete key {id} at the vendor by hand")
            }
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
            repeatable: false,
        };
        self.ex
            .journal
            .intent(&self.run_id, at, &record)
            .map_err(|e| e.to_string())?;
        crash_point(&site.step.id, "revoke");
        let Some((_, name)) = split_uses(action) else {
            return Err(format!("{action} is not a plugin action"));
        };
        let result = self.settle_call(site, name, envelope).await;
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

    /// A reconcile or revoke call: both are safe to repeat (one reads, the
    /// other deletes by key ID, a not-found meaning already gone), so a
    /// transient error is retried by the step's policy (at least 3 tries)
    /// rather than stopping the run on a passing vendor hiccup.
    async fn settle_call(
        &self,
        site: &CallSite<'_>,
        action: &str,
        input: Value,
    ) -> Result<Value, ActionError> {
        let policy = super::retry_policy(site.step);
        let attempts = policy.attempts.max(3);
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self
                .plugin_call(site, action, input.clone(), BTreeMap::new())
                .await
            {
                Err(e) if e.is_transient() && attempt < attempts => {
                    let delay = self.backoff(&policy, attempt, e.retry_after());
                    self.note(
                        site,
                        format!(
                            "{}.{action} failed ({}); trying again in {:.1}s",
                            site.spec.plugin,
                            self.scope.redact(&e.to_string()),
                            delay.as_secs_f64()
                        ),
                    );
                    tokio::time::sleep(delay).await;
                }
                other => return other,
            }
        }
    }

    fn reconciled(
        &self,
        site: &CallSite<'_>,
        call: &InFlightCall,
        decision: Decision,
        key_ids: Vec<String>,
    ) -> Result<(), StepError> {
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
    pub(super) async fn recover(
        &self,
        site: &CallSite<'_>,
        call: InFlightCall,
    ) -> Result<Option<Value>, StepError> {
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
                return Err(StepError::ResumeStopped(reconcile::refusal(
                    run,
                    &site.step.id,
                    &call,
                )));
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
            .settle_call(site, &reconcile_action, envelope)
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
                    format!(
                        "{} was in flight and left orphans, now revoked: redoing it",
                        call.action
                    ),
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
            call.captured
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    parts.push(match &call.key_id {
        Some(k) => format!("vendor key ID {k}"),
        None => "no vendor key ID recorded".to_owned(),
    });
    parts.join("; ")
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};

    use serde_json::{Value, json};

    use crate::action::{ActionError, ActionSpec, Basis, ResumePolicy};
    use crate::event::{Outcome, StepStatus};
    use crate::executor::tests::{Fake, Harness, harness_with, run, spec, status_of, upstream};
    use crate::executor::{RunOptions, RunReport};
    use crate::journal::{At, IntentRecord, Journal, JournalError};
    use crate::operator::Absent;
    use crate::reconcile::{InFlightCall, PendingRevoke, Reconciled, Revoked};
    use crate::secret::SecretRef;

    /// Keeps what the executor journals, as JSON.
    #[derive(Default)]
    struct Recorded(Mutex<Vec<Value>>);

    impl Recorded {
        fn push(&self, v: Value) {
            self.0.lock().expect("lock").push(v);
        }
        fn of(&self, kind: &str) -> Vec<Value> {
            self.0
                .lock()
                .expect("lock")
                .iter()
                .filter(|e| e["kind"] == kind)
                .cloned()
                .collect()
        }
    }

    impl Journal for Recorded {
        fn run_started(&self, _: &str, _: &Value, _: &[String]) -> Result<(), JournalError> {
            Ok(())
        }
        fn step_started(&self, _: &str, at: At<'_>, _: u32) -> Result<(), JournalError> {
            self.push(json!({"kind": "step_started", "step": at.step}));
            Ok(())
        }
        fn intent(&self, _: &str, _: At<'_>, i: &IntentRecord<'_>) -> Result<(), JournalError> {
            self.push(json!({
                "kind": "intent", "action": i.action, "input": i.input, "key": i.idempotency_key,
                "snapshot": i.snapshot, "revokes": i.revokes,
            }));
            Ok(())
        }
        fn reconciled(&self, _: &str, _: At<'_>, r: &Reconciled) -> Result<(), JournalError> {
            self.push(json!({"kind": "reconciled", "record": r}));
            Ok(())
        }
        fn revoked(&self, _: &str, _: At<'_>, r: &Revoked) -> Result<(), JournalError> {
            self.push(json!({"kind": "revoked", "record": r}));
            Ok(())
        }
        fn step_finished(
            &self,
            _: &str,
            at: At<'_>,
            status: StepStatus,
            _: &Value,
            _: Option<(&str, &str)>,
        ) -> Result<(), JournalError> {
            self.push(json!({"kind": "step_finished", "step": at.step, "status": status.as_str()}));
            Ok(())
        }
        fn run_finished(&self, _: &str, _: Outcome) -> Result<(), JournalError> {
            self.push(json!({"kind": "run_finished"}));
            Ok(())
        }
        fn record_credential(&self, _: &str, _: &Value) -> Result<(), JournalError> {
            Ok(())
        }
    }

    fn reconciling() -> ResumePolicy {
        ResumePolicy::Reconcile {
            snapshot: Some("ids".into()),
            reconcile: "find".into(),
        }
    }

    fn create(resume: ResumePolicy, revoke: Option<&str>) -> ActionSpec {
        let mut s = spec(
            "create",
            false,
            Basis::Documented,
            json!({
                "type": "object",
                "required": ["key_id", "secret"],
                "properties": {"key_id": {"type": "string"}, "secret": {"x-rota-secret": true}}
            }),
        );
        s.captures = vec!["secret".into()];
        s.resume = resume;
        s.revoke = revoke.map(Into::into);
        s.key_id = Some("/id".into());
        s
    }

    fn open() -> Value {
        json!({"type": "object"})
    }

    fn fake(create: ActionSpec) -> Fake {
        let mut put = spec("put", false, Basis::Documented, open());
        put.resume = ResumePolicy::Repeat;
        Fake::new(vec![
            create,
            spec("ids", true, Basis::Documented, open()),
            spec("find", true, Basis::Documented, open()),
            spec("drop", false, Basis::Documented, open()),
            put,
            spec("bare", false, Basis::Documented, open()),
        ])
        .reply("ids", vec![Ok(json!({"ids": ["k1"]}))])
        .reply(
            "create",
            vec![Ok(json!({"key_id": "k3", "secret": {"$secret": "x/key@2"}}))],
        )
    }

    const MINT: &str = "name: t\ndescription: t\nsecrets:\n  key: {name: x/key}\nsteps:\n  - id: mint\n    uses: fake.create\n    with: {name: rota}\n    captures: {secret: key}\n  - id: after\n    uses: core.log\n    with: {message: \"minted {{steps.mint.outputs.key_id}}\"}\non_failure:\n  - id: undo\n    uses: core.log\n    with: {message: undone}\n";

    fn interrupted(action: &str, key: &str, captured: &[&str], key_id: Option<&str>) -> InFlightCall {
        InFlightCall {
            action: action.into(),
            input: json!({"name": "rota"}),
            idempotency_key: key.into(),
            snapshot: Some(json!({"ids": ["k1"]})),
            captured: captured
                .iter()
                .map(|h| h.parse::<SecretRef>().expect("a handle"))
                .collect(),
            key_id: key_id.map(Into::into),
            pending_revokes: Vec::new(),
        }
    }

    fn resuming(step: &str, calls: Vec<InFlightCall>) -> RunOptions {
        RunOptions {
            resume: Some(BTreeMap::new()),
            in_flight: BTreeMap::from([(step.to_owned(), calls)]),
            ..RunOptions::default()
        }
    }

    fn setup(fake: Fake) -> (Harness, Arc<Recorded>) {
        let journal = Arc::new(Recorded::default());
        (harness_with(fake, Arc::new(Absent), journal.clone()), journal)
    }

    /// Resumes MINT with `call` in flight.
    async fn resume_mint(fake: Fake, call: InFlightCall) -> (Harness, Arc<Recorded>, RunReport) {
        let (h, j) = setup(fake);
        let r = run(&h, MINT, resuming("mint", vec![call])).await;
        (h, j, r)
    }

    /// A plugin whose reconcile action answers `answer`.
    fn answering(answer: Value) -> Fake {
        fake(create(reconciling(), Some("drop"))).reply("find", vec![Ok(answer)])
    }

    fn applied(secret: &str) -> Value {
        json!({"outcome": "applied", "output": {"key_id": "k2", "secret": {"$secret": secret}}})
    }

    fn decisions(j: &Recorded) -> Vec<Value> {
        j.of("reconciled")
            .into_iter()
            .map(|e| e["record"].clone())
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn an_applied_call_is_adopted_without_calling_the_vendor_again() {
        let (h, j, r) = resume_mint(
            answering(applied("x/key@1")),
            interrupted("fake.create", "r1/mint", &["x/key@1"], Some("k2")),
        )
        .await;
        assert_eq!(r.outcome, Outcome::Succeeded, "{:?}", r.failure);
        assert_eq!(h.fake.called(), vec!["find"], "no snapshot, no create");
        assert_eq!(
            h.fake.inputs_of("find"),
            vec![(
                json!({
                    "input": {"name": "rota"},
                    "snapshot": {"ids": ["k1"]},
                    "captured": {"secret": {"$secret": "x/key@1"}},
                    "key_id": "k2"
                }),
                "r1/mint".to_owned()
            )]
        );
        assert_eq!(
            r.steps.first().map(|s| s.outputs.clone()),
            Some(json!({"key_id": "k2", "secret": {"$secret": "x/key@1"}}))
        );
        assert_eq!(
            decisions(&j),
            vec![
                json!({"action": "fake.create", "idempotency_key": "r1/mint", "decision": "adopted", "key_ids": ["k2"]})
            ]
        );
        assert!(j.of("intent").is_empty(), "nothing new was announced");
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_not_applied_is_redone_after_a_fresh_snapshot() {
        let (h, j, r) = resume_mint(
            answering(json!({"outcome": "not_applied"})),
            interrupted("fake.create", "r1/mint", &[], None),
        )
        .await;
        assert_eq!(r.outcome, Outcome::Succeeded, "{:?}", r.failure);
        assert_eq!(h.fake.called(), vec!["find", "ids", "create"]);
        assert_eq!(decisions(&j)[0]["decision"], "not_applied");
        let intents = j.of("intent");
        assert_eq!(intents.len(), 1);
        assert_eq!(
            intents[0]["snapshot"],
            json!({"ids": ["k1"]}),
            "journaled with the intent"
        );
        assert_eq!(h.fake.inputs_of("ids")[0].0, json!({"input": {"name": "rota"}}));
    }

    #[tokio::test(start_paused = true)]
    async fn orphans_are_revoked_by_id_then_the_call_is_redone() {
        let (h, j, r) = resume_mint(
            answering(json!({"outcome": "orphaned", "key_ids": ["k7", "k8"]})),
            interrupted("fake.create", "r1/mint", &[], None),
        )
        .await;
        assert_eq!(r.outcome, Outcome::Succeeded, "{:?}", r.failure);
        assert_eq!(h.fake.called(), vec!["find", "drop", "drop", "ids", "create"]);
        let drops: Vec<Value> = h.fake.inputs_of("drop").into_iter().map(|(i, _)| i).collect();
        assert_eq!(
            drops,
            vec![
                json!({"input": {"name": "rota"}, "key_id": "k7"}),
                json!({"input": {"name": "rota"}, "key_id": "k8"}),
            ]
        );
        let revokes: Vec<(Value, Value)> = j
            .of("intent")
            .into_iter()
            .map(|i| (i["action"].clone(), i["revokes"].clone()))
            .collect();
        assert_eq!(
            revokes,
            vec![
                (json!("fake.drop"), json!("k7")),
                (json!("fake.drop"), json!("k8")),
                (json!("fake.create"), Value::Null),
            ],
            "each revoke announced before it is made, then the redo"
        );
        let ends: Vec<Value> = j
            .of("revoked")
            .into_iter()
            .map(|e| e["record"]["outcome"].clone())
            .collect();
        assert_eq!(ends, vec![json!("revoked"), json!("revoked")]);
        assert_eq!(decisions(&j)[0]["key_ids"], json!(["k7", "k8"]));
    }

    #[tokio::test(start_paused = true)]
    async fn a_revoke_announced_before_the_interruption_runs_again_first() {
        let (h, j) = setup(
            fake(create(reconciling(), Some("drop")))
                .reply("drop", vec![Err(ActionError::NotFound("no key k5".into()))])
                .reply("find", vec![Ok(json!({"outcome": "not_applied"}))]),
        );
        let mut call = interrupted("fake.create", "r1/mint", &[], None);
        call.pending_revokes = vec![PendingRevoke {
            action: "fake.drop".into(),
            input: json!({"input": {"name": "rota"}, "key_id": "k5"}),
            key_id: "k5".into(),
        }];
        let r = run(&h, MINT, resuming("mint", vec![call])).await;
        assert_eq!(r.outcome, Outcome::Succeeded, "{:?}", r.failure);
        assert_eq!(h.fake.called(), vec!["drop", "find", "ids", "create"]);
        assert_eq!(
            j.of("revoked")[0]["record"]["outcome"],
            "already_gone",
            "not-found means the key is gone"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn each_for_each_item_is_reconciled_on_its_own() {
        let applied =
            json!({"outcome": "applied", "output": {"key_id": "k2", "secret": {"$secret": "x/key@1"}}});
        let (h, j) = setup(
            fake(create(reconciling(), Some("drop")))
                .reply("find", vec![Ok(applied), Ok(json!({"outcome": "not_applied"}))]),
        );
        let yaml = "name: t\ndescription: t\nsecrets:\n  key: {name: x/key}\nsteps:\n  - id: mint\n    for_each: [a, b]\n    uses: fake.create\n    with: {name: \"{{item}}\"}\n    captures: {secret: key}\n";
        let calls = vec![
            interrupted("fake.create", "r1/mint/0", &["x/key@1"], Some("k2")),
            interrupted("fake.create", "r1/mint/1", &[], None),
        ];
        let r = run(&h, yaml, resuming("mint", calls)).await;
        assert_eq!(r.outcome, Outcome::Succeeded, "{:?}", r.failure);
        assert_eq!(h.fake.called(), vec!["find", "find", "ids", "create"]);
        let finds: Vec<String> = h.fake.inputs_of("find").into_iter().map(|(_, k)| k).collect();
        assert_eq!(finds, vec!["r1/mint/0", "r1/mint/1"]);
        assert_eq!(
            h.fake.inputs_of("create")[0].1,
            "r1/mint/1",
            "only item 1 is redone"
        );
        let d: Vec<Value> = decisions(&j).into_iter().map(|d| d["decision"].clone()).collect();
        assert_eq!(d, vec![json!("adopted"), json!("not_applied")]);
        assert_eq!(
            r.steps.first().map(|s| s.outputs.clone()),
            Some(json!([
                {"key_id": "k2", "secret": {"$secret": "x/key@1"}},
                {"key_id": "k3", "secret": {"$secret": "x/key@2"}}
            ]))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_repeatable_call_is_redone_without_reconciling() {
        let (h, j) = setup(fake(create(reconciling(), None)));
        let yaml = "name: t\ndescription: t\nsteps:\n  - id: set\n    uses: fake.put\n";
        let r = run(
            &h,
            yaml,
            resuming("set", vec![interrupted("fake.put", "r1/set", &[], None)]),
        )
        .await;
        assert_eq!(r.outcome, Outcome::Succeeded, "{:?}", r.failure);
        assert_eq!(h.fake.called(), vec!["put"]);
        assert_eq!(decisions(&j)[0]["decision"], "repeated");
    }

    /// What a stopped resume looks like: no step end, no compensation, no
    /// run end journaled; the run is still interrupted.
    fn assert_stopped(h: &Harness, j: &Recorded, r: &RunReport, says: &[&str]) {
        assert_eq!(r.outcome, Outcome::Interrupted, "{:?}", r.failure);
        let failure = r.failure.clone().unwrap_or_default();
        for s in says {
            assert!(failure.contains(s), "no {s:?} in {failure}");
        }
        assert!(failure.contains("`rota runs resume r1`") && failure.contains("`rota runs abort r1`"));
        assert_eq!(status_of(r, "undo"), None, "no compensation");
        assert!(j.of("step_finished").is_empty(), "the step stays in flight");
        assert!(j.of("run_finished").is_empty(), "the run stays interrupted");
        assert!(!h.fake.called().contains(&"create".to_owned()));
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_without_a_resume_policy_stops_the_resume() {
        let (h, j, r) = resume_mint(
            fake(create(ResumePolicy::Refuse, None)),
            interrupted("fake.create", "r1/mint", &[], None),
        )
        .await;
        assert_stopped(
            &h,
            &j,
            &r,
            &["cannot resume run r1: step mint was calling fake.create when the run stopped"],
        );
        assert!(h.fake.called().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn an_unreadable_reconcile_answer_stops_the_resume_saying_what_is_known() {
        let (h, j, r) = resume_mint(
            answering(json!({"outcome": "maybe"})),
            interrupted("fake.create", "r1/mint", &["x/key@1"], Some("k2")),
        )
        .await;
        assert_stopped(
            &h,
            &j,
            &r,
            &[
                "reconcile action fake.find answered {\"outcome\":\"maybe\"}: unknown outcome \"maybe\"",
                "captured x/key@1",
                "vendor key ID k2",
            ],
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_revoke_of_an_orphan_stops_the_resume_naming_the_key() {
        let (h, j, r) = resume_mint(
            answering(json!({"outcome": "orphaned", "key_ids": ["k7"]}))
                .reply("drop", vec![upstream(500), upstream(500), upstream(500)]),
            interrupted("fake.create", "r1/mint", &[], None),
        )
        .await;
        assert_stopped(
            &h,
            &j,
            &r,
            &[
                "fake.find found orphan key k7 left by the interrupted call; revoking it with fake.drop failed: upstream error 500",
            ],
        );
        assert_eq!(j.of("revoked")[0]["record"]["outcome"], "failed");
    }

    #[tokio::test(start_paused = true)]
    async fn orphans_without_a_revoke_action_stop_the_resume() {
        let (h, j, r) = resume_mint(
            fake(create(reconciling(), None)).reply(
                "find",
                vec![Ok(json!({"outcome": "orphaned", "key_ids": ["k7"]}))],
            ),
            interrupted("fake.create", "r1/mint", &[], None),
        )
        .await;
        assert_stopped(
            &h,
            &j,
            &r,
            &[
                "orphan key(s) k7",
                "declares no revoke action: delete them at the vendor by hand",
            ],
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_adopted_result_naming_another_secret_stops_the_resume() {
        let (h, j, r) = resume_mint(
            answering(applied("x/admin@1")),
            interrupted("fake.create", "r1/mint", &["x/key@1"], Some("k2")),
        )
        .await;
        assert_stopped(
            &h,
            &j,
            &r,
            &["names secret x/admin@1, which the interrupted fake.create call did not capture"],
        );
    }

    fn capture_failed() -> ActionError {
        ActionError::CaptureFailed {
            message: "fake.create: the vendor answered with secret x/key but rota could not store it".into(),
            key_id: Some("k9".into()),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_capture_that_cannot_be_stored_is_revoked_at_once_and_fails_the_step() {
        let (h, j) =
            setup(fake(create(reconciling(), Some("drop"))).reply("create", vec![Err(capture_failed())]));
        let r = run(&h, MINT, RunOptions::default()).await;
        assert_eq!(r.outcome, Outcome::Failed);
        assert_eq!(h.fake.called(), vec!["ids", "create", "drop"]);
        assert_eq!(
            h.fake.inputs_of("drop")[0].0,
            json!({"input": {"name": "rota"}, "key_id": "k9"})
        );
        assert_eq!(
            r.failure.as_deref(),
            Some(
                "step mint failed: fake.create: fake.create: the vendor answered with secret x/key but rota could not \
                 store it; rota revoked key k9 with fake.drop"
            )
        );
        assert_eq!(
            status_of(&r, "undo"),
            Some(StepStatus::Succeeded),
            "on_failure ran"
        );
        assert_eq!(
            j.of("intent")[1]["revokes"],
            "k9",
            "the revoke was announced first"
        );
        assert_eq!(r.steps.first().and_then(|s| s.error_kind), Some("capture-failed"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_capture_failure_says_whether_the_revoke_worked() {
        let (h, _) = setup(
            fake(create(reconciling(), Some("drop")))
                .reply("create", vec![Err(capture_failed())])
                // A revoke is retried (it is safe to repeat): it fails for good here.
                .reply("drop", vec![upstream(503), upstream(503), upstream(503)]),
        );
        let r = run(&h, MINT, RunOptions::default()).await;
        assert!(
            r.failure.clone().unwrap_or_default().ends_with(
                "revoking key k9 with fake.drop FAILED (upstream error 503: try later): delete key k9 at the vendor by hand"
            ),
            "{:?}",
            r.failure
        );
        let (h, _) = setup(fake(create(reconciling(), None)).reply("create", vec![Err(capture_failed())]));
        let r = run(&h, MINT, RunOptions::default()).await;
        assert!(
            r.failure
                .clone()
                .unwrap_or_default()
                .ends_with("fake.create declares no revoke action: delete key k9 at the vendor by hand"),
            "{:?}",
            r.failure
        );
        assert_eq!(h.fake.called(), vec!["ids", "create"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_snapshot_failure_fails_the_attempt_and_is_retried_only_if_transient() {
        let retry = MINT.replace(
            "    captures: {secret: key}\n",
            "    captures: {secret: key}\n    retry: {attempts: 2, delay: 1s, jitter: false}\n",
        );
        let (h, j) = setup(
            fake(create(reconciling(), Some("drop")))
                .reply("ids", vec![upstream(503), Ok(json!({"ids": []}))]),
        );
        let r = run(&h, &retry, RunOptions::default()).await;
        assert_eq!(r.outcome, Outcome::Succeeded, "{:?}", r.failure);
        assert_eq!(h.fake.called(), vec!["ids", "ids", "create"]);
        assert_eq!(j.of("intent").len(), 1, "no intent without a snapshot");
        let (h, j) = setup(
            fake(create(reconciling(), Some("drop")))
                .reply("ids", vec![Err(ActionError::Unauthorized("bad token".into()))]),
        );
        let r = run(&h, &retry, RunOptions::default()).await;
        assert_eq!(r.outcome, Outcome::Failed);
        assert_eq!(
            h.fake.called(),
            vec!["ids"],
            "not transient: not retried, no call made"
        );
        assert_eq!(
            r.failure.as_deref(),
            Some("step mint failed: fake.ids: unauthorized: bad token")
        );
        assert!(j.of("intent").is_empty());
    }

    /// MINT with `retry:` so a transient failure is retried.
    const MINT_RETRIED: &str = "name: t\ndescription: t\nsecrets:\n  key: {name: x/key}\nsteps:\n  - id: mint\n    uses: fake.create\n    with: {name: rota}\n    captures: {secret: key}\n    retry: {attempts: 3, delay: 1s}\n";

    /// A plugin whose create first fails with a 503 (the vendor may have
    /// acted on it), then succeeds, and whose reconcile answers `answer`.
    fn flaky(answer: Value) -> Fake {
        fake(create(reconciling(), Some("drop")))
            .reply(
                "create",
                vec![
                    upstream(503),
                    Ok(json!({"key_id": "k3", "secret": {"$secret": "x/key@2"}})),
                ],
            )
            .reply(
                "ids",
                vec![Ok(json!({"ids": ["k1"]})), Ok(json!({"ids": ["k1"]}))],
            )
            .reply("find", vec![Ok(answer)])
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_call_found_applied_is_never_retried() {
        // The fake captured nothing, so the applied result cannot be adopted
        // either: the run stops interrupted (resumable), rather than minting
        // a second key.
        let (h, _) = setup(flaky(
            json!({"outcome": "applied", "output": {"key_id": "k2", "secret": {"$secret": "x/key@1"}}}),
        ));
        let r = run(&h, MINT_RETRIED, RunOptions::default()).await;
        assert_eq!(r.outcome, Outcome::Interrupted, "{:?}", r.failure);
        assert_eq!(h.fake.called(), vec!["ids", "create", "find"], "no second create");
        assert!(
            r.failure.as_deref().unwrap_or_default().contains("x/key@1"),
            "{:?}",
            r.failure
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_call_not_applied_at_the_vendor_is_retried() {
        let (h, j) = setup(flaky(json!({"outcome": "not_applied"})));
        let r = run(&h, MINT_RETRIED, RunOptions::default()).await;
        assert_eq!(r.outcome, Outcome::Succeeded, "{:?}", r.failure);
        assert_eq!(h.fake.called(), vec!["ids", "create", "find", "ids", "create"]);
        assert_eq!(decisions(&j)[0]["decision"], "not_applied");
        assert_eq!(j.of("intent").len(), 2, "each attempt announced");
    }

    #[tokio::test(start_paused = true)]
    async fn an_orphan_of_a_failed_call_is_revoked_before_the_retry() {
        let (h, j) = setup(flaky(json!({"outcome": "orphaned", "key_ids": ["k9"]})));
        let r = run(&h, MINT_RETRIED, RunOptions::default()).await;
        assert_eq!(r.outcome, Outcome::Succeeded, "{:?}", r.failure);
        assert_eq!(
            h.fake.called(),
            vec!["ids", "create", "find", "drop", "ids", "create"]
        );
        assert_eq!(
            h.fake.inputs_of("drop")[0].0,
            json!({"input": {"name": "rota"}, "key_id": "k9"})
        );
        assert_eq!(j.of("revoked").len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_refused_call_is_not_reconciled() {
        let fake = fake(create(reconciling(), Some("drop"))).reply(
            "create",
            vec![Err(ActionError::Conflict("a key with this name exists".into()))],
        );
        let (h, j) = setup(fake);
        let r = run(&h, MINT_RETRIED, RunOptions::default()).await;
        assert_eq!(r.outcome, Outcome::Failed);
        assert_eq!(
            h.fake.called(),
            vec!["ids", "create"],
            "a 409 says the vendor did nothing"
        );
        assert!(decisions(&j).is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_passing_failure_of_the_reconcile_itself_is_retried() {
        let fake = flaky(json!({"outcome": "not_applied"}));
        let fake = fake.reply("find", vec![upstream(502), Ok(json!({"outcome": "not_applied"}))]);
        let (h, _) = setup(fake);
        let r = run(&h, MINT_RETRIED, RunOptions::default()).await;
        assert_eq!(r.outcome, Outcome::Succeeded, "{:?}", r.failure);
        assert_eq!(
            h.fake.called(),
            vec!["ids", "create", "find", "find", "ids", "create"]
        );
    }
}
