//! The full crash matrix of plex-api-key-reset: the process is aborted (as
//! by kill -9) at every step boundary and inside every call that changes
//! something, then `rota runs resume` finishes the run. Every point must end
//! exactly as an uninterrupted run: one new secret at Plex, the one rota's
//! store holds as current and DemandCaster holds and tested, both fixture
//! secrets gone, nothing else touched, nothing leaked.
//!
//! Design decision: the whole matrix runs by default (CI), on one
//! simulator process reset between points and one prepared state directory
//! copied per point (operator secrets stored, plugins compiled), so a point
//! costs two `rota` runs and no rebuild. `ROTA_CRASH_MATRIX=full` changes
//! nothing here: this playbook is the one CI runs in full.

use super::{PLAYBOOK, Rig, reset_done};

/// Every step in order, with the crash phases it passes through: `start`
/// and `end` for all; `intent` for calls that change something (journaled
/// before the call); `answer` where a vendor answer carrying a secret bound
/// for the store is in rota's hands but not stored yet (the new Plex secret;
/// run-only captures such as the DemandCaster session cookie or the Plex
/// token are never stored, so they have no such point); `capture` once the
/// new secret is stored.
const MATRIX: &[(&str, &[&str])] = &[
    ("find_client_app", &["start", "end"]),
    ("read_secrets", &["start", "end"]),
    ("delete_expired_secret", &["start", "intent", "end"]),
    ("add_new_secret", &["start", "intent", "answer", "capture", "end"]),
    ("check_new_secret", &["start", "intent", "end"]),
    ("find_business_node", &["start", "end"]),
    ("enter_business_node", &["start", "intent", "end"]),
    ("open_pcn_connection", &["start", "end"]),
    ("update_pcn_connection", &["start", "intent", "end"]),
    ("test_connection", &["start", "intent", "end"]),
    ("promote_new_secret", &["start", "intent", "end"]),
    ("record_new_secret", &["start", "intent", "end"]),
    ("delete_old_secret", &["start", "intent", "end"]),
];

/// Points after which the new secret must already be in the store, pending
/// (it is stored before anything else happens with it).
fn stored_pending_at(step: &str, phase: &str) -> bool {
    let order: Vec<&str> = MATRIX.iter().map(|(s, _)| *s).collect();
    let at = order.iter().position(|s| *s == step).unwrap_or(0);
    let add = order.iter().position(|s| *s == "add_new_secret").unwrap_or(0);
    let promote = order.iter().position(|s| *s == "promote_new_secret").unwrap_or(0);
    (at == add && matches!(phase, "capture" | "end"))
        || (at > add && at < promote)
        || (at == promote && phase != "end")
}

/// One point: crash, check what the crash left, resume, judge.
fn point(template: &Rig, step: &str, phase: &str) -> Result<(), String> {
    let at = format!("{step}:{phase}");
    let mut rig = template.fork();
    let crashed = rig.run("r1", &[], &[("ROTA_CRASH_AT", &at)]);
    if crashed.status == 0 || !crashed.stderr.contains(&format!("crash point {at} reached")) {
        return Err(format!(
            "the crash point was not reached (exit {}): {}",
            crashed.status,
            crashed.stderr.lines().last().unwrap_or_default()
        ));
    }
    if stored_pending_at(step, phase) {
        let store = rig.store();
        let stages: Vec<String> = store.iter().map(|(_, s, _)| s.join(",")).collect();
        if stages != ["pending"] {
            return Err(format!(
                "after the crash the store held {stages:?}, not one pending secret"
            ));
        }
    }
    let resumed = rig.rota(
        "resume",
        &["runs", "resume", "r1", "--yes", "--output", "json"],
        &[],
    );
    if resumed.status != 0 {
        let why = resumed
            .stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .or_else(|| resumed.stdout.lines().rev().find(|l| l.contains("failure")))
            .unwrap_or_default()
            .to_owned();
        return Err(format!("resume exited {}: {why}", resumed.status));
    }
    let outcome = rig.outcome();
    if outcome != reset_done() {
        return Err(format!("ended as {outcome}"));
    }
    rig.scan();
    Ok(())
}

#[test]
fn crash_matrix_of_the_plex_reset_resumes_to_the_same_end_at_every_point() {
    let template = Rig::start("{}", true);
    // The uninterrupted run every point is held to (and which compiles the
    // plugins into the template's cache).
    let mut reference = template.fork();
    let out = reference.run("r0", &[], &[]);
    assert_eq!(out.status, 0, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(reference.outcome(), reset_done());
    reference.scan();
    let cache = reference.t.state_dir().join("plugin-cache");
    super::copy_dir(&cache, &template.t.state_dir().join("plugin-cache"));

    let mut failed = Vec::new();
    for (step, phases) in MATRIX {
        for phase in *phases {
            let result = point(&template, step, phase);
            match &result {
                Ok(()) => println!("crash-matrix: playbook={PLAYBOOK} point={step}:{phase} result=ok"),
                Err(why) => {
                    let why = why.replace('\n', " ");
                    println!("crash-matrix: playbook={PLAYBOOK} point={step}:{phase} result=FAIL: {why}");
                    failed.push(format!("{step}:{phase}: {why}"));
                }
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
