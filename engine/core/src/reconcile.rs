//! Reconcile on resume: what `rota runs resume` does with a vendor call the
//! interrupted run left in flight, and the JSON envelopes of the plugin
//! actions that take part (snapshot, reconcile, revoke).
//!
//! Design decision: no vendor documents idempotency keys, so an interrupted
//! changing call is never repeated blindly. Its action's [`ResumePolicy`]
//! decides: `repeat` redoes it; `reconcile` asks a read-only action of the
//! same plugin whether the call was applied (adopt its result), not applied
//! (redo it) or left orphans (revoke each by key ID, then redo); an action
//! that declares neither stops the resume. The decisions are pure functions
//! here; the executor carries them out and the CLI only reads the journal.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::action::{ActionSpec, ResumePolicy};
use crate::secret::SecretRef;

/// A changing call the interrupted run announced (its intent is journaled)
/// and whose end it never recorded, as the journal holds it.
#[derive(Clone, Debug, PartialEq)]
pub struct InFlightCall {
    /// `plugin.action`.
    pub action: String,
    /// The rendered input, secrets as handles.
    pub input: Value,
    /// `run/step` or `run/step/<item index>`.
    pub idempotency_key: String,
    /// The snapshot action's output, journaled with the intent.
    pub snapshot: Option<Value>,
    /// Secrets committed for this call after its intent, oldest first.
    pub captured: Vec<SecretRef>,
    /// The vendor's key ID recorded with the latest of those captures.
    pub key_id: Option<String>,
    /// Revokes announced for this call whose completion was not recorded:
    /// a resume runs them again first (revoking by key ID is safe to repeat).
    pub pending_revokes: Vec<PendingRevoke>,
}

/// A revoke whose intent is journaled but whose end is not.
#[derive(Clone, Debug, PartialEq)]
pub struct PendingRevoke {
    /// `plugin.action`.
    pub action: String,
    /// The journaled envelope, `{"input": ..., "key_id": ...}`.
    pub input: Value,
    pub key_id: String,
}

/// What a resume does with an in-flight call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resolution {
    /// A `core.*` (or read-only) action: the step's call runs again, as
    /// before reconciliation existed.
    Redo,
    /// `resume: repeat`: the call is redone.
    Repeat,
    /// `resume: {reconcile}`: this read-only action of the same plugin decides.
    Reconcile { action: String },
    /// The action declares neither (or is no longer installed): the resume
    /// stops and names the call to check.
    Refuse,
}

/// How to resume `call`, given the spec of its journaled action (`None`:
/// the action is not installed any more).
pub fn resolve(call: &InFlightCall, spec: Option<&ActionSpec>) -> Resolution {
    if call.action.starts_with("core.") {
        return Resolution::Redo;
    }
    let Some(spec) = spec else {
        return Resolution::Refuse;
    };
    if spec.read_only {
        return Resolution::Redo;
    }
    match &spec.resume {
        ResumePolicy::Repeat => Resolution::Repeat,
        ResumePolicy::Reconcile { reconcile, .. } => Resolution::Reconcile {
            action: reconcile.clone(),
        },
        ResumePolicy::Refuse => Resolution::Refuse,
    }
}

/// Why a resume refuses a call whose action declares no resume policy.
pub fn refusal(run_id: &str, step: &str, call: &InFlightCall) -> String {
    format!(
        "cannot resume run {run_id}: step {step} was calling {} when the run stopped, and rota \
         cannot read back whether the vendor applied it. Check the vendor (input: {}), then \
         `rota runs abort {run_id}` (which runs the playbook's compensation) and start a new run.",
        call.action, call.input
    )
}

/// The reconcile action's answer.
#[derive(Clone, Debug, PartialEq)]
pub enum Answer {
    /// The interrupted call took effect: this is its result (checked against
    /// the original action's output schema before it is adopted).
    Applied(Value),
    /// Nothing happened at the vendor: redo the call.
    NotApplied,
    /// The call created things rota cannot adopt: revoke each by key ID, then redo.
    Orphaned(Vec<String>),
}

const EXPECTED_ANSWER: &str = "{\"outcome\": \"applied\", \"output\": {...}}, {\"outcome\": \"not_applied\"} \
     or {\"outcome\": \"orphaned\", \"key_ids\": [\"...\"]}";

/// Reads the answer of the reconcile action `what` (`plugin.action`).
pub fn parse_answer(what: &str, answer: &Value) -> Result<Answer, String> {
    let bad = |why: &str| {
        let shown = answer.to_string();
        let shown = if shown.chars().count() > 200 {
            format!("{}...", shown.chars().take(200).collect::<String>())
        } else {
            shown
        };
        format!("reconcile action {what} answered {shown}: {why}; expected {EXPECTED_ANSWER}")
    };
    let outcome = answer
        .get("outcome")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("no \"outcome\""))?;
    match outcome {
        "applied" => match answer.get("output") {
            Some(output @ Value::Object(_)) => Ok(Answer::Applied(output.clone())),
            _ => Err(bad("\"applied\" needs the call's result as an \"output\" object")),
        },
        "not_applied" => Ok(Answer::NotApplied),
        "orphaned" => {
            let ids: Option<Vec<String>> = answer
                .get("key_ids")
                .and_then(Value::as_array)
                .map(|ids| ids.iter().map(|v| v.as_str().map(str::to_owned)).collect())
                .and_then(|ids: Option<Vec<String>>| ids);
            match ids {
                Some(ids) if !ids.is_empty() && ids.iter().all(|id| !id.is_empty()) => {
                    Ok(Answer::Orphaned(ids))
                }
                _ => Err(bad(
                    "\"orphaned\" needs the orphans' vendor key IDs as a non-empty list of strings in \"key_ids\"",
                )),
            }
        }
        other => Err(bad(&format!("unknown outcome {other:?}"))),
    }
}

