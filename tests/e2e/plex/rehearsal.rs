//! plex-api-key-reset from the README's first command (`rota run
//! plex-api-key-reset --rehearse --yes`, nothing else), its guided twin,
//! the inventory it leaves, and `rota plan` against standalone simulators.
//!
//! Design decision: the rehearsal's simulators run inside `rota`, so the
//! tests read their final state from the `rehearsal` event of `--output
//! json` and the operator's values from a standalone simulator started with
//! the same (default) seed: fixtures are deterministic for a seed.

use rota_testkit::{LeakScanner, assert_no_leaks};
use serde_json::{Value, json};

use super::{Rig, SECRET, demandcaster_app, playbooks};
use crate::sims::{SYSTEMS, Sims};
use crate::test::{Output, Test};

fn rehearse(t: &Test, extra: &[&str]) -> Output {
    let mut args = vec!["run", super::PLAYBOOK, "--rehearse", "--yes"];
    args.extend(extra);
    Test::new_in(t)
        .env("ROTA_PLAYBOOK_PATH", &playbooks())
        .args(&args)
        .run()
}

/// The vendors' state of a `--output json` rehearsal (its last line).
fn vendors(out: &Output) -> Value {
    let last: Value =
        serde_json::from_str(out.stdout.lines().last().unwrap_or_default()).expect("a JSON line");
    assert_eq!(last["event"], "rehearsal", "{last}");
    last["vendors"].clone()
}

/// Scans a rehearsal's outputs and state for the operator's credentials
/// (as the default-seed simulators hand them out) and the new secret.
fn scan_rehearsal(t: &Test, outs: &[&Output]) {
    let sims = Sims::start(t, "{}");
    let mut scanner = LeakScanner::new();
    for (label, system, pointer) in [
        ("portal consumer key", "plex", "/portalKeys/0/consumerKey"),
        ("portal consumer secret", "plex", "/portalKeys/0/consumerSecret"),
        ("DemandCaster password", "demandcaster", "/users/0/password"),
    ] {
        let view = sims.operator(system);
        scanner.add(
            label,
            view.pointer(pointer).and_then(Value::as_str).unwrap_or_default(),
        );
    }
    let reveal = Test::new_in(t)
        .args(&["--rehearsal", "secrets", "get", SECRET, "--reveal"])
        .run();
    assert_eq!(reveal.status, 0, "{}", reveal.stderr);
    scanner.add("the new secret", reveal.stdout.trim_end_matches('\n'));
    let mut hits = Vec::new();
    for (i, out) in outs.iter().enumerate() {
        hits.extend(scanner.scan_bytes(&format!("run {i} stdout"), out.stdout.as_bytes()));
        hits.extend(scanner.scan_bytes(&format!("run {i} stderr"), out.stderr.as_bytes()));
    }
    hits.extend(scanner.scan_rota_state(&t.state_dir()).expect("scan the state"));
    assert_no_leaks(&hits);
}

#[test]
fn the_readme_command_rehearses_the_whole_reset_with_no_other_argument() {
    let t = Test::new();
    let out = rehearse(&t, &[]);
    assert_eq!(out.status, 0, "{}\n{}", out.stdout, out.stderr);
    let lines: Vec<&str> = out.stdout.lines().collect();
    let mut at = 0;
    for want in [
        "run ",
        "  find_client_app: find client application DemandCaster of PCN 123456 (Developer Portal > Client Applications)",
        "ok        find_client_app",
        "ok        read_secrets",
        "  delete_expired_secret: confirmed by --yes: Delete the EXPIRED secret ",
        "  delete_expired_secret: delete expired secret ",
        "ok        delete_expired_secret",
        "  add_new_secret: add a secret to DemandCaster (",
        "ok        add_new_secret",
        "ok        check_new_secret",
        "ok        find_business_node",
        "  enter_business_node: confirmed by --yes: DemandCaster asks \"Are you sure you want to enter this company?\": enter business node 1042 (Acme Manufacturing)?",
        "ok        enter_business_node",
        "ok        open_pcn_connection",
        "ok        update_pcn_connection",
        "ok        test_connection",
        "ok        promote_new_secret",
        "ok        record_new_secret",
        "  delete_old_secret: delete old secret ",
        "ok        delete_old_secret",
        "vendor state after the rehearsal:",
        "  plex:",
        "    client app \"DemandCaster\" ",
        "  demandcaster:",
        "    PCN connection 1 (PCN 123456) ",
    ] {
        let found = lines[at..].iter().position(|l| l.starts_with(want));
        let Some(i) = found else {
            panic!("missing (in order) {want:?} after line {at} of\n{}", out.stdout);
        };
        at += i + 1;
    }
    assert!(out.stdout.contains("succeeded\n"), "{}", out.stdout);
    // The DemandCaster app is left with one secret, and that is the one
    // DemandCaster holds and just tested.
    let app_line = lines
        .iter()
        .position(|l| l.starts_with("    client app \"DemandCaster\""))
        .unwrap_or(0);
    let secret_line = lines.get(app_line + 1).copied().unwrap_or_default();
    assert!(secret_line.starts_with("      secret "), "{secret_line}");
    assert!(
        !lines
            .get(app_line + 2)
            .copied()
            .unwrap_or_default()
            .starts_with("      secret "),
        "one secret left:\n{}",
        out.stdout
    );
    let fp = secret_line.rsplit(' ').next().unwrap_or_default();
    let pcn1 = lines
        .iter()
        .find(|l| l.starts_with("    PCN connection 1 "))
        .copied()
        .unwrap_or_default();
    assert!(
        pcn1.contains(&format!("secret {fp} last test passed at 20")),
        "{pcn1} vs {fp}"
    );
    scan_rehearsal(&t, &[&out]);
}

