//! Crash points in the rollover: the process dies as by kill -9 at a step
//! boundary, at a changing call's journaled intent, or inside the
//! secret-producing generate (the vendor answered, the capture not yet
//! committed; the capture committed), and `rota runs resume` finishes the
//! run. Each point must end exactly like an uninterrupted run: bob holds one
//! key, the one the store's current secret key signs for, held by the
//! integration; any key the interrupted call made and rota could not keep
//! was deleted; no secret is lost.
//!
//! Design decision: one matrix over (step, phase). CI runs the points inside
//! and around generate; `ROTA_CRASH_MATRIX=full` runs every point of every
//! step the run reaches. Each point prints one `crash-matrix:` line for
//! `cargo xtask crash-matrix`, and the test fails listing every failed point.

use std::panic::{AssertUnwindSafe, catch_unwind};

use super::{BOB_SECRET, Tenant, audit_of, keys_of, signed_status};
use crate::test::Test;

const PLAYBOOK: &str = "constellix-api-key-rollover";

/// The steps bob's automated run reaches, with the phases each has: every
/// step starts and ends; a changing step journals its intent first; the
/// capturing generate also has the vendor's answer and the committed capture.
const STEPS: &[(&str, &[&str])] = &[
    ("keys", &["start", "end"]),
    ("refuse_third", &["start", "end"]),
    ("find_users", &["start", "end"]),
    ("users_found", &["start", "end"]),
    ("generate", &["start", "intent", "answer", "capture", "end"]),
    ("listed", &["start", "end"]),
    ("listed_check", &["start", "end"]),
    ("verify_new", &["start", "end"]),
    ("switch", &["start", "intent", "end"]),
    ("check_each", &["start", "end"]),
    ("delete_old", &["start", "intent", "end"]),
    ("promote", &["start", "intent", "end"]),
    ("record_new", &["start", "intent", "end"]),
    ("record_users", &["start", "intent", "end"]),
    ("record_old", &["start", "intent", "end"]),
    ("audit", &["start", "end"]),
    ("audit_check", &["start", "end"]),
    ("done", &["start", "end"]),
];

fn points() -> Vec<String> {
    let full = std::env::var("ROTA_CRASH_MATRIX").is_ok_and(|v| v == "full");
    STEPS
        .iter()
        .filter(|(step, _)| full || *step == "generate")
        .flat_map(|(step, phases)| phases.iter().map(move |p| format!("{step}:{p}")))
        .collect()
}

/// Crashes at `point`, resumes, and checks the end state; Err says why not.
fn crash_and_resume(point: &str) -> Result<(), String> {
    let tenant = Tenant::start(r#"{"seed": 3003}"#, true);
    let inputs = tenant.bob_inputs("");
    let crashed = {
        let t = Test::new_in(&tenant.t).file("inputs.yaml", &inputs);
        let pb = super::playbook();
        Test::new_in(&t)
            .env("ROTA_CRASH_AT", point)
            .args(&["run", &pb, "--inputs", "inputs.yaml", "--yes", "--run-id", "r1"])
            .run()
    };
    if crashed.status == 0 || !crashed.stderr.contains(&format!("crash point {point} reached")) {
        return Err(format!(
            "the crash point was not reached (exit {}): {}",
            crashed.status,
            crashed.stderr.lines().last().unwrap_or_default()
        ));
    }
    let resumed = Test::new_in(&tenant.t)
        .args(&["runs", "resume", "r1", "--yes"])
        .run();
    if resumed.status != 0 {
        return Err(format!(
            "resume failed (exit {}): {}",
            resumed.status,
            resumed.stderr.lines().last().unwrap_or_default()
        ));
    }
    let checked = catch_unwind(AssertUnwindSafe(|| {
        let state = tenant.constellix();
        let bob = keys_of(&state, 102);
        assert_eq!(bob.len(), 1, "bob holds one key, no orphan: {bob:?}");
        let new = &bob[0];
        let new_id = new["id"].as_u64().unwrap_or(0);
        // Only a crash between the vendor's answer and the capture's commit
        // leaves a key rota holds no secret for: revoked, then made again.
        let expected = if point == "generate:answer" { 1005 } else { 1004 };
        assert_eq!(new_id, expected, "the key bob holds: {new}");
        assert_eq!(
            audit_of(&state, 1003),
            ["create", "delete"],
            "the old key deleted once"
        );
        assert_eq!(audit_of(&state, new_id), ["create"]);
        for orphan in 1004..new_id {
            assert_eq!(
                audit_of(&state, orphan),
                ["create", "delete"],
                "orphan {orphan} revoked"
            );
        }
        let dns = tenant.consumer("constellix-dns-sync");
        assert_eq!(
            dns["credential"]["secretFingerprint"],
            new["secretKeyFingerprint"]
        );
        assert_eq!(dns["failedCalls"], 0, "{dns}");
        let version = tenant.current_version(BOB_SECRET);
        let secret = tenant.reveal(BOB_SECRET, version);
        let api_key = new["apiKey"].as_str().unwrap_or_default();
        assert_eq!(
            signed_status(tenant.sims.api("constellix"), api_key, &secret, "/v4/domains"),
            200,
            "the current stored secret key is the live key's: nothing lost"
        );
        tenant.scan(&[&crashed, &resumed], &[("bob's new secret key", &secret)]);
    }));
    checked.map_err(|e| {
        e.downcast_ref::<String>()
            .cloned()
            .or_else(|| e.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_else(|| "a check panicked".to_owned())
            .replace('\n', " ")
    })
}

#[test]
fn crash_matrix_rollover_resumes_to_the_uninterrupted_end_state() {
    let mut failed = Vec::new();
    for point in points() {
        let result = crash_and_resume(&point);
        match &result {
            Ok(()) => println!("crash-matrix: playbook={PLAYBOOK} point={point} result=ok"),
            Err(why) => {
                println!("crash-matrix: playbook={PLAYBOOK} point={point} result=FAIL: {why}");
                failed.push(point.clone());
            }
        }
    }
    assert!(
        failed.is_empty(),
        "crash points that did not resume cleanly: {failed:?}"
    );
}
