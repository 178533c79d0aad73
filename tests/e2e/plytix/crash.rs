//! Both Plytix playbooks killed (as by `kill -9`) at step boundaries and
//! inside the calls that change something, then resumed with `rota runs
//! resume`: the vendor ends as an uninterrupted run leaves it, no password
//! is lost, no extra key is left behind.
//!
//! Design decision: one matrix per playbook over (step, phase); CI runs the
//! points inside the changing calls (where a resume must reconcile), and
//! `ROTA_CRASH_MATRIX=full` every point. Each point prints one
//! `crash-matrix:` line for `cargo xtask crash-matrix`.

#![cfg(feature = "crash-points")]

use serde_json::Value;

use super::*;

fn full() -> bool {
    std::env::var("ROTA_CRASH_MATRIX").is_ok_and(|v| v == "full")
}

/// Runs every point, prints its line, and fails naming the points that failed.
fn matrix(playbook: &str, points: &[String], check: impl Fn(&str) -> Result<(), String>) {
    let mut failed = Vec::new();
    for point in points {
        let result = check(point.as_str());
        match &result {
            Ok(()) => println!("crash-matrix: playbook={playbook} point={point} result=ok"),
            Err(why) => {
                let why = why.replace('\n', " ");
                println!("crash-matrix: playbook={playbook} point={point} result=FAIL: {why}");
                failed.push(format!("{point}: {why}"));
            }
        }
    }
    assert!(
        failed.is_empty(),
        "{} crash points failed:\n{}",
        failed.len(),
        failed.join("\n")
    );
}

fn ensure(ok: bool, why: impl FnOnce() -> String) -> Result<(), String> {
    if ok { Ok(()) } else { Err(why()) }
}

/// Crashes a run of `playbook` at `point`, then resumes it to success.
fn crash_and_resume(p: &mut Tenant, playbook: &str, inputs: &str, point: &str) -> Result<Output, String> {
    let path = p.path(playbook);
    let crashed = p.rota_env(
        &["run", &path, "--inputs", inputs, "--yes", "--run-id", "x1"],
        &[("ROTA_CRASH_AT", point)],
    );
    ensure(
        crashed.status != 0 && crashed.stderr.contains(&format!("crash point {point} reached")),
        || {
            format!(
                "the crash point was not reached (exit {}): {}",
                crashed.status, crashed.stderr
            )
        },
    )?;
    let resumed = p.rota(&["runs", "resume", "x1", "--yes"]);
    ensure(resumed.status == 0, || {
        format!(
            "resume failed (exit {}): {}{}",
            resumed.status, resumed.stdout, resumed.stderr
        )
    })?;
    Ok(resumed)
}

/// What an uninterrupted create leaves: the fixtures' keys and one more.
fn reference_create() -> Vec<Value> {
    let mut p = Tenant::start("{}", true);
    p.create_inputs(NEW_NAME, "Editor");
    let out = p.run(CREATE, "create.yaml", &["--yes"]);
    assert_eq!(out.status, 0, "the uninterrupted run: {}", out.stderr);
    p.keys()
}

fn check_create(point: &str, reference: &[Value]) -> Result<(), String> {
    let mut p = Tenant::start("{}", true);
    p.create_inputs(NEW_NAME, "Editor");
    let resumed = crash_and_resume(&mut p, CREATE, "create.yaml", point)?;
    let keys = p.keys();
    ensure(keys.len() == reference.len(), || {
        format!(
            "{} keys at the vendor, an uninterrupted run leaves {}",
            keys.len(),
            reference.len()
        )
    })?;
    let fixtures = reference.len() - 1;
    ensure(
        undated(&keys[..fixtures]) == undated(&reference[..fixtures]),
        || "the fixture keys changed".to_owned(),
    )?;
    ensure(roles_of(&keys) == roles_of(reference), || {
        format!("keys {:?}, want {:?}", roles_of(&keys), roles_of(reference))
    })?;
    let versions = p.rota(&["secrets", "versions", NEW_SECRET, "--output", "json"]);
    let versions: Value = serde_json::from_str(&versions.stdout).unwrap_or(Value::Null);
    let current = crate::test::with_stage(&versions, "current").len();
    ensure(current == 1, || format!("one current password, got {versions}"))?;
    match p.new_key_signs_in() {
        Some(true) => {}
        Some(false) => return Err("the stored password is not the key's".to_owned()),
        None => return Err("the password was lost".to_owned()),
    }
    if point == "create:answer" {
        // Plytix answered the create but rota had not stored the password:
        // the resume must revoke that key before it creates another.
        ensure(resumed.stdout.contains("revoked orphan key"), || {
            format!("no orphan was revoked: {}", resumed.stdout)
        })?;
    }
    let record = p.rota(&["runs", "show", "x1", "--output", "json"]);
    let record: Value = serde_json::from_str(&record.stdout).unwrap_or(Value::Null);
    ensure(record["summary"]["status"] == "succeeded", || {
        format!("the run ended {}", record["summary"]["status"])
    })?;
    p.assert_no_leaks();
    Ok(())
}

/// `<step>:<phase>` for each step and phase.
fn points(steps: &[&str], phases: &[&str]) -> Vec<String> {
    steps
        .iter()
        .flat_map(|s| phases.iter().map(move |p| format!("{s}:{p}")))
        .collect()
}

#[test]
fn plytix_api_key_crash_matrix() {
    let mut at = points(&["create"], &["start", "intent", "answer", "capture", "end"]);
    if full() {
        at.extend(points(
            &[
                "sign_in",
                "owner_or_admin",
                "api_tab",
                "name_is_free",
                "role",
                "verify",
                "done",
            ],
            &["start", "end"],
        ));
        at.extend(points(&["promote", "record"], &["start", "intent", "end"]));
    }
    let reference = reference_create();
    matrix("plytix-api-key", &at, |point| check_create(point, &reference));
}

/// What an uninterrupted role change leaves.
fn reference_role() -> Vec<Value> {
    let mut p = Tenant::start("{}", true);
    p.role_inputs("ERP integration", "Viewer");
    let out = p.run(ROLE, "role.yaml", &["--yes"]);
    assert_eq!(out.status, 0, "the uninterrupted run: {}", out.stderr);
    p.keys()
}

fn check_role(point: &str, reference: &[Value]) -> Result<(), String> {
    let mut p = Tenant::start("{}", true);
    p.role_inputs("ERP integration", "Viewer");
    crash_and_resume(&mut p, ROLE, "role.yaml", point)?;
    let keys = p.keys();
    ensure(undated(&keys) == undated(reference), || {
        format!("keys {:?}, want {:?}", roles_of(&keys), roles_of(reference))
    })?;
    let erp = p.sims.state("consumers")["consumers"][0].clone();
    ensure(erp["failedCalls"] == 0, || {
        format!("the integration failed: {erp}")
    })?;
    p.assert_no_leaks();
    Ok(())
}

#[test]
fn plytix_api_key_role_crash_matrix() {
    let mut at = points(&["change"], &["start", "intent", "end"]);
    if full() {
        at.extend(points(
            &[
                "sign_in",
                "owner_or_admin",
                "key",
                "new_role",
                "role_differs",
                "consumers",
                "verify_consumers",
                "done",
            ],
            &["start", "end"],
        ));
        at.extend(points(&["record"], &["start", "intent", "end"]));
    }
    let reference = reference_role();
    matrix("plytix-api-key-role", &at, |point| check_role(point, &reference));
}
