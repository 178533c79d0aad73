//! Executor behaviour under a paused tokio clock: retries, backoff, timeouts,
//! concurrency, compensation order, confirmations and the manual fallback.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use serde_json::{Value, json};
use tokio::time::Instant;

use super::*;
use crate::action::{Basis, ResumePolicy};
use crate::event::Recorder;
use crate::load::load_source;
use crate::operator::{Absent, Scripted};
use crate::store::MemoryStore;
use crate::yaml::Source;

pub(super) type Reply = Result<Value, ActionError>;

/// A plugin whose replies are scripted per action, recording when each call
/// started (in virtual time) and how many ran at once.
pub(super) struct Fake {
    specs: Vec<ActionSpec>,
    replies: Mutex<HashMap<String, VecDeque<Reply>>>,
    calls: Mutex<Vec<(String, Duration)>>,
    /// (action, input, idempotency key) of every call, in order.
    inputs: Mutex<Vec<(String, Value, String)>>,
    start: Instant,
    work: Duration,
    in_flight: Mutex<(usize, usize)>,
    enabled: bool,
}

impl Fake {
    pub(super) fn new(specs: Vec<ActionSpec>) -> Self {
        Self {
            specs,
            replies: Mutex::new(HashMap::new()),
            calls: Mutex::new(Vec::new()),
            inputs: Mutex::new(Vec::new()),
            start: Instant::now(),
            work: Duration::ZERO,
            in_flight: Mutex::new((0, 0)),
            enabled: true,
        }
    }

    pub(super) fn reply(self, action: &str, replies: Vec<Reply>) -> Self {
        self.replies
            .lock()
            .expect("lock")
            .insert(action.to_owned(), replies.into());
        self
    }

    fn call_times(&self) -> Vec<f64> {
        self.calls
            .lock()
            .expect("lock")
            .iter()
            .map(|(_, t)| t.as_secs_f64())
            .collect()
    }

    fn max_in_flight(&self) -> usize {
        self.in_flight.lock().expect("lock").1
    }

    /// The actions called, in order.
    pub(super) fn called(&self) -> Vec<String> {
        self.inputs
            .lock()
            .expect("lock")
            .iter()
            .map(|(a, _, _)| a.clone())
            .collect()
    }

    /// (input, idempotency key) of every call of `action`.
    pub(super) fn inputs_of(&self, action: &str) -> Vec<(Value, String)> {
        self.inputs
            .lock()
            .expect("lock")
            .iter()
            .filter(|(a, _, _)| a == action)
            .map(|(_, i, k)| (i.clone(), k.clone()))
            .collect()
    }
}

pub(super) fn spec(action: &str, read_only: bool, basis: Basis, output: Value) -> ActionSpec {
    ActionSpec {
        plugin: "fake".to_owned(),
        action: action.to_owned(),
        description: String::new(),
        input_schema: std::sync::Arc::new(json!({"type": "object"})),
        output_schema: std::sync::Arc::new(output),
        read_only,
        basis,
        captures: Vec::new(),
        resume: ResumePolicy::Refuse,
        revoke: None,
        key_id: None,
    }
}

impl ActionCatalog for Fake {
    fn plugins(&self) -> Vec<String> {
        vec!["fake".to_owned()]
    }
    fn lookup(&self, plugin: &str, action: &str) -> Option<ActionSpec> {
        (plugin == "fake")
            .then(|| self.specs.iter().find(|s| s.action == action).cloned())
            .flatten()
    }
    fn is_enabled(&self, spec: &ActionSpec) -> bool {
        self.enabled || spec.basis == Basis::Documented
    }
}

struct Runner(Arc<Fake>);

