//! The seed's rules: apps still running on the old secret lock the account
//! (so the undeploy step is a guard, proven by skipping it), every app using
//! the account is found by name or by API key ID, a locked account is fixed
//! by the procedure, and rota never regenerates the key it signs in with.

use serde_json::{Value, json};

use super::{Rig, USERS, app_secrets, assert_regenerated, failed_logins, good_logins, key, settled, status};

/// The seed procedure with step 2 (Undeploy) left out, as an operator in a
/// hurry would do it: regenerate while the apps run, take a moment to paste
/// the secret into each app, deploy, look at the API Keys tab.
const WITHOUT_UNDEPLOY: &str = r#"name: soar-regenerate-without-undeploy
description: The seed procedure minus its Undeploy step, to show what the seed warns of.
inputs:
  account: {type: string}
  login_id: {type: string}
  login_secret: {type: secret, send_to: [soar]}
secrets:
  new_secret: {name: "soar-test/{{inputs.account}}/api-key-secret", send_to: [soar]}
steps:
  - id: session
    uses: soar.session
    with: {login_id: "{{inputs.login_id}}", login_secret: "{{inputs.login_secret}}"}
  - id: account
    uses: soar.get-api-key
    with: {login_id: "{{inputs.login_id}}", login_secret: "{{inputs.login_secret}}", org_id: "{{steps.session.outputs.org_id}}", account: "{{inputs.account}}"}
  - id: find
    uses: soar.find-apps
    with: {login_id: "{{inputs.login_id}}", login_secret: "{{inputs.login_secret}}", org_id: "{{steps.session.outputs.org_id}}",
           account: "{{steps.account.outputs.display_name}}", api_key_id: "{{steps.account.outputs.api_key_id}}"}
  - id: regenerate
    uses: soar.regenerate-secret
    captures: {secret: new_secret}
    with: {login_id: "{{inputs.login_id}}", login_secret: "{{inputs.login_secret}}", org_id: "{{steps.session.outputs.org_id}}",
           account_id: "{{steps.account.outputs.id}}", api_key_id: "{{steps.account.outputs.api_key_id}}"}
  - id: copy_paste
    uses: core.sleep
    with: {for: 300ms}
  - id: update_secrets
    for_each: "{{split steps.find.outputs.apps}}"
    uses: soar.update-app-secret
    with: {login_id: "{{inputs.login_id}}", login_secret: "{{inputs.login_secret}}", org_id: "{{steps.session.outputs.org_id}}",
           app: "{{item}}", account: "{{steps.account.outputs.display_name}}", api_key_id: "{{steps.account.outputs.api_key_id}}",
           secret: "{{steps.regenerate.outputs.secret}}"}
  - id: deploy
    for_each: "{{split steps.find.outputs.active}}"
    uses: soar.deploy-app
    with: {login_id: "{{inputs.login_id}}", login_secret: "{{inputs.login_secret}}", org_id: "{{steps.session.outputs.org_id}}", app: "{{item}}"}
  - id: api_keys
    uses: soar.list-api-keys
    with: {login_id: "{{inputs.login_id}}", login_secret: "{{inputs.login_secret}}", org_id: "{{steps.session.outputs.org_id}}"}
"#;

/// Guards seed rule: apps still running with the old secret lock the
/// account. Skipping the undeploy locks it; the playbook under the very same
/// App Host logins leaves it unlocked with not one failed login.
#[test]
fn skipping_the_undeploy_locks_the_account_and_the_playbook_does_not() {
    let mut bare = Rig::with_app_host();
    std::fs::write(bare.t.path().join("without-undeploy.yaml"), WITHOUT_UNDEPLOY).expect("write the variant");
    let out = bare.run(
        "without-undeploy.yaml",
        "fn_soar_utils",
        &["--yes", "--output", "json"],
        &[],
    );
    assert_eq!(out.status, 0, "{}\n{}", out.stdout, out.stderr);
    let listed = super::step_outputs(&out, "api_keys");
    assert_eq!(
        listed["locked"],
        json!(["fn_soar_utils", "fn_splunk_integration"]),
        "{listed}"
    );
    let state = bare.state();
    let k = key(&state, "fn_soar_utils");
    assert_eq!(k["locked"], true, "the apps locked the account: {k}");
    let failed = failed_logins(&state);
    assert!(
        failed.iter().any(|l| l["app"] == "fn_misp") && failed.iter().any(|l| l["app"] == "fn_soar_utils"),
        "both apps failed to sign in with the old secret: {failed:?}"
    );
    // Locked: even the new secret, which both apps now hold, is refused.
    let secret = bare.reveal("soar-test/fn_soar_utils/api-key-secret", &["--version", "1"]);
    let id = super::text(&k["api_key_id"]);
    assert_eq!(bare.signs_in(&id, &secret), 401);
    bare.scan(&[("new secret", &secret)]);

    let mut guarded = Rig::with_app_host();
    let out = guarded.regenerate("fn_soar_utils", &[]);
    assert_eq!(out.status, 0, "{}\n{}", out.stdout, out.stderr);
    guarded.sims.tick("soar");
    let state = guarded.state();
    assert_regenerated(&guarded.before, &state, "with the undeploy");
    assert_eq!(
        failed_logins(&state),
        Vec::<Value>::new(),
        "no App Host login failed"
    );
    for (name, _) in USERS {
        assert!(
            good_logins(&state, name) > 1,
            "{name} ran before and after: {state}"
        );
    }
    let secret = guarded.reveal(super::NEW_SECRET, &[]);
    assert_eq!(guarded.signs_in(&id, &secret), 200);
    guarded.scan(&[("new secret", &secret)]);
}

