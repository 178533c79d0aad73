//! Faults at the SOAR API: transient ones (503s and 429s on every route)
//! are retried to the same end state; a permanent one on a changing step
//! fails the run, after which only apps holding a working secret run again
//! and the others are named with what to do. The App Host signs in every
//! 20 ms throughout: not one login may fail.

use serde_json::{Value, json};

use super::{
    NEW_SECRET, Rig, SEED, USERS, app_secrets, assert_regenerated, events, failed_logins, key, settled,
    status,
};

fn settings(fault_seed: u64, rules: Value) -> Value {
    json!({"seed": SEED, "fault_seed": fault_seed, "background_interval_ms": 20, "faults": {"soar": rules}})
}

/// 20% of every request to the SOAR API fails transiently (10% 503, 5%
/// dropped connections, 5% 429 with Retry-After), for three fault seeds:
/// the run completes, retrying.
#[test]
fn transient_faults_on_every_route_are_retried_to_the_same_end_state() {
    let rules = json!([
        {"path": "/**", "rate": 0.10, "kind": "status", "status": 503},
        {"path": "/**", "rate": 0.05, "kind": "drop"},
        {"path": "/**", "rate": 0.05, "kind": "rate_limit", "retry_after_secs": 1}
    ]);
    let mut kinds = std::collections::BTreeSet::new();
    for fault_seed in [7_u64, 1234, 90_210] {
        let mut r = Rig::new(&settings(fault_seed, rules.clone()), true);
        let out = r.regenerate("fn_soar_utils", &["--output", "json"]);
        assert_eq!(
            out.status, 0,
            "fault seed {fault_seed}:\n{}\n{}",
            out.stdout, out.stderr
        );
        let retries = events(&out)
            .into_iter()
            .filter(|e| e["event"] == "step_retrying")
            .count();
        assert!(retries > 0, "fault seed {fault_seed}: no step was retried");
        let (_, faults) = r.sims.admin("GET", "soar", "/admin/faults", None);
        assert!(
            faults["log"].as_array().is_some_and(|l| !l.is_empty()),
            "fault seed {fault_seed}: faults were injected: {faults}"
        );
        kinds.extend(
            faults["log"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|f| f["kind"].as_str().map(str::to_owned)),
        );
        r.stop_faults();
        r.sims.tick("soar");
        let state = r.state();
        assert_regenerated(&r.before, &state, &format!("fault seed {fault_seed}"));
        assert_eq!(
            failed_logins(&state),
            Vec::<Value>::new(),
            "fault seed {fault_seed}"
        );
        let secret = r.reveal(NEW_SECRET, &[]);
        let id = super::text(&key(&state, "fn_soar_utils")["api_key_id"]);
        assert_eq!(r.signs_in(&id, &secret), 200, "fault seed {fault_seed}");
        r.scan(&[("new secret", &secret)]);
    }
    assert_eq!(
        kinds.into_iter().collect::<Vec<_>>(),
        ["drop", "rate_limit", "status"],
        "every kind of fault was met"
    );
}

/// The playbook with a permanent fault (403) on one route, every time: the
/// rig and the run, which failed.
fn run_refused(method: &str, path: &str) -> (Rig, crate::test::Output) {
    let refused = json!([{"method": method, "path": path, "rate": 1.0, "kind": "status", "status": 403}]);
    let mut r = Rig::new(&settings(1, refused), true);
    let out = r.regenerate("fn_soar_utils", &["--output", "json"]);
    assert_eq!(out.status, 1, "{}\n{}", out.stdout, out.stderr);
    (r, out)
}

fn finished(out: &crate::test::Output, step: &str) -> Option<String> {
    events(out)
        .into_iter()
        .find(|e| e["event"] == "step_finished" && e["id"] == step)
        .and_then(|e| e["status"].as_str().map(str::to_owned))
}