impl ActionRunner for Runner {
    fn invoke(&self, call: ActionCall) -> BoxFuture<'static, Result<Value, ActionError>> {
        let fake = self.0.clone();
        Box::pin(async move {
            let at = fake.start.elapsed();
            fake.calls.lock().expect("lock").push((call.action.clone(), at));
            fake.inputs.lock().expect("lock").push((
                call.action.clone(),
                call.input.clone(),
                call.idempotency_key.clone(),
            ));
            {
                let mut f = fake.in_flight.lock().expect("lock");
                f.0 += 1;
                f.1 = f.1.max(f.0);
            }
            tokio::time::sleep(fake.work).await;
            fake.in_flight.lock().expect("lock").0 -= 1;
            let reply = fake
                .replies
                .lock()
                .expect("lock")
                .get_mut(&call.action)
                .and_then(VecDeque::pop_front);
            reply.unwrap_or_else(|| Ok(json!({"item": call.input.get("item").cloned()})))
        })
    }
}

pub(super) struct Harness {
    pub(super) fake: Arc<Fake>,
    pub(super) executor: Executor,
    pub(super) recorder: Arc<Recorder>,
    pub(super) store: Arc<MemoryStore>,
}

fn harness(fake: Fake, operator: Arc<dyn Operator>) -> Harness {
    harness_with(fake, operator, Arc::new(crate::journal::NoJournal))
}

pub(super) fn harness_with(fake: Fake, operator: Arc<dyn Operator>, journal: Arc<dyn Journal>) -> Harness {
    let fake = Arc::new(fake);
    let recorder = Arc::new(Recorder::default());
    let store = Arc::new(MemoryStore::new());
    let fixed = time::OffsetDateTime::UNIX_EPOCH;
    let executor = Executor {
        catalog: fake.clone(),
        runner: Arc::new(Runner(fake.clone())),
        store: store.clone(),
        operator,
        reporter: recorder.clone(),
        journal,
        clock: Arc::new(move || fixed),
    };
    Harness {
        fake,
        executor,
        recorder,
        store,
    }
}

pub(super) async fn run(h: &Harness, yaml: &str, opts: RunOptions) -> RunReport {
    let loaded = load_source(Source::new("t.yaml", yaml), h.fake.as_ref())
        .unwrap_or_else(|d| panic!("test playbook is invalid:\n{}", d.render()));
    let opts = RunOptions {
        run_id: Some("r1".to_owned()),
        seed: Some(7),
        ..opts
    };
    h.executor.run(&loaded, &opts).await.expect("the run starts")
}

fn one_step(extra: &str) -> String {
    format!("name: t\ndescription: t\nsteps:\n  - id: call\n    uses: fake.get\n{extra}")
}

pub(super) fn status_of(r: &RunReport, id: &str) -> Option<StepStatus> {
    r.steps.iter().find(|s| s.id == id).map(|s| s.status)
}

pub(super) fn upstream(status: u16) -> Reply {
    Err(ActionError::Upstream {
        status,
        body: "try later".to_owned(),
    })
}

fn open() -> Value {
    json!({"type": "object"})
}

#[tokio::test(start_paused = true)]
async fn transient_errors_back_off_exponentially() {
    let fake = Fake::new(vec![spec("get", true, Basis::Documented, open())]).reply(
        "get",
        vec![upstream(503), upstream(502), upstream(500), Ok(json!({}))],
    );
    let h = harness(fake, Arc::new(Absent));
    let r = run(
        &h,
        &one_step("    retry: {attempts: 4, delay: 1s, factor: 2, jitter: false}\n"),
        RunOptions::default(),
    )
    .await;
    assert_eq!(r.outcome, Outcome::Succeeded);
    assert_eq!(h.fake.call_times(), vec![0.0, 1.0, 3.0, 7.0]);
    assert_eq!(r.steps.first().map(|s| s.attempts), Some(4));
}

#[tokio::test(start_paused = true)]
async fn backoff_is_capped_by_max_delay() {
    let fake = Fake::new(vec![spec("get", true, Basis::Documented, open())]).reply(
        "get",
        vec![upstream(503), upstream(503), upstream(503), Ok(json!({}))],
    );
    let h = harness(fake, Arc::new(Absent));
    let retry = "    retry: {attempts: 4, delay: 2s, factor: 10, max_delay: 5s, jitter: false}\n";
    run(&h, &one_step(retry), RunOptions::default()).await;
    assert_eq!(h.fake.call_times(), vec![0.0, 2.0, 7.0, 12.0]);
}