/// Guards seed rule: an app is found by the account's name as its App
/// Secret even when its app.config reads the API key ID from a secret too.
#[test]
fn an_app_naming_the_account_only_by_its_secret_is_found_and_updated() {
    let mut r = Rig::new(&json!({"seed": super::SEED}), true);
    let id = super::text(&key(&r.before, "fn_soar_utils")["api_key_id"]);
    // fn_misp's app.config now names neither the key ID nor its own secret:
    // api_key_id comes from App Secret misp_key_id, the secret from the one
    // named after the account.
    let config = "[resilient]\nhost=soar.acme-security.example\nport=443\norg=Acme Security\napi_key_id=${misp_key_id}\napi_key_secret=$fn_soar_utils\n";
    let (code, _) = r.sims.admin(
        "PUT",
        "soar",
        "/admin/ui/apps/fn_misp/config",
        Some(&json!({"config_string": config})),
    );
    assert_eq!(code, 200);
    let (code, _) = r.sims.admin(
        "PUT",
        "soar",
        "/admin/ui/apps/fn_misp/secrets/misp_key_id",
        Some(&json!({"value": id})),
    );
    assert_eq!(code, 200);
    let out = r.regenerate("fn_soar_utils", &["--output", "json"]);
    assert_eq!(out.status, 0, "{}\n{}", out.stdout, out.stderr);
    let found = super::step_outputs(&out, "find");
    assert_eq!(found["apps"], "fn_soar_utils,fn_misp", "{found}");
    assert_eq!(
        found["details"][1]["matched_by"],
        json!(["config_secret_name"]),
        "{found}"
    );
    let state = r.state();
    let fp = key(&state, "fn_soar_utils")["secretFingerprint"].clone();
    let misp = app_secrets(&state, "fn_misp");
    assert!(
        misp.iter().any(|(n, f)| n == "fn_soar_utils" && *f == fp),
        "the App Secret its app.config reads holds the new secret: {misp:?}"
    );
    assert_eq!(status(&state, "fn_misp"), "deployed");
    // The App Host resolves both references and signs in.
    let tick = r.sims.tick("soar");
    assert!(
        tick["logins"]
            .as_array()
            .is_some_and(|l| l.iter().all(|l| l["ok"] == true)),
        "{tick}"
    );
    let secret = r.reveal(super::NEW_SECRET, &[]);
    r.scan(&[("new secret", &secret)]);
}

/// Guards seed rule: a locked account (True in the Locked column) is what
/// regenerating fixes; its app, in error, runs again on the new secret.
#[test]
fn a_locked_account_is_unlocked_and_its_app_runs_again() {
    let mut r = Rig::with_app_host();
    assert_eq!(key(&r.before, "fn_splunk_integration")["locked"], true);
    assert_eq!(status(&r.before, "fn_splunk_integration"), "error");
    let out = r.regenerate("fn_splunk_integration", &[]);
    assert_eq!(out.status, 0, "{}\n{}", out.stdout, out.stderr);
    r.sims.tick("soar");
    let state = r.state();
    let k = key(&state, "fn_splunk_integration");
    assert_eq!(
        (k["locked"].clone(), k["failed_login_count"].clone()),
        (json!(false), json!(0)),
        "{k}"
    );
    assert_eq!(status(&state, "fn_splunk_integration"), "deployed");
    assert_eq!(
        app_secrets(&state, "fn_splunk_integration"),
        vec![(
            "fn_splunk_integration".to_owned(),
            super::text(&k["secretFingerprint"])
        )]
    );
    assert!(good_logins(&state, "fn_splunk_integration") > 0, "{state}");
    assert_eq!(failed_logins(&state), Vec::<Value>::new());
    let secret = r.reveal("soar/fn_splunk_integration/api-key-secret", &[]);
    r.scan(&[("new secret", &secret)]);
}

/// Guards: rota refuses to regenerate the key it signs in with, before
/// anything changes at the vendor.
#[test]
fn the_key_rota_signs_in_with_is_refused_before_anything_changes() {
    let mut r = Rig::new(&json!({"seed": super::SEED}), true);
    let out = r.regenerate("rota_automation", &[]);
    assert_eq!(out.status, 1, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout
            .contains("the account to regenerate is the one rota signs in with"),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("undeploy app"), "{}", out.stdout);
    assert_eq!(
        settled(&r.state()),
        settled(&r.before),
        "nothing changed at the vendor"
    );
    let listed = crate::test::Test::new_in(&r.t).args(&["secrets", "list"]).run();
    assert!(
        !listed.stdout.contains("soar/rota_automation"),
        "{}",
        listed.stdout
    );
    r.scan(&[]);
}

/// Bad input says what and where: an unknown account names the ones there are.
#[test]
fn an_unknown_account_is_refused_naming_the_accounts_there_are() {
    let mut r = Rig::new(&json!({"seed": super::SEED}), true);
    let out = r.regenerate("fn_nope", &[]);
    assert_eq!(out.status, 1, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains(
            "no API key account \"fn_nope\" in organization 201; there are: rota_automation, fn_soar_utils, fn_qradar_integration, fn_splunk_integration"
        ),
        "{}",
        out.stdout
    );
    assert_eq!(settled(&r.state()), settled(&r.before));
    r.scan(&[]);
}
