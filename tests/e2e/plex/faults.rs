//! plex-api-key-reset under faults: transient trouble on every Plex and
//! DemandCaster route (the run must still complete, by retrying), permanent
//! refusals at changing steps (the run fails, its compensation leaves
//! DemandCaster on a live secret and loses nothing), and DemandCaster's
//! background sync with Plex, which must see no failure during the reset.
//!
//! Design decision: one simulator process per test, with the fault rules
//! swapped through the admin API between cases, so a case costs one run.

use serde_json::{Value, json};

use super::{Rig, events, finished, reset_done};

/// About 20% of all calls fail transiently: 503s, 429s with Retry-After,
/// connections dropped before the vendor acts, and answers cut off after it
/// acted (the nastiest: the change happened, the caller cannot know).
fn transient(seed: u64) -> Value {
    let rules = json!([
        {"path": "/**", "rate": 0.08, "kind": "status", "status": 503},
        {"path": "/**", "rate": 0.04, "kind": "rate_limit", "retry_after_secs": 2},
        {"path": "/**", "rate": 0.04, "kind": "drop"},
        {"path": "/**", "rate": 0.04, "kind": "truncate"},
    ]);
    json!({"seed": seed, "rules": rules})
}

fn set_faults(rig: &Rig, system: &str, settings: &Value) {
    let (status, v) = rig.sims.admin("PUT", system, "/admin/faults", Some(settings));
    assert_eq!(status, 200, "faults of {system}: {v}");
}

/// The faults a system injected: (method, path, kind).
fn injected(rig: &Rig, system: &str) -> Vec<(String, String, String)> {
    let (_, v) = rig.sims.admin("GET", system, "/admin/faults", None);
    v["log"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            let text = |k: &str| e[k].as_str().unwrap_or_default().to_owned();
            (text("method"), text("path"), text("kind"))
        })
        .collect()
}

/// Three named fault seeds that complete: each retries its way through
/// every kind of transient failure and ends exactly like a clean run.
#[test]
fn transient_faults_on_every_route_are_retried_to_the_same_end() {
    let template = Rig::start("{}", true);
    let mut lost_answers = Vec::new();
    for seed in [11_u64, 23, 47] {
        let mut rig = template.fork();
        for system in ["plex", "demandcaster"] {
            set_faults(&rig, system, &transient(seed));
        }
        let out = rig.run(&format!("faults-{seed}"), &[], &[]);
        let faults = (injected(&rig, "plex"), injected(&rig, "demandcaster"));
        for system in ["plex", "demandcaster"] {
            set_faults(&rig, system, &json!({"seed": 0, "rules": []}));
        }
        assert_eq!(out.status, 0, "seed {seed}: {}\n{}", out.stdout, out.stderr);
        let retries = events(&out)
            .iter()
            .filter(|e| e["event"] == "step_retrying")
            .count();
        assert!(retries > 0, "seed {seed}: no retry happened");
        assert!(
            !faults.0.is_empty() && !faults.1.is_empty(),
            "seed {seed}: faults injected {faults:?}"
        );
        lost_answers.extend(
            faults
                .0
                .iter()
                .chain(&faults.1)
                .filter(|(method, _, kind)| kind == "truncate" && method != "GET")
                .map(|(method, path, _)| format!("{method} {path}")),
        );
        assert_eq!(rig.outcome(), reset_done(), "seed {seed}");
        rig.scan();
    }
    // The seeds include changes whose answer was lost after the vendor acted.
    assert!(!lost_answers.is_empty(), "no changing call lost its answer");
    println!("changing calls whose answer was cut off: {lost_answers:?}");
}

/// Plex adds the secret (and deletes the expired one) but the answer is cut
/// off: the caller cannot know the change happened. rota settles each such
/// call with the plugin's reconcile actions before going on: a delete whose
/// ID is gone is done (adopted, not repeated); the secret the add made,
/// whose value rota never got, is revoked before the add is made again. One
/// new secret, as if nothing had happened. (Fault seed 6: the first add,
/// the expired secret's delete and the old secret's delete lose their
/// answer; the orphan's revoke and the second add do not; the fault log
/// below proves it.)
#[test]
fn lost_answers_of_an_add_and_a_delete_leave_no_stray_secret() {
    let mut rig = Rig::start("{}", true);
    let rules = json!([
        {"method": "POST", "path": "/platform/v1/client-applications/*/secrets", "rate": 0.5, "kind": "truncate"},
        {"method": "DELETE", "path": "/platform/v1/client-applications/*/secrets/*", "rate": 0.5, "kind": "truncate"},
    ]);
    set_faults(&rig, "plex", &json!({"seed": 6, "rules": rules}));
    let out = rig.run("r1", &[], &[]);
    assert_eq!(out.status, 0, "{}\n{}", out.stdout, out.stderr);
    let cut: Vec<String> = injected(&rig, "plex")
        .into_iter()
        .map(|(method, _, kind)| format!("{method} {kind}"))
        .collect();
    assert_eq!(
        cut,
        ["DELETE truncate", "POST truncate", "DELETE truncate"],
        "the faults this test is about"
    );
    let of = |event: &str, text: &str| -> Vec<String> {
        events(&out)
            .iter()
            .filter(|e| e["event"] == event && e["message"].as_str().unwrap_or_default().contains(text))
            .filter_map(|e| e["id"].as_str().map(str::to_owned))
            .collect()
    };
    assert_eq!(
        of("message", "failed after it may have reached the vendor"),
        ["delete_expired_secret", "add_new_secret", "delete_old_secret"],
        "every lost answer was settled by reading the grid"
    );
    assert_eq!(
        of("step_retrying", ""),
        ["add_new_secret"],
        "only the add was made again"
    );
    assert_eq!(rig.outcome(), reset_done());
    rig.scan();
}