/// Checks an adopted result: it matches the original action's output schema,
/// and every secret handle in it is one this call captured (a reconcile
/// action cannot make the run adopt some other secret).
pub fn check_adopted(spec: &ActionSpec, output: &Value, captured: &[SecretRef]) -> Result<(), String> {
    let what = spec.qualified_name();
    let schema = crate::schema::Schema::compile(&spec.output_schema)
        .map_err(|e| format!("{what}'s output schema is not usable: {e}"))?;
    if let Some(failure) = schema.check(output) {
        return Err(format!(
            "the adopted result does not match {what}'s output schema at {}: {}",
            if failure.at.is_empty() {
                "/"
            } else {
                failure.at.as_str()
            },
            failure.message
        ));
    }
    let mut handles = Vec::new();
    collect_handles(output, &mut handles);
    if let Some(stray) = handles.iter().find(|h| !captured.contains(h)) {
        return Err(format!(
            "the adopted result names secret {stray}, which the interrupted {what} call did not capture (captured: {})",
            if captured.is_empty() {
                "none".to_owned()
            } else {
                captured
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        ));
    }
    Ok(())
}

fn collect_handles(v: &Value, out: &mut Vec<SecretRef>) {
    if let Some(h) = SecretRef::from_json(v) {
        out.push(h);
        return;
    }
    match v {
        Value::Array(items) => items.iter().for_each(|x| collect_handles(x, out)),
        Value::Object(m) => m.values().for_each(|x| collect_handles(x, out)),
        _ => {}
    }
}

/// The snapshot action's input: `{"input": <the call's input>}`.
pub fn snapshot_input(input: &Value) -> Value {
    json!({ "input": input })
}

/// The reconcile action's input: `{"input", "snapshot", "captured", "key_id"}`
/// (`captured` maps the action's capture names to handles).
pub fn reconcile_input(
    input: &Value,
    snapshot: Option<&Value>,
    captured: &BTreeMap<String, SecretRef>,
    key_id: Option<&str>,
) -> Value {
    let captured: serde_json::Map<String, Value> = captured
        .iter()
        .map(|(name, h)| (name.clone(), h.to_json()))
        .collect();
    json!({
        "input": input,
        "snapshot": snapshot.cloned().unwrap_or(Value::Null),
        "captured": captured,
        "key_id": key_id,
    })
}

/// The revoke action's input: `{"input": <the call's input>, "key_id": "<id>"}`.
pub fn revoke_input(input: &Value, key_id: &str) -> Value {
    json!({ "input": input, "key_id": key_id })
}

/// What reconciling one in-flight call decided (journaled).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// `resume: repeat`: redone.
    Repeated,
    /// The reconcile action found the call applied; its result was adopted.
    Adopted,
    /// Not applied at the vendor: redone.
    NotApplied,
    /// Left orphans: revoked by key ID, then redone.
    Orphaned,
}

/// A journal record of one reconciliation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reconciled {
    /// The interrupted call's `plugin.action`.
    pub action: String,
    pub idempotency_key: String,
    pub decision: Decision,
    /// The adopted key (for `adopted`) or the orphans (for `orphaned`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub key_ids: Vec<String>,
}

/// How a revoke ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RevokeOutcome {
    Revoked,
    /// The vendor said not-found: nothing is left to revoke.
    AlreadyGone,
    Failed,
}