/// Guards seed rule: failing midway, only the apps that already hold the new
/// secret are deployed again; the other is named with what to do, and the
/// new secret (the only one that works now) stays in the store.
#[test]
fn a_failed_secret_update_redeploys_only_the_apps_holding_the_new_secret() {
    let (r, out) = run_refused("PUT", "/rest/orgs/201/apps/8/installations/11/secrets/**");
    assert_eq!(finished(&out, "update_secrets").as_deref(), Some("failed"));
    assert_eq!(finished(&out, "recovery").as_deref(), Some("succeeded"));
    assert_eq!(finished(&out, "redeploy").as_deref(), Some("succeeded"));
    let named: Vec<String> = events(&out)
        .into_iter()
        .filter(|e| e["event"] == "message" && e["id"] == "left_behind" && e["level"] == "warn")
        .filter_map(|e| e["message"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(named.len(), 1, "{named:?}");
    assert!(
        named[0].starts_with(
            "fn_misp: left undeployed: its App Secret still holds the old secret of fn_soar_utils, which no longer works; re-run this playbook, or paste the new secret"
        ),
        "{named:?}"
    );
    assert!(named[0].ends_with("then Deploy on its Details tab"), "{named:?}");
    assert!(
        !named[0].contains("fn_soar_utils:"),
        "fn_soar_utils runs again: {named:?}"
    );
    r.sims.tick("soar");
    let state = r.state();
    let k = key(&state, "fn_soar_utils");
    assert_ne!(
        k["secretFingerprint"],
        key(&r.before, "fn_soar_utils")["secretFingerprint"]
    );
    assert_eq!(
        (k["locked"].clone(), k["failed_login_count"].clone()),
        (json!(false), json!(0))
    );
    assert_eq!(status(&state, "fn_soar_utils"), "deployed");
    assert_eq!(
        app_secrets(&state, "fn_soar_utils"),
        vec![("fn_soar_utils".to_owned(), super::text(&k["secretFingerprint"]))]
    );
    assert_eq!(
        status(&state, "fn_misp"),
        "undeployed",
        "deploying it would lock the account"
    );
    assert_eq!(app_secrets(&state, "fn_misp"), app_secrets(&r.before, "fn_misp"));
    assert_eq!(failed_logins(&state), Vec::<Value>::new());
    r.stop_faults();
    let secret = r.reveal(NEW_SECRET, &[]);
    let id = super::text(&k["api_key_id"]);
    assert_eq!(
        r.signs_in(&id, &secret),
        200,
        "nothing lost: the stored secret works"
    );
    r.scan(&[("new secret", &secret)]);
}

/// A regeneration refused for good leaves the old secret valid: every app
/// is deployed again and nothing is stored.
#[test]
fn a_refused_regeneration_deploys_every_app_again_on_the_old_secret() {
    let (r, out) = run_refused("POST", "/rest/orgs/201/api_keys/12/regenerate_secret");
    assert_eq!(finished(&out, "regenerate").as_deref(), Some("failed"));
    let recovery = super::step_outputs(&out, "recovery");
    assert_eq!(recovery["regenerated"], false, "{recovery}");
    assert_eq!(recovery["redeploy"], "fn_soar_utils,fn_misp", "{recovery}");
    r.sims.tick("soar");
    let state = r.state();
    assert_eq!(settled(&state), settled(&r.before), "back as it was");
    for (name, _) in USERS {
        assert_eq!(status(&state, name), "deployed");
    }
    assert_eq!(failed_logins(&state), Vec::<Value>::new());
    let listed = crate::test::Test::new_in(&r.t).args(&["secrets", "list"]).run();
    assert!(!listed.stdout.contains(NEW_SECRET), "{}", listed.stdout);
    r.scan(&[]);
}

/// An undeploy refused for good, after the first app stopped: the secret
/// was not touched, so the stopped app runs again.
#[test]
fn a_refused_undeploy_restores_the_apps_already_stopped() {
    let (r, out) = run_refused("PUT", "/rest/orgs/201/apps/8/installations/11");
    assert_eq!(finished(&out, "undeploy").as_deref(), Some("failed"));
    assert_eq!(finished(&out, "regenerate"), None, "nothing was regenerated");
    assert_eq!(finished(&out, "redeploy").as_deref(), Some("succeeded"));
    r.sims.tick("soar");
    let state = r.state();
    assert_eq!(settled(&state), settled(&r.before), "back as it was");
    assert_eq!(failed_logins(&state), Vec::<Value>::new());
    r.scan(&[]);
}