#[tokio::test(start_paused = true)]
async fn jitter_stays_between_half_and_full_delay_and_is_seeded() {
    let mk = || {
        Fake::new(vec![spec("get", true, Basis::Documented, open())]).reply(
            "get",
            vec![upstream(503), upstream(503), upstream(503), Ok(json!({}))],
        )
    };
    let retry = "    retry: {attempts: 4, delay: 4s, factor: 2}\n";
    let h1 = harness(mk(), Arc::new(Absent));
    run(&h1, &one_step(retry), RunOptions::default()).await;
    let t = h1.fake.call_times();
    let gaps: Vec<f64> = t.windows(2).map(|w| w[1] - w[0]).collect();
    for (gap, full) in gaps.iter().zip([4.0, 8.0, 16.0]) {
        assert!(
            *gap >= full / 2.0 && *gap <= full,
            "gap {gap} outside [{}, {full}]",
            full / 2.0
        );
    }
    let h2 = harness(mk(), Arc::new(Absent));
    run(&h2, &one_step(retry), RunOptions::default()).await;
    assert_eq!(h2.fake.call_times(), t, "same seed, same waits");
}

#[tokio::test(start_paused = true)]
async fn retry_after_from_the_vendor_is_respected() {
    let fake = Fake::new(vec![spec("get", true, Basis::Documented, open())]).reply(
        "get",
        vec![
            Err(ActionError::RateLimited {
                retry_after: Some(Duration::from_secs(10)),
            }),
            Ok(json!({})),
        ],
    );
    let h = harness(fake, Arc::new(Absent));
    run(
        &h,
        &one_step("    retry: {attempts: 2, delay: 1s, jitter: false}\n"),
        RunOptions::default(),
    )
    .await;
    assert_eq!(h.fake.call_times(), vec![0.0, 10.0]);
}

#[tokio::test(start_paused = true)]
async fn permanent_errors_are_not_retried() {
    let fake = Fake::new(vec![spec("get", true, Basis::Documented, open())]).reply(
        "get",
        vec![Err(ActionError::Unauthorized("bad key".into())), Ok(json!({}))],
    );
    let h = harness(fake, Arc::new(Absent));
    let r = run(&h, &one_step("    retry: {attempts: 5}\n"), RunOptions::default()).await;
    assert_eq!(r.outcome, Outcome::Failed);
    assert_eq!(h.fake.call_times().len(), 1);
    assert_eq!(r.steps.first().and_then(|s| s.error_kind), Some("unauthorized"));
}

#[tokio::test(start_paused = true)]
async fn a_timed_out_read_is_retried_but_a_timed_out_change_is_not() {
    let yaml = |action: &str| {
        format!(
            "name: t\ndescription: t\nsteps:\n  - id: call\n    uses: fake.{action}\n    timeout: 1s\n    retry: {{attempts: 3, delay: 1s, jitter: false}}\n"
        )
    };
    let mut slow = Fake::new(vec![
        spec("get", true, Basis::Documented, open()),
        spec("delete", false, Basis::Documented, open()),
    ]);
    slow.work = Duration::from_secs(5);
    let h = harness(slow, Arc::new(Absent));
    let r = run(&h, &yaml("get"), RunOptions::default()).await;
    assert_eq!(
        h.fake.call_times(),
        vec![0.0, 2.0, 5.0],
        "read-only: 3 attempts, each cut at 1s, then waits of 1s and 2s"
    );
    assert_eq!(r.outcome, Outcome::Failed);
    let mut slow = Fake::new(vec![spec("delete", false, Basis::Documented, open())]);
    slow.work = Duration::from_secs(5);
    let h = harness(slow, Arc::new(Absent));
    let r = run(&h, &yaml("delete"), RunOptions::default()).await;
    assert_eq!(
        h.fake.call_times().len(),
        1,
        "a change that timed out may have happened: not retried"
    );
    assert!(r.failure.unwrap_or_default().contains("timed out after 1s"));
}