/// What both paths must agree on: every secret by ID and fingerprint, what
/// each PCN connection holds and its last test, never dates or sessions.
fn comparable(vendors: &Value) -> Value {
    let plex: Vec<Value> = vendors["plex"]["state"]["clientApplications"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| {
            let secrets: Vec<Value> = a["secrets"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|s| json!([s["id"], s["fingerprint"], s["expired"]]))
                .collect();
            json!({"clientId": a["clientId"], "name": a["name"], "secrets": secrets})
        })
        .collect();
    let dc: Vec<Value> = vendors["demandcaster"]["state"]["pcns"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            json!([
                p["id"],
                p["clientId"],
                p["clientSecretFingerprint"],
                p["lastTest"]["ok"]
            ])
        })
        .collect();
    json!({"plex": plex, "demandcaster": dc})
}

#[test]
fn the_guided_rehearsal_reaches_the_same_vendor_state() {
    let (auto, guided) = (Test::new(), Test::new());
    let a = rehearse(&auto, &["--output", "json"]);
    assert_eq!(a.status, 0, "{}\n{}", a.stdout, a.stderr);
    let g = rehearse(&guided, &["--guided", "--output", "json"]);
    assert_eq!(g.status, 0, "{}\n{}", g.stdout, g.stderr);
    let (va, vg) = (vendors(&a), vendors(&g));
    assert_eq!(comparable(&vg), comparable(&va));
    let app = demandcaster_app(&va["plex"]["state"]);
    assert_eq!(app["secrets"].as_array().map(Vec::len), Some(1), "{app}");
    // The guided path asked the operator; no modeled action ran.
    assert!(
        g.stdout
            .contains("rehearsal: the plex simulator did what the instructions say"),
        "{}",
        g.stdout
    );
    scan_rehearsal(&auto, &[&a]);
    scan_rehearsal(&guided, &[&g]);
}

#[test]
fn the_inventory_after_a_rehearsal_lists_what_is_due() {
    let t = Test::new();
    let out = rehearse(&t, &["-i", "retire_within_days=0", "--output", "json"]);
    assert_eq!(out.status, 0, "{}\n{}", out.stdout, out.stderr);
    let app = demandcaster_app(&vendors(&out)["plex"]["state"]);
    let (old, new) = match app["secrets"].as_array().map(Vec::as_slice) {
        Some([old, new]) => (old.clone(), new.clone()),
        other => panic!("the old and the new secret are left: {other:?}"),
    };
    let inventory = |args: &[&str]| -> Value {
        let mut all = vec!["--rehearsal", "inventory", "--output", "json"];
        all.extend(args);
        let out = Test::new_in(&t).args(&all).run();
        assert_eq!(out.status, 0, "{}", out.stderr);
        serde_json::from_str(&out.stdout).expect("inventory JSON")
    };
    // Due within 30 days: only the old secret, which this run kept (it has
    // 14 days left) and which DemandCaster no longer uses.
    let due = inventory(&["--due", "30d"]);
    let due: Vec<(Value, Value, Value)> = due
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| (c["key_id"].clone(), c["status"].clone(), c["consumers"].clone()))
        .collect();
    assert_eq!(
        due,
        vec![(old["id"].clone(), json!("active"), json!(["demandcaster"]))]
    );
    let all = inventory(&[]);
    let status = |id: &Value| {
        all.as_array()
            .and_then(|a| a.iter().find(|c| &c["key_id"] == id))
            .map(|c| (c["status"].clone(), c["expires"].clone()))
    };
    assert_eq!(status(&new["id"]).map(|s| s.0), Some(json!("active")));
    assert_eq!(
        status(&new["id"]).and_then(|s| s.1.as_str().map(|e| e[..19].to_owned())),
        new["validUntil"].as_str().map(|v| v[..19].to_owned()),
        "expiry is Plex's valid-until"
    );
    assert_eq!(
        all.as_array().map(Vec::len),
        Some(3),
        "expired (deleted), old, new: {all}"
    );
    assert!(
        all.as_array()
            .into_iter()
            .flatten()
            .any(|c| c["status"] == "revoked"),
        "the expired secret is recorded as deleted: {all}"
    );
    scan_rehearsal(&t, &[&out]);
}

