//! soar-regenerate-api-key killed (as kill -9 would) at every step boundary
//! and inside the secret-producing call, then `rota runs resume`: the
//! vendor ends as after an uninterrupted run (same ID, one new secret that
//! every app holds, nothing locked), the store's current secret signs in,
//! no key was added, and the App Host never failed a login in between.
//! By default the regenerate step's points run; `ROTA_CRASH_MATRIX=full`
//! runs them all. Each point prints one `crash-matrix:` line.

use std::panic::{AssertUnwindSafe, catch_unwind};

use serde_json::Value;

use super::{NEW_SECRET, PLAYBOOK, Rig, assert_regenerated, failed_logins, key, playbook_path};

/// Every step of the playbook, and whether it changes something (so has an
/// intent) or captures the new secret (so has answer and capture points).
const STEPS: [(&str, bool, bool); 15] = [
    ("session", false, false),
    ("account", false, false),
    ("not_own_key", false, false),
    ("find", false, false),
    ("undeploy", true, false),
    ("regenerate", true, true),
    ("same_id", false, false),
    ("promote", true, false),
    ("update_secrets", true, false),
    ("deploy", true, false),
    ("check_login", false, false),
    ("check_account", false, false),
    ("not_locked", false, false),
    ("check_apps", false, false),
    ("record", true, false),
];

fn points(full: bool) -> Vec<String> {
    // `ROTA_CRASH_POINTS=step:phase,...` picks points by hand (debugging).
    if let Ok(only) = std::env::var("ROTA_CRASH_POINTS") {
        return only
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(str::to_owned)
            .collect();
    }
    let mut out = Vec::new();
    for (step, changes, captures) in STEPS {
        if !full && !captures {
            continue;
        }
        out.push(format!("{step}:start"));
        if changes {
            out.push(format!("{step}:intent"));
        }
        if captures {
            out.push(format!("{step}:answer"));
            out.push(format!("{step}:capture"));
        }
        out.push(format!("{step}:end"));
    }
    out
}

/// One point: crash there, resume, judge by the simulator and the store.
fn crash_and_resume(point: &str) {
    let mut r = Rig::with_app_host();
    let crashed = r.run(
        &playbook_path(),
        "fn_soar_utils",
        &["--yes", "--run-id", "r1"],
        &[("ROTA_CRASH_AT", point)],
    );
    assert!(
        crashed.status != 0 && crashed.stderr.contains(&format!("crash point {point} reached")),
        "the crash point was not reached (exit {}):\n{}",
        crashed.status,
        crashed.stdout
    );
    let resumed = r.rota(&["runs", "resume", "r1", "--yes"], &[]);
    // The lines that say why, for the one-line matrix result.
    let why = resumed
        .stdout
        .lines()
        .chain(resumed.stderr.lines().filter(|l| l.starts_with("error")))
        .filter(|l| l.contains("fail") || l.contains("refuse") || l.starts_with("error"))
        .collect::<Vec<_>>()
        .join(" | ");
    assert_eq!(resumed.status, 0, "resume exited {}: {why}", resumed.status);
    r.sims.tick("soar");
    let state = r.state();
    assert_regenerated(&r.before, &state, point);
    assert_eq!(
        failed_logins(&state),
        Vec::<Value>::new(),
        "an App Host login failed"
    );
    let versions = crate::test::Test::new_in(&r.t)
        .args(&["secrets", "versions", NEW_SECRET, "--output", "json"])
        .run();
    let versions: Value = serde_json::from_str(&versions.stdout).unwrap_or(Value::Null);
    let current = crate::test::with_stage(&versions, "current");
    assert_eq!(current.len(), 1, "one current version: {versions}");
    let id = super::text(&key(&state, "fn_soar_utils")["api_key_id"]);
    assert_eq!(
        current[0]["provenance"]["key_id"], id,
        "the stored secret carries the account's API key ID"
    );
    // How the resume settled the call the crash left in flight, if any.
    let timeline = r.rota(&["runs", "show", "r1"], &[]).stdout;
    let (step, phase) = point.split_once(':').unwrap_or_default();
    let settled = match (step, phase) {
        ("regenerate", "intent" | "answer") => Some(
            "reconciled soar.regenerate-secret (idempotency key r1/regenerate): not applied at the vendor; redone"
                .to_owned(),
        ),
        ("regenerate", "capture") => Some(format!(
            "reconciled soar.regenerate-secret (idempotency key r1/regenerate): applied before the interruption; adopted key {id}"
        )),
        (s @ ("undeploy" | "update_secrets" | "deploy"), "intent") => {
            let action = match s {
                "undeploy" => "undeploy-app",
                "update_secrets" => "update-app-secret",
                _ => "deploy-app",
            };
            Some(format!(
                "reconciled soar.{action} (idempotency key r1/{s}/0): repeated it (resume: repeat)"
            ))
        }
        _ => None,
    };
    match settled {
        Some(line) => assert!(timeline.contains(&line), "no {line:?} in:\n{timeline}"),
        None if phase != "intent" => {
            assert!(
                !timeline.contains("reconciled"),
                "nothing to reconcile:\n{timeline}"
            );
        }
        None => {}
    }
    let secret = r.reveal(NEW_SECRET, &[]);
    assert_eq!(
        r.signs_in(&id, &secret),
        200,
        "the stored secret is the account's"
    );
    r.scan(&[("new secret", &secret)]);
}

#[test]
fn crash_at_each_point_then_resume_ends_as_an_uninterrupted_run() {
    let full = std::env::var("ROTA_CRASH_MATRIX").is_ok_and(|v| v == "full");
    let mut failed = Vec::new();
    for point in points(full) {
        let result = catch_unwind(AssertUnwindSafe(|| crash_and_resume(&point)));
        let line = match result {
            Ok(()) => "ok".to_owned(),
            Err(e) => {
                let why = e
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_else(|| "panicked".to_owned());
                eprintln!("{point}: {why}");
                let first = why.lines().next().unwrap_or_default();
                let why = first
                    .strip_prefix("assertion `left == right` failed: ")
                    .unwrap_or(first)
                    .to_owned();
                failed.push(format!("{point}: {why}"));
                format!("FAIL: {why}")
            }
        };
        println!("crash-matrix: playbook={PLAYBOOK} point={point} result={line}");
    }
    assert!(failed.is_empty(), "crash points failed:\n{}", failed.join("\n"));
}
