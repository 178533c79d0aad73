//! `plytix-api-key-role`: changing a key's role after showing which
//! integrations hold it (the seed's warning), checking them afterwards and
//! putting the old role back when one breaks; the Owner/Admin rule; faults;
//! plans.

use serde_json::{Value, json};

use super::*;

const ERP: &str = "ERP integration";
const ERP_CONSUMER: &str = "plytix-erp-sync";

fn erp_key(p: &Tenant) -> String {
    p.key(ERP)
        .and_then(|k| k["api_key"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn erp_consumer(p: &Tenant) -> Value {
    p.sims.state("consumers")["consumers"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["id"] == ERP_CONSUMER)
        .cloned()
        .unwrap_or(Value::Null)
}

/// Every key but `name` as it was, and `name` with `role`.
fn assert_only_role_changed(before: &[Value], after: &[Value], name: &str, role: &str, kind: &str) {
    assert_eq!(after.len(), before.len());
    for (b, a) in before.iter().zip(after) {
        if b["name"] == name {
            assert_eq!(a["role"]["name"], role, "{a}");
            assert_eq!(a["role"]["type"], kind, "{a}");
            assert_eq!(a["api_key"], b["api_key"], "same key");
            assert_eq!(
                a["apiPasswordFingerprint"], b["apiPasswordFingerprint"],
                "same password"
            );
        } else {
            assert_eq!(a, b, "untouched");
        }
    }
}

/// The happy path, the ERP integration calling Plytix in the background
/// all along: the confirmation names the key, both roles and the
/// integration holding it; the integration is checked and keeps working
/// (no failed call); only that key's role changed; the inventory records
/// who holds the key.
#[test]
fn a_role_change_shows_its_consumers_and_checks_them_afterwards() {
    let mut p = Tenant::start(r#"{"background_interval_ms": 25}"#, true);
    let before = p.keys();
    let api_key = erp_key(&p);
    p.role_inputs(ERP, "Catalog Import");
    let out = p.run(ROLE, "role.yaml", &["--yes", "--run-id", "r1"]);
    assert_eq!(out.status, 0, "{}\n{}", out.stdout, out.stderr);
    for line in [
        format!(
            "  change: confirmed by --yes: Change the role of Plytix API key \"{ERP}\" ({api_key}) from Editor to Catalog Import (team role)? Integrations holding this key, which may break: {ERP_CONSUMER}."
        ),
        format!(
            "  verify_consumers: check that integration {ERP_CONSUMER} still works with role Catalog Import"
        ),
        "ok        verify_consumers".to_owned(),
        format!(
            "  done: API key \"{ERP}\" ({api_key}) now has role Catalog Import (was Editor); the integrations holding it were checked and still work."
        ),
    ] {
        assert!(out.stdout.contains(&line), "missing {line:?} in\n{}", out.stdout);
    }
    assert_only_role_changed(&before, &p.keys(), ERP, "Catalog Import", "team");
    let erp = erp_consumer(&p);
    assert!(erp["calls"].as_u64().unwrap_or_default() > 1, "{erp}");
    assert_eq!(erp["failedCalls"], 0, "no downtime: {erp}");
    assert_eq!(erp["lastCall"]["ok"], true, "{erp}");

    let inventory = p.rota(&["inventory", "--output", "json"]);
    let inventory: Value = serde_json::from_str(&inventory.stdout).expect("JSON");
    let row = inventory
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["key_id"] == api_key.as_str())
        .cloned()
        .unwrap_or(Value::Null);
    assert_eq!(row["account"], ERP);
    assert_eq!(row["consumers"], json!([ERP_CONSUMER]), "{row}");
    p.assert_no_leaks();
}

/// Guards seed rule: only Owners and Admins can manage API keys; a Viewer
/// caller is refused before anything changes.
#[test]
fn a_caller_who_is_not_owner_or_admin_cannot_change_a_role() {
    let mut p = Tenant::start("{}", true);
    let (_, made) = p.sims.admin(
        "POST",
        "plytix",
        "/admin/ui/api-keys",
        Some(&json!({"name": "intern", "role": "Viewer"})),
    );
    let caller = made["data"][0]["api_key"].as_str().unwrap_or_default().to_owned();
    let password = made["data"][0]["api_password"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    p.put_secret("ops/plytix/intern", &password);
    p.inputs(
        "role.yaml",
        &format!(
            "account: acme-home\nadmin_key: {caller}\nadmin_password: ops/plytix/intern\nkey_name: {ERP}\nrole: Viewer\n"
        ),
    );
    let before = p.snapshot();
    let tokens = active_tokens(&p.plytix());
    let out = p.run(ROLE, "role.yaml", &["--yes"]);
    assert_eq!(out.status, 1, "{}", out.stdout);
    assert!(
        out.stderr
            .contains("only Owners and Admins can manage API keys, and this caller cannot"),
        "{}",
        out.stderr
    );
    assert!(!out.stdout.contains("ok        key"), "{}", out.stdout);
    p.assert_unchanged(&before, "");
    assert_eq!(active_tokens(&p.plytix()), tokens + 1);
    p.assert_no_leaks();
}

/// Guards seed warning: a role the integration cannot work with is caught
/// by the check afterwards, said plainly (which integration, what it got),
/// and by default the old role is put back, so the integration works again.
#[test]
fn a_role_an_integration_cannot_work_with_is_put_back() {
    let mut p = Tenant::start("{}", true);
    let before = p.keys();
    p.role_inputs(ERP, "Assets Only");
    let out = p.run(ROLE, "role.yaml", &["--yes", "--run-id", "b1"]);
    assert_eq!(out.status, 1, "{}", out.stdout);
    assert!(
        out.stdout.contains("FAILED    verify_consumers"),
        "{}",
        out.stdout
    );
    assert!(
        out.stderr
            .contains(&format!("consumer {ERP_CONSUMER} cannot use its credential"))
            && out
                .stderr
                .contains("The role 'Assets Only' does not allow to view products"),
        "{}",
        out.stderr
    );
    assert!(out.stdout.contains("ok        restore_role"), "{}", out.stdout);
    assert!(
        out.stdout.contains(&format!(
            "  say_what_broke: warning: The role of API key \"{ERP}\" was changed from Editor to Assets Only, and an integration holding it can no longer work with it:"
        )) && out.stdout.contains("The key's role was put back to Editor (step restore_role: succeeded)."),
        "{}",
        out.stdout
    );
    assert_eq!(undated(&p.keys()), undated(&before), "Editor again");
    let tick = p.sims.tick("consumers");
    assert_eq!(
        tick["calls"][0]["ok"], true,
        "the integration works again: {tick}"
    );
    p.assert_no_leaks();
}

/// With `on_breakage=keep` the new role stays (a deliberate cut of an
/// integration's access) and the run says how to undo it.
#[test]
fn on_breakage_keep_leaves_the_new_role_and_says_so() {
    let mut p = Tenant::start("{}", true);
    let before = p.keys();
    p.role_inputs(ERP, "Assets Only");
    let out = p.run(ROLE, "role.yaml", &["--yes", "-i", "on_breakage=keep"]);
    assert_eq!(out.status, 1, "{}", out.stdout);
    assert!(out.stdout.contains("skipped   restore_role"), "{}", out.stdout);
    assert!(
        out.stdout.contains(
            "The new role was kept (on_breakage=keep): fix the integration, or run this playbook again with role Editor."
        ),
        "{}",
        out.stdout
    );
    assert_only_role_changed(&before, &p.keys(), ERP, "Assets Only", "team");
    p.assert_no_leaks();
}

/// Asking for the role the key already has changes nothing and says so.
#[test]
fn the_role_the_key_already_has_changes_nothing() {
    let mut p = Tenant::start("{}", true);
    p.role_inputs(ERP, "Editor");
    p.assert_refused(
        ROLE,
        "role.yaml",
        "API key \"ERP integration\" already has role Editor; nothing was changed.",
    );
    p.assert_no_leaks();
}

/// Transient faults on every Plytix and registry route (about one in five:
/// 503s and 429s with Retry-After): each named seed completes, after
/// retrying, with exactly the happy path's roles.
#[test]
fn transient_faults_on_every_route_are_retried_to_completion() {
    for seed in [8, 19, 41] {
        let rules = json!([
            {"path": "/**", "rate": 0.1, "kind": "status", "status": 503},
            {"path": "/**", "rate": 0.1, "kind": "rate_limit", "retry_after_secs": 1}
        ]);
        let settings = json!({"fault_seed": seed, "faults": {"plytix": rules, "consumers": rules}});
        let mut p = Tenant::start(&settings.to_string(), true);
        let before = p.keys();
        p.role_inputs(ERP, "Viewer");
        let out = p.run(ROLE, "role.yaml", &["--yes", "--output", "json"]);
        assert_eq!(out.status, 0, "seed {seed}: {}\n{}", out.stdout, out.stderr);
        assert!(!retries(&out).is_empty(), "seed {seed}: no step was retried");
        assert_only_role_changed(&before, &p.keys(), ERP, "Viewer", "system");
        p.assert_no_leaks();
    }
}

/// A permanent refusal of the role change itself: the run fails, nothing
/// was changed, so nothing is put back and nothing is said to be broken.
#[test]
fn a_refused_role_change_fails_the_run_and_changes_nothing() {
    let settings = r#"{"faults": {"plytix": [{"method": "PATCH", "path": "/accounts/v1/api-keys/*", "rate": 1.0, "kind": "status", "status": 400}]}}"#;
    let mut p = Tenant::start(settings, true);
    p.role_inputs(ERP, "Viewer");
    let before = p.snapshot();
    let out = p.run(ROLE, "role.yaml", &["--yes"]);
    assert_eq!(out.status, 1, "{}", out.stdout);
    assert!(out.stdout.contains("FAILED    change"), "{}", out.stdout);
    assert!(out.stdout.contains("skipped   restore_role"), "{}", out.stdout);
    assert!(out.stdout.contains("skipped   say_what_broke"), "{}", out.stdout);
    p.assert_unchanged(&before, "");
    p.assert_no_leaks();
}

/// `rota plan`: the key, its API key and current role, the new role and the
/// integrations holding the key, exactly as the fixtures have them; nothing
/// changes anywhere. A key no integration holds says so.
#[test]
fn a_plan_names_the_key_its_roles_and_its_integrations_and_changes_nothing() {
    let mut p = Tenant::start("{}", true);
    let path = p.path(ROLE);
    for (key, role, kind, from, holders) in [
        (ERP, "Viewer", "system", "Editor", ERP_CONSUMER),
        (
            "Shopify feed",
            "Assets Only",
            "team",
            "Viewer",
            "none known to the registry",
        ),
    ] {
        let api_key = p
            .key(key)
            .and_then(|k| k["api_key"].as_str().map(str::to_owned))
            .unwrap_or_default();
        p.role_inputs(key, role);
        let before = p.snapshot();
        let out = p.rota(&["plan", &path, "--inputs", "role.yaml"]);
        assert_eq!(out.status, 0, "{}\n{}", out.stdout, out.stderr);
        for line in [
            format!(
                "  change: would ask: Change the role of Plytix API key \"{key}\" ({api_key}) from {from} to {role} ({kind} role)? Integrations holding this key, which may break: {holders}."
            ),
            format!("  change: would change the role of API key \"{key}\" ({api_key}) from {from} to {role}"),
            format!(
                "  plan_checks: would check that {} still works with role {role} once it is set",
                if holders == ERP_CONSUMER {
                    ERP_CONSUMER
                } else {
                    "no integration"
                }
            ),
        ] {
            assert!(out.stdout.contains(&line), "missing {line:?} in\n{}", out.stdout);
        }
        p.assert_unchanged(&before, key);
    }
    p.assert_no_leaks();
}

/// `rota run plytix-api-key-role --rehearse --yes` needs no argument; its
/// inventory records who holds the key it re-roled.
#[test]
fn a_rehearsal_needs_no_argument_and_records_who_holds_the_key() {
    let r = Rehearsal::new();
    let (out, keys) = r.run("plytix-api-key-role");
    let key = named(&keys, ERP);
    assert_eq!(key["role"]["name"], "Catalog Import", "{keys:?}");
    let inventory = r.inventory(false);
    let erp = inventory
        .iter()
        .find(|c| c["account"] == ERP)
        .cloned()
        .unwrap_or(Value::Null);
    assert_eq!(erp["consumers"], json!([ERP_CONSUMER]), "{inventory:?}");
    assert_eq!(erp["key_id"], key["api_key"]);
    assert!(r.inventory(true).is_empty(), "nothing is due");
    r.assert_no_leaks(&out, &["rehearsal/plytix/acme-home/admin-password"]);
}