#[tokio::test(start_paused = true)]
async fn for_each_runs_at_most_concurrency_items_at_once() {
    let mut fake = Fake::new(vec![spec("get", true, Basis::Documented, open())]);
    fake.work = Duration::from_secs(1);
    let h = harness(fake, Arc::new(Absent));
    let yaml = "name: t\ndescription: t\nsteps:\n  - id: call\n    for_each: [a, b, c, d, e, f]\n    concurrency: 2\n    uses: fake.get\n    with: {item: \"{{item}}\"}\n";
    let start = Instant::now();
    let r = run(&h, yaml, RunOptions::default()).await;
    assert_eq!(start.elapsed(), Duration::from_secs(3));
    assert_eq!(h.fake.max_in_flight(), 2);
    let outputs = r.steps.first().map(|s| s.outputs.clone()).unwrap_or_default();
    assert_eq!(
        outputs,
        json!([{"item": "a"}, {"item": "b"}, {"item": "c"}, {"item": "d"}, {"item": "e"}, {"item": "f"}])
    );
}

#[tokio::test(start_paused = true)]
async fn compensation_runs_in_order_then_finally_and_the_run_still_fails() {
    let fake = Fake::new(vec![spec("get", true, Basis::Documented, open())])
        .reply("get", vec![Err(ActionError::Conflict("already exists".into()))]);
    let h = harness(fake, Arc::new(Absent));
    let yaml = "name: t\ndescription: t\nsteps:\n  - id: a\n    uses: core.log\n    with: {message: a}\n  - id: b\n    uses: fake.get\n  - id: c\n    uses: core.log\n    with: {message: c}\non_failure:\n  - id: undo1\n    uses: core.assert\n    with: {that: false}\n  - id: undo2\n    uses: core.log\n    with: {message: undo2}\nfinally:\n  - id: fin\n    uses: core.log\n    with: {message: fin}\n";
    let r = run(&h, yaml, RunOptions::default()).await;
    let order: Vec<(&str, StepStatus)> = r.steps.iter().map(|s| (s.id.as_str(), s.status)).collect();
    assert_eq!(
        order,
        vec![
            ("a", StepStatus::Succeeded),
            ("b", StepStatus::Failed),
            ("undo1", StepStatus::Failed),
            ("undo2", StepStatus::Succeeded),
            ("fin", StepStatus::Succeeded)
        ]
    );
    assert_eq!(r.outcome, Outcome::Failed);
    assert_eq!(
        r.failure.as_deref(),
        Some("step b failed: fake.get: conflict: already exists")
    );
}

#[tokio::test(start_paused = true)]
async fn a_declined_confirmation_stops_the_run_and_compensates() {
    let h = harness(Fake::new(vec![]), Arc::new(Scripted::new(&[false], &[])));
    let yaml = "name: t\ndescription: t\nsteps:\n  - id: del\n    confirm: Delete secret 8a1f?\n    uses: core.log\n    with: {message: deleted}\non_failure:\n  - id: undo\n    uses: core.log\n    with: {message: undone}\n";
    let r = run(&h, yaml, RunOptions::default()).await;
    assert_eq!(r.outcome, Outcome::Declined);
    assert_eq!(status_of(&r, "del"), Some(StepStatus::Failed));
    assert_eq!(status_of(&r, "undo"), Some(StepStatus::Succeeded));
    let said: Vec<String> = h
        .recorder
        .events()
        .into_iter()
        .filter_map(|e| match e {
            Event::Message { message, .. } => Some(message),
            _ => None,
        })
        .collect();
    assert_eq!(said, vec!["undone".to_owned()], "the declined step did nothing");
}

#[tokio::test(start_paused = true)]
async fn an_accepted_confirmation_runs_the_step() {
    let operator = Arc::new(Scripted::new(&[true], &[]));
    let h = harness(Fake::new(vec![]), operator.clone());
    let yaml = "name: t\ndescription: t\ninputs:\n  id: {type: string}\nsteps:\n  - id: del\n    confirm: \"Delete secret {{inputs.id}}?\"\n    uses: core.log\n    with: {message: deleted}\n";
    let mut opts = RunOptions::default();
    opts.supplied.add_cli("id=8a1f").expect("valid pair");
    let r = run(&h, yaml, opts).await;
    assert_eq!(r.outcome, Outcome::Succeeded);
    assert_eq!(
        operator.transcript(),
        vec!["confirm: Delete secret 8a1f?".to_owned()]
    );
}