/// A permanent refusal at a changing step, by route: the run fails, and
/// compensation leaves what the seed rules want.
struct Refusal {
    what: &'static str,
    system: &'static str,
    method: &'static str,
    path: String,
    /// (step, status) that must appear among the finished steps.
    steps: &'static [(&'static str, &'static str)],
    outcome: Value,
}

#[test]
fn a_permanent_refusal_fails_the_run_and_compensation_loses_nothing() {
    let template = Rig::start("{}", true);
    let old = template.fixture.old.0.clone();
    let cases = [
        // DemandCaster never got the new secret: it is deleted at Plex and
        // dropped from the store; the old one is untouched.
        Refusal {
            what: "entering the business node",
            system: "demandcaster",
            method: "POST",
            path: "/api/business-nodes/{id}/enter".to_owned(),
            steps: &[
                ("enter_business_node", "failed"),
                ("delete_unused_secret", "succeeded"),
                ("discard_unused_secret", "succeeded"),
                ("keep_both_secrets", "skipped"),
            ],
            outcome: json!({
                "plex": ["old"],
                "demandcaster": {"client_id": "unchanged", "secret": "old", "last_test_ok": null},
                "store": [],
                "untouched": true,
            }),
        },
        // Whether DemandCaster saved it cannot be known in general: both
        // secrets stay, the new one pending in the store.
        Refusal {
            what: "saving the PCN connection",
            system: "demandcaster",
            method: "PUT",
            path: "/api/datahub/plex/pcns/{id}".to_owned(),
            steps: &[
                ("update_pcn_connection", "failed"),
                ("delete_unused_secret", "skipped"),
                ("keep_both_secrets", "succeeded"),
            ],
            outcome: json!({
                "plex": ["old", "new (pending)"],
                "demandcaster": {"client_id": "unchanged", "secret": "old", "last_test_ok": null},
                "store": ["pending"],
                "untouched": true,
            }),
        },
        // DemandCaster works with the new secret; the old one is left, and
        // the operator is told which ID to delete.
        Refusal {
            what: "deleting the old secret",
            system: "plex",
            method: "DELETE",
            path: format!("/platform/v1/client-applications/*/secrets/{old}"),
            steps: &[
                ("delete_old_secret", "failed"),
                ("keep_both_secrets", "skipped"),
                ("old_secret_left", "succeeded"),
            ],
            outcome: json!({
                "plex": ["old", "new (current)"],
                "demandcaster": {"client_id": "unchanged", "secret": "new (current)", "last_test_ok": true},
                "store": ["current"],
                "untouched": true,
            }),
        },
    ];
    for case in cases {
        let mut rig = template.fork();
        let rule =
            json!({"method": case.method, "path": case.path, "rate": 1.0, "kind": "status", "status": 403});
        set_faults(&rig, case.system, &json!({"seed": 1, "rules": [rule]}));
        let out = rig.run("refused", &[], &[]);
        set_faults(&rig, case.system, &json!({"seed": 0, "rules": []}));
        assert_eq!(out.status, 1, "{}: {}\n{}", case.what, out.stdout, out.stderr);
        let steps = finished(&out);
        for (id, status) in case.steps {
            assert!(
                steps.contains(&((*id).to_owned(), (*status).to_owned())),
                "{}: {id} {status}: {steps:?}",
                case.what
            );
        }
        assert_eq!(rig.outcome(), case.outcome, "{}", case.what);
        rig.scan();
    }
}

/// DemandCaster's Data Connector keeps pulling from Plex (every 20 ms)
/// through the whole reset: not one pull fails, before, during or after.
#[test]
fn demandcaster_sees_no_downtime_during_the_reset() {
    let mut rig = Rig::start(r#"{"background_interval_ms": 20}"#, true);
    let out = rig.run("r1", &[], &[]);
    assert_eq!(out.status, 0, "{}\n{}", out.stdout, out.stderr);
    rig.sims.tick("demandcaster");
    assert_eq!(rig.outcome(), reset_done());
    let dc = rig.sims.state("demandcaster");
    let pulls: Vec<&Value> = dc["syncLog"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["pcnId"] == 1)
        .collect();
    assert!(pulls.len() > 20, "the sync ran throughout: {} pulls", pulls.len());
    let failed: Vec<&&Value> = pulls.iter().filter(|e| e["ok"] != true).collect();
    assert!(
        failed.is_empty(),
        "DemandCaster lost Plex during the reset: {failed:?}"
    );
    rig.scan();
}
