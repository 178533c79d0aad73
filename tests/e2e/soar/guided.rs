//! The guided path and the plan against standalone simulators configured
//! like a tenant. Guided: modeled actions disabled, at a terminal; at each
//! prompt the test does what the seed says through the simulator's UI
//! stand-ins (as the operator would click) and types what the screen shows.
//! Plan: the exact IDs it names, and nothing changed at the vendor.

use serde_json::{Value, json};

use super::{NEW_SECRET, Rig, SEED, assert_regenerated, failed_logins, key, outcome, playbook_path};
use crate::pty::Pty;
use crate::test::Test;

fn click(r: &Rig, method: &str, path: &str, body: Option<&Value>) -> Value {
    let (code, v) = r.sims.admin(method, "soar", path, body);
    assert_eq!(code, 200, "{method} {path}: {v}");
    v
}

/// Answers the "have you completed" question of a manual step without
/// outputs, once the test has done what its instructions say.
fn done(pty: &mut Pty) {
    pty.expect("as described above? [y/N]");
    pty.type_line("y");
}

#[test]
fn guided_path_at_a_terminal_reaches_the_automated_end_state() {
    let settings = json!({"seed": SEED, "background_interval_ms": 20});
    let mut r = Rig::new(&settings, false);
    let state = r.state();
    let account = key(&state, "fn_soar_utils").clone();
    let api_key_id = super::text(&account["api_key_id"]);
    let inputs = r.inputs("fn_soar_utils");
    let playbook = playbook_path();
    let mut args = vec!["run", playbook.as_str(), "--run-id", "g1"];
    args.extend(inputs.iter().map(String::as_str));
    let mut pty = Pty::spawn(&r.t, &args);

    // 1. The API Keys tab, read off the screen.
    pty.expect("--- manual step account ---");
    pty.expect("The account's numeric id:");
    pty.type_line("12");
    pty.expect("Its API Key ID:");
    pty.type_line(&api_key_id);
    pty.expect("Its name, as listed:");
    pty.type_line("fn_soar_utils");
    pty.expect("Is it locked (True in the Locked column)?:");
    pty.type_line("no");
    // 1. The apps using it, from the Apps tab and their app.config.
    pty.expect("app.config file as api_key_id");
    pty.expect("The names of every app that uses it, comma-separated (empty if none):");
    pty.type_line("fn_soar_utils, fn_misp");
    pty.expect("Which of them are deployed now, comma-separated (empty if none):");
    pty.type_line("fn_soar_utils, fn_misp");
    // 2. Undeploy each.
    for app in ["fn_soar_utils", "fn_misp"] {
        pty.expect(&format!("click the app {app}, then click Undeploy."));
        click(&r, "POST", &format!("/admin/ui/apps/{app}/undeploy"), None);
        done(&mut pty);
    }
    // 3. Regenerate: confirm, click, copy what the screen shows.
    pty.expect(&format!(
        "Regenerate the secret of API key account fn_soar_utils (id 12, API key ID {api_key_id})?"
    ));
    pty.expect("[y/N]");
    pty.type_line("y");
    pty.expect("--- manual step regenerate ---");
    let shown = click(&r, "POST", "/admin/ui/api_keys/12/regenerate", None);
    let secret = super::text(&shown["api_key_secret"]);
    pty.expect("The ID shown in the API Key Credentials:");
    pty.type_line(shown["api_key_id"].as_str().unwrap_or_default());
    pty.expect("The new secret shown in the API Key Credentials (input hidden):");
    pty.type_line(&secret);
    // 4. Paste it into each app's App Secret, 5. deploy each.
    for (app, secret_name) in super::USERS {
        pty.expect(&format!("Click the app {app} on the Apps tab then click its"));
        click(
            &r,
            "PUT",
            &format!("/admin/ui/apps/{app}/secrets/{secret_name}"),
            Some(&json!({"value": secret})),
        );
        done(&mut pty);
    }
    for app in ["fn_soar_utils", "fn_misp"] {
        pty.expect(&format!(
            "Click the app {app} on the Apps tab, click the Details tab"
        ));
        click(&r, "POST", &format!("/admin/ui/apps/{app}/deploy"), None);
        done(&mut pty);
    }
    // The account's Locked column, and each app's status, as shown.
    pty.expect("--- manual step check_account ---");
    let locked = key(&r.state(), "fn_soar_utils")["locked"] == true;
    pty.expect("Is it locked (True in the Locked column)?:");
    pty.type_line(if locked { "yes" } else { "no" });
    for app in ["fn_soar_utils", "fn_misp"] {
        pty.expect(&format!("Check on the Apps tab that the app {app} is deployed"));
        assert_eq!(super::status(&r.state(), app), "deployed");
        done(&mut pty);
    }
    let (code, seen) = pty.finish();
    assert_eq!(code, 0, "{seen}");
    assert!(seen.contains("run g1 succeeded"), "{seen}");
    assert!(!seen.contains(&secret), "the typed secret was echoed:\n{seen}");

    r.sims.tick("soar");
    let guided = r.state();
    assert_regenerated(&r.before, &guided, "guided");
    assert_eq!(failed_logins(&guided), Vec::<Value>::new());
    assert_eq!(
        r.reveal(NEW_SECRET, &[]),
        secret,
        "the typed secret landed in the store"
    );
    r.outputs.push(crate::test::Output {
        status: code,
        stdout: seen,
        stderr: String::new(),
    });
    r.scan(&[("new secret", &secret)]);

    let mut auto = Rig::new(&settings, true);
    let out = auto.run(&playbook, "fn_soar_utils", &["--yes"], &[]);
    assert_eq!(out.status, 0, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(
        outcome(&guided),
        outcome(&auto.state()),
        "same end state as the automated run"
    );
}

/// A plan runs only the reads, names the real account, key ID and apps in
/// the words of each step, and leaves the vendor and the store as they were.
#[test]
fn plan_names_the_exact_account_and_apps_and_changes_nothing() {
    let mut r = Rig::new(&json!({"seed": SEED}), true);
    let api_key_id = super::text(&key(&r.before, "fn_soar_utils")["api_key_id"]);
    let secrets_before = Test::new_in(&r.t).args(&["secrets", "list"]).run().stdout;
    let inputs = r.inputs("fn_soar_utils");
    let mut args = vec!["plan", "--output", "json"];
    let playbook = playbook_path();
    args.push(&playbook);
    args.extend(inputs.iter().map(String::as_str));
    let out = r.rota(&args, &[]);
    assert_eq!(out.status, 0, "{}\n{}", out.stdout, out.stderr);
    let said: Vec<(String, String)> = super::events(&out)
        .into_iter()
        .filter(|e| e["event"] == "would_do")
        .map(|e| (super::text(&e["id"]), super::text(&e["description"])))
        .collect();
    let want = |id: &str, d: String| (id.to_owned(), d);
    for expected in [
        want(
            "undeploy",
            "would undeploy app fn_soar_utils, so it stops signing in before its secret is replaced".into(),
        ),
        want(
            "undeploy",
            "would undeploy app fn_misp, so it stops signing in before its secret is replaced".into(),
        ),
        want(
            "regenerate",
            format!(
                "would ask: Regenerate the secret of API key account fn_soar_utils (id 12, API key ID {api_key_id})? Its old secret stops working at once; the apps using it (fn_soar_utils,fn_misp) are undeployed and get the new one next."
            ),
        ),
        want(
            "regenerate",
            format!(
                "would regenerate the secret of API key account fn_soar_utils (id 12, API key ID {api_key_id}, which stays): the old secret stops working at once"
            ),
        ),
        want(
            "update_secrets",
            "would give app fn_soar_utils the new secret of API key account fn_soar_utils in its App Secrets"
                .into(),
        ),
        want(
            "update_secrets",
            "would give app fn_misp the new secret of API key account fn_soar_utils in its App Secrets"
                .into(),
        ),
        want(
            "deploy",
            "would deploy app fn_soar_utils again, now holding the new secret".into(),
        ),
        want(
            "deploy",
            "would deploy app fn_misp again, now holding the new secret".into(),
        ),
    ] {
        assert!(said.contains(&expected), "missing {expected:?} in {said:#?}");
    }
    assert_eq!(r.state(), r.before, "the full admin state is as it was");
    let secrets_after = Test::new_in(&r.t).args(&["secrets", "list"]).run().stdout;
    assert_eq!(secrets_after, secrets_before, "nothing stored");
    let runs = Test::new_in(&r.t).args(&["runs", "list"]).run();
    assert_eq!(runs.stdout, "no runs recorded\n", "a plan journals nothing");
    r.scan(&[]);
}