/// A journal record of one revoke's end (its intent is journaled before it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revoked {
    /// The revoke's `plugin.action`.
    pub action: String,
    /// The key of the call whose orphan it revoked.
    pub idempotency_key: String,
    pub key_id: String,
    pub outcome: RevokeOutcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::action::Basis;

    fn spec(resume: ResumePolicy, read_only: bool) -> ActionSpec {
        ActionSpec {
            plugin: "keys".into(),
            action: "create-key".into(),
            description: String::new(),
            input_schema: std::sync::Arc::new(json!({"type": "object"})),
            output_schema: std::sync::Arc::new(json!({
                "type": "object",
                "required": ["key_id", "secret"],
                "properties": {"key_id": {"type": "string"}, "secret": {"type": "object"}}
            })),
            read_only,
            basis: Basis::Documented,
            captures: vec!["secret".into()],
            resume,
            revoke: Some("revoke-key".into()),
            key_id: Some("/id".into()),
        }
    }

    fn call(action: &str) -> InFlightCall {
        InFlightCall {
            action: action.into(),
            input: json!({"name": "rota"}),
            idempotency_key: "r1/create".into(),
            snapshot: None,
            captured: Vec::new(),
            key_id: None,
            pending_revokes: Vec::new(),
        }
    }

    #[test]
    fn the_resume_policy_decides_what_happens_to_an_in_flight_call() {
        let reconcile = ResumePolicy::Reconcile {
            snapshot: None,
            reconcile: "find-key".into(),
        };
        let c = call("keys.create-key");
        assert_eq!(
            resolve(&c, Some(&spec(reconcile, false))),
            Resolution::Reconcile {
                action: "find-key".into()
            }
        );
        assert_eq!(
            resolve(&c, Some(&spec(ResumePolicy::Repeat, false))),
            Resolution::Repeat
        );
        assert_eq!(
            resolve(&c, Some(&spec(ResumePolicy::Refuse, false))),
            Resolution::Refuse
        );
        assert_eq!(resolve(&c, None), Resolution::Refuse, "an uninstalled action");
        assert_eq!(resolve(&call("core.secret.promote"), None), Resolution::Redo);
        assert_eq!(
            resolve(&c, Some(&spec(ResumePolicy::Refuse, true))),
            Resolution::Redo
        );
    }

    #[test]
    fn the_refusal_names_the_call_and_the_way_out() {
        let msg = refusal("r1", "mint", &call("echo.create-key"));
        assert_eq!(
            msg,
            "cannot resume run r1: step mint was calling echo.create-key when the run stopped, and rota \
             cannot read back whether the vendor applied it. Check the vendor (input: {\"name\":\"rota\"}), \
             then `rota runs abort r1` (which runs the playbook's compensation) and start a new run."
        );
    }

    #[test]
    fn answers_are_read_strictly() {
        let what = "keys.find-key";
        assert_eq!(
            parse_answer(what, &json!({"outcome": "applied", "output": {"key_id": "k1"}})),
            Ok(Answer::Applied(json!({"key_id": "k1"})))
        );
        assert_eq!(
            parse_answer(what, &json!({"outcome": "not_applied"})),
            Ok(Answer::NotApplied)
        );
        assert_eq!(
            parse_answer(what, &json!({"outcome": "orphaned", "key_ids": ["k1", "k2"]})),
            Ok(Answer::Orphaned(vec!["k1".into(), "k2".into()]))
        );
        for (bad, why) in [
            (json!({}), "no \"outcome\""),
            (json!({"outcome": "maybe"}), "unknown outcome \"maybe\""),
            (json!({"outcome": "applied"}), "\"output\" object"),
            (json!({"outcome": "orphaned", "key_ids": []}), "non-empty list"),
            (json!({"outcome": "orphaned", "key_ids": [7]}), "non-empty list"),
        ] {
            let err = parse_answer(what, &bad).err().unwrap_or_default();
            assert!(
                err.starts_with("reconcile action keys.find-key answered "),
                "{err}"
            );
            assert!(err.contains(why), "{err}");
            assert!(err.contains("expected {\"outcome\": \"applied\""), "{err}");
        }
    }

    #[test]
    fn an_adopted_result_must_fit_the_schema_and_name_only_captured_secrets() {
        let s = spec(ResumePolicy::Repeat, false);
        let mine = SecretRef::new("keys/demo/key", 2);
        let ok = json!({"key_id": "k2", "secret": mine.to_json()});
        assert_eq!(check_adopted(&s, &ok, std::slice::from_ref(&mine)), Ok(()));
        let missing = check_adopted(
            &s,
            &json!({"secret": mine.to_json()}),
            std::slice::from_ref(&mine),
        );
        assert!(
            missing
                .as_ref()
                .err()
                .is_some_and(|e| e.contains("output schema") && e.contains("key_id")),
            "{missing:?}"
        );
        let other = SecretRef::new("keys/admin-token", 1);
        let stray = check_adopted(&s, &json!({"key_id": "k2", "secret": other.to_json()}), &[mine]);
        assert!(
            stray
                .as_ref()
                .err()
                .is_some_and(|e| e.contains("keys/admin-token@1") && e.contains("keys/demo/key@2")),
            "{stray:?}"
        );
    }

    #[test]
    fn envelopes_carry_the_original_input() {
        let input = json!({"name": "rota"});
        assert_eq!(snapshot_input(&input), json!({"input": {"name": "rota"}}));
        assert_eq!(
            revoke_input(&input, "k9"),
            json!({"input": {"name": "rota"}, "key_id": "k9"})
        );
        let captured = BTreeMap::from([("secret".to_owned(), SecretRef::new("keys/demo/key", 3))]);
        assert_eq!(
            reconcile_input(&input, Some(&json!({"ids": ["k1"]})), &captured, Some("k2")),
            json!({
                "input": {"name": "rota"},
                "snapshot": {"ids": ["k1"]},
                "captured": {"secret": {"$secret": "keys/demo/key@3"}},
                "key_id": "k2"
            })
        );
        assert_eq!(
            reconcile_input(&input, None, &BTreeMap::new(), None),
            json!({"input": {"name": "rota"}, "snapshot": null, "captured": {}, "key_id": null})
        );
    }
}
