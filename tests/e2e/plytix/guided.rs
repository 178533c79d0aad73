//! Both Plytix playbooks on a tenant whose modeled actions are disabled (any
//! real tenant today), through a terminal: at each prompt the test does the
//! documented clicks itself on the simulator's admin API and types what the
//! screen shows. The password typed goes to the store and never on screen;
//! the vendor ends as the automated run leaves it.

use serde_json::{Value, json};

use super::*;
use crate::pty::Pty;

fn text(v: &Value, pointer: &str) -> String {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

/// Waits for each prompt and types its answer, as the operator would.
fn answer(pty: &mut Pty, steps: &[(&str, &str)]) {
    for (prompt, typed) in steps {
        pty.expect(prompt);
        pty.type_line(typed);
    }
}

/// The keys an automated run of `playbook` leaves on a fresh tenant.
fn automated(playbook: &str, inputs: impl Fn(&Tenant)) -> Vec<Value> {
    let mut p = Tenant::start("{}", true);
    inputs(&p);
    let file = if playbook == CREATE {
        "create.yaml"
    } else {
        "role.yaml"
    };
    let out = p.run(playbook, file, &["--yes"]);
    assert_eq!(out.status, 0, "the automated run: {}\n{}", out.stdout, out.stderr);
    p.keys()
}

#[test]
fn guided_create_types_what_the_api_tab_shows_and_ends_as_the_automated_run() {
    let want = automated(CREATE, |p| {
        p.create_inputs(NEW_NAME, "Editor");
    });
    let mut p = Tenant::start("{}", false);
    p.create_inputs(NEW_NAME, "Editor");
    let path = p.path(CREATE);
    let mut pty = Pty::spawn(&p.t, &["run", &path, "--inputs", "create.yaml", "--run-id", "g1"]);
    pty.expect("Only Owners and Admins can create and manage API keys");
    answer(
        &mut pty,
        &[("Is your role Owner or Admin?:", "yes"), ("Your role:", "Admin")],
    );
    pty.expect(&format!("look for a key named \"{NEW_NAME}\"."));
    answer(
        &mut pty,
        &[
            ("Is there already a key with that name?:", "no"),
            ("The role as the dropdown names it:", "Editor"),
            ("Is it a system or a team role?:", "system"),
        ],
    );
    pty.expect(&format!(
        "Create Plytix API key \"{NEW_NAME}\" with role Editor (system role)?"
    ));
    pty.expect("[y/N]");
    pty.type_line("y");
    pty.expect("To reveal the API Password, hover over it and click the eye icon.");
    // The operator's clicks: Create API Key with name and role, then the
    // clipboard and eye icons.
    let (status, shown) = p.sims.admin(
        "POST",
        "plytix",
        "/admin/ui/api-keys",
        Some(&json!({"name": NEW_NAME, "role": "Editor"})),
    );
    assert_eq!(status, 201, "{shown}");
    let api_key = text(&shown, "/data/0/api_key");
    let password = text(&shown, "/data/0/api_password");
    p.learn("the password shown by the eye icon", &password);
    pty.expect("The API Key (clipboard icon):");
    pty.type_line(&api_key);
    pty.expect("The API Password (eye icon) (input hidden):");
    pty.type_line(&password);
    let (code, seen) = pty.finish();
    assert_eq!(code, 0, "{seen}");
    assert!(seen.contains("run g1 succeeded"), "{seen}");
    assert!(
        !seen.contains(&password),
        "the typed password was echoed:\n{seen}"
    );
    assert!(
        seen.contains(&format!(
            "done: API key \"{NEW_NAME}\" ({api_key}) has role Editor and works"
        )),
        "verified by the documented exchange: {seen}"
    );
    assert_eq!(
        undated(&p.keys()),
        undated(&want),
        "the same vendor state as the automated run"
    );
    assert_eq!(p.reveal(NEW_SECRET).as_deref(), Some(password.as_str()));
    p.scan_too(&seen);
    p.rota(&["runs", "show", "g1"]);
    p.assert_no_leaks();
}

#[test]
fn guided_role_change_asks_who_uses_the_key_and_ends_as_the_automated_run() {
    let want = automated(ROLE, |p| {
        p.role_inputs("ERP integration", "Viewer");
    });
    let mut p = Tenant::start("{}", false);
    p.role_inputs("ERP integration", "Viewer");
    let api_key = p
        .key("ERP integration")
        .map(|k| text(&k, "/api_key"))
        .unwrap_or_default();
    let path = p.path(ROLE);
    let mut pty = Pty::spawn(&p.t, &["run", &path, "--inputs", "role.yaml", "--run-id", "g2"]);
    // The API tab shows the key's row: its API Key and its role.
    answer(
        &mut pty,
        &[
            ("Is your role Owner or Admin?:", "yes"),
            ("Your role:", "Admin"),
            ("Its API Key (clipboard icon):", &api_key),
            ("Its current role:", "Editor"),
            ("The role as the Roles tab names it:", "Viewer"),
            ("Is it a system or a team role?:", "system"),
        ],
    );
    pty.expect("Changing an existing API Key Role can result in the malfunctioning");
    answer(
        &mut pty,
        &[(
            "The integrations that use it (comma-separated, or none):",
            "plytix-erp-sync",
        )],
    );
    pty.expect(&format!(
        "Change the role of Plytix API key \"ERP integration\" ({api_key}) from Editor to Viewer (system role)? Integrations holding this key, which may break: plytix-erp-sync. [y/N]"
    ));
    pty.type_line("y");
    pty.expect("The role the key has now:");
    // The pencil icon, Viewer from the dropdown, Save API Key.
    let (status, saved) = p.sims.admin(
        "PATCH",
        "plytix",
        &format!("/admin/ui/api-keys/{api_key}"),
        Some(&json!({"role": "Viewer"})),
    );
    assert_eq!(status, 200, "{saved}");
    pty.type_line(&text(&saved, "/data/0/role/name"));
    pty.expect("Do they all still work?:");
    // The operator checks the ERP sync.
    let (_, tick) = p
        .sims
        .admin("POST", "consumers", "/admin/consumers/plytix-erp-sync/tick", None);
    assert_eq!(tick["ok"], true, "the integration works with Viewer: {tick}");
    pty.type_line("yes");
    let (code, seen) = pty.finish();
    assert_eq!(code, 0, "{seen}");
    assert!(seen.contains("run g2 succeeded"), "{seen}");
    assert_eq!(
        undated(&p.keys()),
        undated(&want),
        "the same vendor state as the automated run"
    );
    p.scan_too(&seen);
    p.assert_no_leaks();
}

/// `--rehearse --guided --yes`: the profile's stand-ins for the documented
/// clicks and answers take every modeled step's manual path, and the
/// simulated Plytix ends exactly as the automated rehearsal leaves it.
#[test]
fn guided_rehearsals_end_as_the_automated_ones() {
    let t = crate::test::Test::new();
    for playbook in [CREATE, ROLE] {
        let path = crate::test::repo().join(playbook);
        let path = path.to_string_lossy();
        let keys = |guided: bool| {
            let mut args = vec!["run", path.as_ref(), "--rehearse", "--yes", "--output", "json"];
            if guided {
                args.push("--guided");
            }
            let out = crate::test::Test::new_in(&t).args(&args).run();
            assert_eq!(
                out.status, 0,
                "{playbook} guided={guided}: {}\n{}",
                out.stdout, out.stderr
            );
            if guided {
                let manual = events(&out)
                    .into_iter()
                    .filter(|e| e["event"] == "step_started" && e["path"] == "manual")
                    .count();
                assert!(
                    manual >= 4,
                    "{playbook}: the modeled steps took their manual path: {}",
                    out.stdout
                );
            }
            let last: Value =
                serde_json::from_str(out.stdout.lines().last().unwrap_or_default()).expect("JSON");
            undated(
                last["vendors"]["plytix"]["state"]["apiKeys"]
                    .as_array()
                    .map_or(&[][..], Vec::as_slice),
            )
        };
        assert_eq!(keys(true), keys(false), "{playbook}");
    }
}