const MODELED_WITH_FALLBACK: &str = "name: t\ndescription: t\nsecrets:\n  new: {name: vendor/new}\nsteps:\n  - id: add\n    uses: fake.add\n    captures: {secret: new}\n    manual:\n      instructions: Click Add and copy the New Secret.\n      outputs:\n        id: {prompt: Secret ID}\n        secret: {prompt: New secret, type: secret, secret: new}\n  - id: use\n    uses: core.log\n    with: {message: \"added {{steps.add.outputs.id}}\"}\n";

fn add_spec() -> ActionSpec {
    let mut s = spec(
        "add",
        false,
        Basis::Modeled,
        json!({
            "type": "object",
            "properties": {"id": {"type": "string"}, "secret": {"x-rota-secret": true}},
            "required": ["id", "secret"],
            "additionalProperties": false
        }),
    );
    s.captures = vec!["secret".to_owned()];
    s
}

#[tokio::test(start_paused = true)]
async fn a_modeled_action_that_is_not_enabled_runs_its_manual_fallback() {
    let mut fake = Fake::new(vec![add_spec()]);
    fake.enabled = false;
    let operator = Arc::new(Scripted::new(&[], &["c93e", "typed-secret-value"]));
    let h = harness(fake, operator.clone());
    let r = run(&h, MODELED_WITH_FALLBACK, RunOptions::default()).await;
    assert_eq!(r.outcome, Outcome::Succeeded, "{:?}", r.failure);
    assert!(h.fake.call_times().is_empty(), "the modeled action never ran");
    let outputs = r.steps.first().map(|s| s.outputs.clone()).unwrap_or_default();
    assert_eq!(
        outputs,
        json!({"id": "c93e", "secret": {"$secret": "vendor/new@1"}})
    );
    let stored = h.store.get(&SecretRef::new("vendor/new", 1)).expect("stored");
    assert_eq!(stored, Secret::new("typed-secret-value"));
    let events = serde_json::to_string(&h.recorder.events()).expect("serializable");
    let transcript = operator.transcript().join("\n");
    for text in [
        &events,
        &transcript,
        &serde_json::to_string(&r).expect("serializable"),
    ] {
        assert!(!text.contains("typed-secret-value"), "secret leaked: {text}");
    }
}

/// Regression: a manual answer the action could never return (a check
/// answered "no" where it outputs `ok: {const: true}`) fails the step
/// instead of passing as success.
#[tokio::test(start_paused = true)]
async fn a_manual_answer_outside_the_output_schema_fails_the_step() {
    let check = spec(
        "check",
        true,
        Basis::Modeled,
        json!({"type": "object", "properties": {"ok": {"const": true}}, "required": ["ok"]}),
    );
    let yaml = "name: t\ndescription: t\nsteps:\n  - id: check\n    uses: fake.check\n    manual:\n      instructions: Test the connection.\n      outputs:\n        ok: {prompt: Did it pass, type: boolean}\n  - id: after\n    uses: core.log\n    with: {message: passed}\n";
    for (answer, outcome) in [("no", Outcome::Failed), ("yes", Outcome::Succeeded)] {
        let mut fake = Fake::new(vec![check.clone()]);
        fake.enabled = false;
        let h = harness(fake, Arc::new(Scripted::new(&[], &[answer])));
        let r = run(&h, yaml, RunOptions::default()).await;
        assert_eq!(r.outcome, outcome, "answer {answer}: {:?}", r.failure);
        if outcome == Outcome::Failed {
            let failure = r.failure.clone().unwrap_or_default();
            assert!(
                failure.contains("manual output \"ok\" is not what fake.check would return"),
                "{failure}"
            );
            assert_eq!(status_of(&r, "after"), None, "nothing ran after the failed check");
        }
    }
}

