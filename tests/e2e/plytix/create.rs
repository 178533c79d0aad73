//! `plytix-api-key`: creating a key with a name and a role, the seed's rule
//! that only Owners and Admins may (refused before anything changes),
//! transient and permanent faults, Plytix's rate limits, plans, and the
//! rehearsal's inventory.

use serde_json::{Value, json};

use super::*;

fn hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The happy path, with the ERP integration calling Plytix in the
/// background all along: one key more, with the asked role, its password
/// current in the store and working, recorded in the inventory; nothing
/// else at the vendor moved and the integration never failed.
#[test]
fn a_key_is_created_with_its_role_verified_and_recorded() {
    let mut p = Tenant::start(r#"{"background_interval_ms": 25}"#, true);
    let before = p.keys();
    p.create_inputs(NEW_NAME, "Editor");
    let out = p.run(CREATE, "create.yaml", &["--yes", "--run-id", "c1"]);
    assert_eq!(out.status, 0, "{}\n{}", out.stdout, out.stderr);

    let after = p.keys();
    assert_eq!(after.len(), before.len() + 1, "{after:?}");
    assert_eq!(
        undated(&after[..before.len()]),
        undated(&before),
        "the other keys are untouched"
    );
    let new = after.last().cloned().unwrap_or(Value::Null);
    assert_eq!(new["name"], NEW_NAME);
    assert_eq!(new["role"]["name"], "Editor");
    assert_eq!(new["role"]["type"], "system");
    let api_key = new["api_key"].as_str().unwrap_or_default().to_owned();
    assert!(hex(new["id"].as_str().unwrap_or_default(), 24), "{new}");
    assert!(hex(&api_key, 32), "{new}");
    for line in [
        format!(
            "  create: confirmed by --yes: Create Plytix API key \"{NEW_NAME}\" with role Editor (system role)? It can manipulate the account's data as that role allows; its API password will be stored as {NEW_SECRET} and used by rota only for Plytix."
        ),
        format!(
            "  done: API key \"{NEW_NAME}\" ({api_key}) has role Editor and works (products readable: true). Its API password is in rota's store as {NEW_SECRET}; hand it only to the trusted service named in the key's name."
        ),
        "run c1 succeeded".to_owned(),
    ] {
        assert!(out.stdout.contains(&line), "missing {line:?} in\n{}", out.stdout);
    }

    // The password went from Plytix's answer into the store, current now.
    let versions = p.rota(&["secrets", "versions", NEW_SECRET, "--output", "json"]);
    let versions: Value = serde_json::from_str(&versions.stdout).expect("JSON");
    assert_eq!(versions.as_array().map(Vec::len), Some(1), "{versions}");
    assert_eq!(versions[0]["stages"], json!(["current"]), "{versions}");

    let inventory = p.rota(&["inventory", "--output", "json"]);
    let inventory: Value = serde_json::from_str(&inventory.stdout).expect("JSON");
    let rows: Vec<(String, String, String)> = inventory
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            let s = |k: &str| c[k].as_str().unwrap_or_default().to_owned();
            (s("account"), s("key_id"), s("status"))
        })
        .collect();
    let mut want: Vec<(String, String, String)> = after
        .iter()
        .map(|k| {
            let s = |f: &str| k[f].as_str().unwrap_or_default().to_owned();
            (s("name"), s("api_key"), "active".to_owned())
        })
        .collect();
    let mut rows_sorted = rows.clone();
    rows_sorted.sort();
    want.sort();
    assert_eq!(rows_sorted, want, "every key seen, by its API key");
    let row = inventory
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["key_id"] == api_key.as_str())
        .cloned()
        .unwrap_or(Value::Null);
    assert_eq!(row["vendor"], "plytix");
    assert_eq!(row["secret"], NEW_SECRET);
    assert_eq!(row["expires"], Value::Null, "Plytix keys never expire");
    let due = p.rota(&["inventory", "--due", "30d", "--output", "json"]);
    assert_eq!(due.stdout.trim(), "[]", "nothing is due: {}", due.stdout);

    let consumers = p.sims.state("consumers");
    let erp = &consumers["consumers"][0];
    assert_eq!(erp["id"], "plytix-erp-sync");
    assert!(erp["calls"].as_u64().unwrap_or_default() > 0, "{erp}");
    assert_eq!(erp["failedCalls"], 0, "no downtime: {erp}");

    assert_eq!(p.new_key_signs_in(), Some(true), "the stored password works");
    p.assert_no_leaks();
}