#[test]
fn a_plan_names_the_fixture_ids_and_dates_and_changes_nothing() {
    let mut rig = Rig::start("{}", true);
    let before: Vec<Value> = SYSTEMS.iter().map(|s| rig.sims.state(s)).collect();
    let secrets_before = rig.rota("secrets before", &["secrets", "list"], &[]).stdout;
    let mut args = vec!["plan", super::PLAYBOOK];
    args.extend(super::INPUTS);
    let out = rig.rota("plan", &args, &[]);
    assert_eq!(out.status, 0, "{}\n{}", out.stdout, out.stderr);
    let plex = &before[0];
    let app = demandcaster_app(plex);
    let row = |i: usize| {
        let s = &app["secrets"][i];
        (
            s["id"].as_str().unwrap_or_default().to_owned(),
            s["createdDate"].as_str().unwrap_or_default().to_owned(),
            s["validUntil"].as_str().unwrap_or_default().to_owned(),
        )
    };
    let ((eid, ec, ev), (oid, oc, ov)) = (row(0), row(1));
    let client = rig.fixture.client_id.clone();
    let node = before[1]["businessNodes"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|n| n["id"] == 1042)
        .and_then(|n| n["name"].as_str())
        .unwrap_or_default()
        .to_owned();
    for line in [
        format!("  delete_expired_secret: would ask: Delete the EXPIRED secret {eid} of DemandCaster (PCN 123456), created {ec}, valid until {ev}?"),
        format!("  delete_expired_secret: would delete expired secret {eid} created {ec}, valid until {ev} {{"),
        format!("  add_new_secret: would add a secret to DemandCaster ({client}), valid 365 days;"),
        // The DemandCaster half: the reads run (in sessions they sign out
        // of), so the plan names the node and the connection it would change.
        "ok        find_business_node".to_owned(),
        format!("  enter_business_node: would ask: DemandCaster asks \"Are you sure you want to enter this company?\": enter business node 1042 ({node})?"),
        format!("  enter_business_node: would enter business node 1042 ({node}), answering DemandCaster's confirmation {{"),
        "ok        open_pcn_connection".to_owned(),
        format!("  update_pcn_connection: would save Client Id {client} (unchanged) and the new secret <secret_id of add_new_secret> in DemandCaster's connection 1 to PCN 123456 of business node 1042\n"),
        "  check_new_secret: would sign in to Plex as DemandCaster with the new secret <secret_id of add_new_secret> (OAuth".to_owned(),
        format!("  delete_old_secret: would delete old secret {oid} created {oc}, valid until {ov}, once DemandCaster works with the new one {{"),
        "finished: nothing was changed".to_owned(),
    ] {
        assert!(out.stdout.contains(&line), "missing {line:?} in\n{}", out.stdout);
    }
    let after: Vec<Value> = SYSTEMS.iter().map(|s| rig.sims.state(s)).collect();
    assert_eq!(after, before, "the plan changed nothing at any vendor");
    let secrets_after = rig.rota("secrets after", &["secrets", "list"], &[]).stdout;
    assert_eq!(secrets_after, secrets_before, "nor in the store");
    let runs = rig.rota("runs", &["runs", "list"], &[]);
    assert_eq!(runs.stdout, "no runs recorded\n");
    rig.scan();
}