#[tokio::test(start_paused = true)]
async fn an_enabled_modeled_action_runs_automatically() {
    let fake = Fake::new(vec![add_spec()]).reply(
        "add",
        vec![Ok(json!({"id": "c93e", "secret": {"$secret": "vendor/new@1"}}))],
    );
    let h = harness(fake, Arc::new(Absent));
    let r = run(&h, MODELED_WITH_FALLBACK, RunOptions::default()).await;
    assert_eq!(r.outcome, Outcome::Succeeded);
    assert_eq!(h.fake.call_times().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_plan_runs_read_only_actions_and_nothing_that_changes() {
    let fake = Fake::new(vec![
        spec("get", true, Basis::Documented, open()),
        spec("delete", false, Basis::Documented, open()),
    ]);
    let h = harness(fake, Arc::new(Absent));
    let yaml = "name: t\ndescription: t\nsteps:\n  - id: read\n    uses: fake.get\n  - id: change\n    confirm: really?\n    uses: fake.delete\n";
    let r = run(
        &h,
        yaml,
        RunOptions {
            dry_run: true,
            ..RunOptions::default()
        },
    )
    .await;
    assert_eq!(r.outcome, Outcome::Planned);
    let calls: Vec<String> = h
        .fake
        .calls
        .lock()
        .expect("lock")
        .iter()
        .map(|(a, _)| a.clone())
        .collect();
    assert_eq!(calls, vec!["get".to_owned()]);
    assert_eq!(status_of(&r, "change"), Some(StepStatus::Planned));
}

/// A journal that keeps only the credentials recorded.
#[derive(Default)]
struct Credentials(Mutex<Vec<Value>>);

impl crate::journal::Journal for Credentials {
    fn run_started(&self, _: &str, _: &Value, _: &[String]) -> Result<(), JournalError> {
        Ok(())
    }
    fn step_started(&self, _: &str, _: At<'_>, _: u32) -> Result<(), JournalError> {
        Ok(())
    }
    fn intent(&self, _: &str, _: At<'_>, _: &crate::journal::IntentRecord<'_>) -> Result<(), JournalError> {
        Ok(())
    }
    fn reconciled(&self, _: &str, _: At<'_>, _: &crate::reconcile::Reconciled) -> Result<(), JournalError> {
        Ok(())
    }
    fn revoked(&self, _: &str, _: At<'_>, _: &crate::reconcile::Revoked) -> Result<(), JournalError> {
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
    fn record_credential(&self, _: &str, report: &Value) -> Result<(), JournalError> {
        self.0.lock().expect("lock").push(report.clone());
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn credentials_an_action_lists_under_inventory_are_recorded_but_not_by_a_plan() {
    let seen = json!({"inventory": [{"account": "acme", "key_id": "k1", "expires": null}]});
    let fake = Fake::new(vec![spec("list", true, Basis::Documented, open())])
        .reply("list", vec![Ok(seen.clone()), Ok(seen)]);
    let mut h = harness(fake, Arc::new(Absent));
    let credentials = Arc::new(Credentials::default());
    h.executor.journal = credentials.clone();
    let yaml = "name: t\ndescription: t\nsteps:\n  - id: list\n    uses: fake.list\n";
    let r = run(&h, yaml, RunOptions::default()).await;
    assert_eq!(r.outcome, Outcome::Succeeded);
    let recorded = credentials.0.lock().expect("lock").clone();
    assert_eq!(
        recorded,
        vec![
            json!({"account": "acme", "key_id": "k1", "expires": null, "vendor": "fake",
                    "status": "active"})
        ]
    );
    let plan = RunOptions {
        dry_run: true,
        ..RunOptions::default()
    };
    assert_eq!(run(&h, yaml, plan).await.outcome, Outcome::Planned);
    assert_eq!(
        credentials.0.lock().expect("lock").len(),
        1,
        "a plan records nothing"
    );
}

#[tokio::test(start_paused = true)]
async fn a_plan_says_what_each_item_would_do_in_the_steps_own_words() {
    let fake = Fake::new(vec![spec("delete", false, Basis::Documented, open())]);
    let h = harness(fake, Arc::new(Absent));
    let yaml = "name: t\ndescription: t\nsteps:\n  - id: drop\n    uses: fake.delete\n    for_each: [{id: a1, until: \"2025-01-01\"}, {id: b2, until: \"2026-01-01\"}]\n    describe: \"delete secret {{item.id}} valid until {{item.until}}\"\n    with: {id: \"{{item.id}}\"}\n";
    let plan = RunOptions {
        dry_run: true,
        ..RunOptions::default()
    };
    assert_eq!(run(&h, yaml, plan).await.outcome, Outcome::Planned);
    let said: Vec<String> = h
        .recorder
        .events()
        .into_iter()
        .filter_map(|e| match e {
            Event::WouldDo { description, .. } => Some(description),
            _ => None,
        })
        .collect();
    assert_eq!(
        said,
        vec![
            "would delete secret a1 valid until 2025-01-01".to_owned(),
            "would delete secret b2 valid until 2026-01-01".to_owned()
        ]
    );
    assert!(h.fake.calls.lock().expect("lock").is_empty());
}

/// An `if` that does not read `item` is decided before the for_each list is
/// rendered: a step listing what a recovered step would have returned is
/// skipped instead of failing on the missing list.
#[tokio::test(start_paused = true)]
async fn an_if_without_item_is_decided_before_the_for_each_list() {
    let out = json!({"type": "object", "properties": {"ids": {"type": "array"}}});
    let fake = Fake::new(vec![spec("get", true, Basis::Documented, out)])
        .reply("get", vec![Err(ActionError::NotFound("no registry".into()))]);
    let h = harness(fake, Arc::new(Absent));
    let yaml = "name: t\ndescription: t\nsteps:\n  - id: list\n    uses: fake.get\n    recoverable: true\n  - id: each\n    if: '{{eq steps.list.status \"succeeded\"}}'\n    for_each: '{{steps.list.outputs.ids}}'\n    uses: core.log\n    with: {message: \"{{item}}\"}\n  - id: per_item\n    if: '{{ne item \"b\"}}'\n    for_each: [a, b]\n    uses: core.log\n    with: {message: \"{{item}}\"}\n";
    let r = run(&h, yaml, RunOptions::default()).await;
    assert_eq!(r.outcome, Outcome::Succeeded, "{:?}", r.failure);
    assert_eq!(status_of(&r, "list"), Some(StepStatus::Recovered));
    assert_eq!(status_of(&r, "each"), Some(StepStatus::Skipped));
    let per_item = r
        .steps
        .iter()
        .find(|s| s.id == "per_item")
        .map(|s| s.outputs.clone());
    assert_eq!(
        per_item,
        Some(json!([{}, {"skipped": true}])),
        "an `if` reading item is still per item"
    );
}

/// Regression: a changing step whose input needs a secret an earlier
/// changing step would mint still says, in a plan, what it would do.
#[tokio::test(start_paused = true)]
async fn a_plan_describes_a_step_whose_input_waits_on_an_unplanned_step() {
    let fake = Fake::new(vec![
        spec("mint", false, Basis::Documented, open()),
        spec("hand", false, Basis::Documented, open()),
    ]);
    let h = harness(fake, Arc::new(Absent));
    let yaml = "name: t\ndescription: t\nsteps:\n  - id: mint\n    uses: fake.mint\n  - id: hand\n    uses: fake.hand\n    for_each: [app-a, app-b]\n    describe: \"give {{item}} the new key\"\n    with: {key: \"{{steps.mint.outputs.key}}\", app: \"{{item}}\"}\n";
    let plan = RunOptions {
        dry_run: true,
        ..RunOptions::default()
    };
    assert_eq!(run(&h, yaml, plan).await.outcome, Outcome::Planned);
    let said: Vec<String> = h
        .recorder
        .events()
        .into_iter()
        .filter_map(|e| match e {
            Event::WouldDo { id, description, .. } if id == "hand" => Some(description),
            _ => None,
        })
        .collect();
    assert_eq!(
        said,
        vec![
            "would give app-a the new key".to_owned(),
            "would give app-b the new key".to_owned()
        ]
    );
    assert!(h.fake.calls.lock().expect("lock").is_empty());
}