/// Guards seed rule: only Owners and Admins can create API keys. A caller
/// of any other role (system or team) is refused at the first check, and
/// the vendor, the registry and the store are exactly as before; the one
/// thing the check did is sign in (one token more).
#[test]
fn a_caller_who_is_not_owner_or_admin_is_refused_before_anything_changes() {
    for role in ["Editor", "Viewer", "Catalog Import"] {
        let mut p = Tenant::start("{}", true);
        let (status, made) = p.sims.admin(
            "POST",
            "plytix",
            "/admin/ui/api-keys",
            Some(&json!({"name": "intern", "role": role})),
        );
        assert_eq!(status, 201, "{made}");
        let caller = made["data"][0]["api_key"].as_str().unwrap_or_default().to_owned();
        let password = made["data"][0]["api_password"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        p.put_secret("ops/plytix/intern", &password);
        p.create_inputs_as(&caller, "ops/plytix/intern", NEW_NAME, "Editor");
        let before = p.snapshot();
        let tokens_before = active_tokens(&p.plytix());

        let out = p.run(CREATE, "create.yaml", &["--yes", "--run-id", "r1"]);
        assert_eq!(out.status, 1, "{role}: {}\n{}", out.stdout, out.stderr);
        assert!(
            out.stderr.contains(
                "only Owners and Admins can create API keys, and this caller cannot (role unknown); nothing was changed. Sign in with an Owner or Admin key."
            ),
            "{role}: {}",
            out.stderr
        );
        assert_eq!(
            step_statuses(&mut p, "r1"),
            [
                ("sign_in", "succeeded"),
                ("owner_or_admin", "failed"),
                ("remove_new_key", "skipped"),
                ("discard_password", "skipped")
            ]
            .map(|(s, o)| (s.to_owned(), o.to_owned()))
            .to_vec(),
            "{role}: nothing ran past the check, there was nothing to compensate"
        );
        p.assert_unchanged(&before, role);
        assert_eq!(
            active_tokens(&p.plytix()),
            tokens_before + 1,
            "{role}: one sign-in"
        );
        p.assert_no_leaks();
    }
}

/// Guards the added check: a name already in the API tab is refused before
/// anything is created (the name says who holds a key).
#[test]
fn a_name_already_taken_is_refused_before_anything_changes() {
    let mut p = Tenant::start("{}", true);
    p.create_inputs("ERP integration", "Editor");
    p.assert_refused(
        CREATE,
        "create.yaml",
        "a key named \"ERP integration\" already exists; pick another name (the name says who holds the key). Nothing was changed.",
    );
    p.assert_no_leaks();
}

/// A role the account does not have is refused with the roles it has, both
/// kinds, before anything is created.
#[test]
fn an_unknown_role_is_refused_with_the_system_and_team_roles_there_are() {
    let mut p = Tenant::start("{}", true);
    p.create_inputs(NEW_NAME, "Janitor");
    p.assert_refused(
        CREATE,
        "create.yaml",
        "Plytix has no role named \"Janitor\"; System roles: Owner, Admin, Editor, Viewer; Team roles: Catalog Import, Assets Only",
    );
    p.assert_no_leaks();
}

/// Faults on every Plytix route, about one request in five: 503s, 429s
/// with Retry-After, dropped connections and answers cut short (a create
/// whose answer is cut short has happened: the key is adopted, its password
/// captured from the reveal). Each named fault seed completes with exactly
/// the happy path's keys, after retrying.
#[test]
fn transient_faults_on_every_route_are_retried_to_completion() {
    for seed in [101, 202, 303] {
        let settings = json!({"fault_seed": seed, "faults": {"plytix": [
            {"path": "/**", "rate": 0.08, "kind": "status", "status": 503},
            {"path": "/**", "rate": 0.06, "kind": "rate_limit", "retry_after_secs": 1},
            {"path": "/**", "rate": 0.03, "kind": "drop"},
            {"path": "/**", "rate": 0.03, "kind": "truncate"}
        ]}});
        let mut p = Tenant::start(&settings.to_string(), true);
        let mut want = roles_of(&p.keys());
        want.push((
            NEW_NAME.to_owned(),
            "Catalog Import".to_owned(),
            "team".to_owned(),
        ));
        want.sort();
        p.create_inputs(NEW_NAME, "Catalog Import");
        let out = p.run(CREATE, "create.yaml", &["--yes", "--output", "json"]);
        assert_eq!(out.status, 0, "seed {seed}: {}\n{}", out.stdout, out.stderr);
        assert!(!retries(&out).is_empty(), "seed {seed}: no step was retried");
        let (_, log) = p.sims.admin("GET", "plytix", "/admin/faults", None);
        assert!(
            log["log"].as_array().is_some_and(|l| !l.is_empty()),
            "seed {seed}: faults were injected: {log}"
        );
        assert_eq!(roles_of(&p.keys()), want, "seed {seed}");
        p.clear_faults("plytix");
        assert_eq!(
            p.new_key_signs_in(),
            Some(true),
            "seed {seed}: the stored password is the key's"
        );
        p.assert_no_leaks();
    }
}

/// A permanent refusal of the create itself: the run fails at once (no
/// retry of a refusal), no key exists, nothing was stored, no compensation
/// had anything to undo.
#[test]
fn a_refused_create_fails_the_run_and_leaves_nothing_behind() {
    let settings = r#"{"faults": {"plytix": [{"method": "POST", "path": "/accounts/v1/api-keys", "rate": 1.0, "kind": "status", "status": 400}]}}"#;
    let mut p = Tenant::start(settings, true);
    p.create_inputs(NEW_NAME, "Editor");
    let before = p.snapshot();
    let out = p.run(CREATE, "create.yaml", &["--yes", "--run-id", "f1"]);
    assert_eq!(out.status, 1, "{}", out.stdout);
    assert!(out.stdout.contains("FAILED    create"), "{}", out.stdout);
    assert!(
        out.stderr
            .contains("Plytix rejected creating API key \"PIM export (acme-erp)\" (400)"),
        "{}",
        out.stderr
    );
    assert!(out.stdout.contains("skipped   remove_new_key"), "{}", out.stdout);
    p.assert_unchanged(&before, "");
    p.assert_no_leaks();
}

/// A key that cannot be verified (Plytix keeps failing the check) is
/// compensated: the run fails, the new key is deleted by the API key the
/// run recorded, its password is dropped from the store; the operator's
/// own credentials are untouched.
#[test]
fn a_key_that_cannot_be_verified_is_deleted_and_its_password_dropped() {
    let settings = r#"{"faults": {"plytix": [{"method": "POST", "path": "/api/v1/products/search", "rate": 1.0, "kind": "status", "status": 500}]}}"#;
    let mut p = Tenant::start(settings, true);
    let before = p.keys();
    p.create_inputs(NEW_NAME, "Editor");
    let out = p.run(CREATE, "create.yaml", &["--yes", "--output", "json"]);
    assert_eq!(out.status, 1, "{}", out.stdout);
    assert_eq!(
        retries(&out).len(),
        RETRY_ATTEMPTS - 1,
        "the verification was retried, then given up"
    );
    let finished: Vec<(String, String)> = events(&out)
        .iter()
        .filter(|e| e["event"] == "step_finished")
        .map(|e| {
            (
                e["id"].as_str().unwrap_or_default().to_owned(),
                e["status"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    for (step, status) in [
        ("create", "succeeded"),
        ("verify", "failed"),
        ("remove_new_key", "succeeded"),
        ("discard_password", "succeeded"),
    ] {
        assert!(
            finished.contains(&(step.to_owned(), status.to_owned())),
            "{step} {status}: {finished:?}"
        );
    }
    assert_eq!(undated(&p.keys()), undated(&before), "the unverified key is gone");
    assert!(
        p.reveal(NEW_SECRET).is_none(),
        "no current password for a deleted key"
    );
    let admin = p.reveal(ADMIN_SECRET).expect("the operator's password");
    assert_eq!(p.token_exchange(&p.admin_key.clone(), &admin), 200);
    p.assert_no_leaks();
}

/// Plytix's own per-key windows (scaled: 5 requests per 2 s, as many as
/// the create and its snapshot make, so a fresh window fits them): the 429s
/// carry Retry-After, and each retry waits exactly that long.
#[test]
fn rate_limits_are_waited_out_as_plytix_tells() {
    let mut p = Tenant::start(
        r#"{"time_scale": 0.2, "plytix_requests_per_10s": 5, "plytix_requests_per_hour": 1000}"#,
        true,
    );
    p.create_inputs(NEW_NAME, "Viewer");
    let out = p.run(CREATE, "create.yaml", &["--yes", "--output", "json"]);
    assert_eq!(out.status, 0, "{}\n{}", out.stdout, out.stderr);
    let limited: Vec<Value> = retries(&out)
        .into_iter()
        .filter(|e| e["error"].as_str().is_some_and(|m| m.contains("rate")))
        .collect();
    assert!(!limited.is_empty(), "the windows were hit: {}", out.stdout);
    for e in &limited {
        let delay = e["delay"].as_f64().unwrap_or_default();
        assert!(
            (1.0..=2.0).contains(&delay) && delay.fract() == 0.0,
            "waited the Retry-After seconds: {e}"
        );
    }
    assert!(p.key(NEW_NAME).is_some());
    p.assert_no_leaks();
}

/// `rota plan` against a tenant: the read-only checks run for real, the
/// create is described with the real role and the secret it would store,
/// and nothing changes at the vendor, in the registry or in the store (the
/// checks only sign in: three tokens).
#[test]
fn a_plan_names_the_key_it_would_create_and_changes_nothing() {
    let mut p = Tenant::start("{}", true);
    p.create_inputs(NEW_NAME, "Catalog Import");
    let before = p.snapshot();
    let tokens_before = active_tokens(&p.plytix());
    let path = p.path(CREATE);
    let out = p.rota(&["plan", &path, "--inputs", "create.yaml"]);
    assert_eq!(out.status, 0, "{}\n{}", out.stdout, out.stderr);
    for line in [
        "ok        sign_in",
        "ok        role",
        &format!(
            "  create: would ask: Create Plytix API key \"{NEW_NAME}\" with role Catalog Import (team role)?"
        ),
        &format!(
            "  create: would create API key \"{NEW_NAME}\" with role Catalog Import (team role) and store its API password as {NEW_SECRET} (pending until verified)"
        ),
        "nothing was changed",
    ] {
        assert!(out.stdout.contains(line), "missing {line:?} in\n{}", out.stdout);
    }
    p.assert_unchanged(&before, "");
    assert_eq!(active_tokens(&p.plytix()), tokens_before + 3);
    let inventory = p.rota(&["inventory", "--output", "json"]);
    assert_eq!(inventory.stdout.trim(), "[]", "a plan records nothing");
    p.assert_no_leaks();
}

/// `rota run plytix-api-key --rehearse --yes`, by name and with no other
/// argument: the rehearsal's inventory lists every key the run saw and the
/// one it made (none is due: Plytix keys never expire).
#[test]
fn a_rehearsal_needs_no_argument_and_fills_the_rehearsal_inventory() {
    let r = Rehearsal::new();
    let (out, keys) = r.run("plytix-api-key");
    let new = named(&keys, NEW_NAME);
    assert_eq!(new["role"]["name"], "Editor", "{keys:?}");
    assert!(r.inventory(true).is_empty(), "nothing is due");
    let pair = |v: &Value, account: &str, key: &str| {
        (
            v[account].as_str().unwrap_or_default().to_owned(),
            v[key].as_str().unwrap_or_default().to_owned(),
        )
    };
    let mut listed: Vec<(String, String)> = r
        .inventory(false)
        .iter()
        .map(|c| pair(c, "account", "key_id"))
        .collect();
    let mut want: Vec<(String, String)> = keys.iter().map(|k| pair(k, "name", "api_key")).collect();
    listed.sort();
    want.sort();
    assert_eq!(listed, want, "every key seen, by its API key");
    let real = r.rota(&["inventory", "--output", "json"]);
    assert_eq!(
        real.stdout.trim(),
        "[]",
        "rehearsal keys stay out of the real inventory"
    );
    r.assert_no_leaks(&out, &[NEW_SECRET, "rehearsal/plytix/acme-home/admin-password"]);
}

/// A create that Plytix carried out but whose answer was cut short: the
/// key is found by its name among the keys that were not there before and
/// adopted, its password captured from the reveal (Plytix keeps passwords
/// revealable). One key, never two, and the stored password is its own.
#[test]
fn a_create_whose_answer_is_lost_adopts_the_key_it_made() {
    let settings = r#"{"faults": {"plytix": [{"method": "POST", "path": "/accounts/v1/api-keys", "rate": 1.0, "kind": "truncate"}]}}"#;
    let mut p = Tenant::start(settings, true);
    let before = p.keys().len();
    p.create_inputs(NEW_NAME, "Editor");
    let out = p.run(CREATE, "create.yaml", &["--yes"]);
    assert_eq!(out.status, 0, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(p.keys().len(), before + 1, "exactly one key made");
    assert_eq!(p.new_key_signs_in(), Some(true), "the stored password is its own");
    p.assert_no_leaks();
}
