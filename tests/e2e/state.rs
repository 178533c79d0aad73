//! The embedded state through the real binary: secrets, the run journal,
//! resume after a crash, locks, the audit log. Every test that handles a
//! secret scans stdout, stderr and the whole state directory for it.

use std::process::{Command, Stdio};

use rota_testkit::{LeakScanner, assert_no_leaks};

use crate::test::{Output, ROTA, Test};

fn scan(secret: &str, t: &Test, outputs: &[&Output]) {
    let mut scanner = LeakScanner::new();
    scanner.add("secret", secret);
    let mut hits = Vec::new();
    for (i, out) in outputs.iter().enumerate() {
        hits.extend(scanner.scan_bytes(&format!("stdout #{i}"), out.stdout.as_bytes()));
        hits.extend(scanner.scan_bytes(&format!("stderr #{i}"), out.stderr.as_bytes()));
    }
    hits.extend(
        scanner
            .scan_rota_state(&t.state_dir())
            .expect("scan the state dir"),
    );
    assert_no_leaks(&hits);
}

#[test]
fn secrets_put_list_versions_and_audited_reveal() {
    const VALUE: &str = "stdin-secret-value-5c1e";
    let t = Test::new();
    let out = Test::new_in(&t)
        .args(&["secrets", "put", "plex/acme/login"])
        .stdin(VALUE)
        .run();
    assert_eq!(
        (out.status, out.stdout.as_str()),
        (0, "stored plex/acme/login@1 (current)\n"),
        "{}",
        out.stderr
    );
    let list = Test::new_in(&t)
        .args(&["secrets", "list", "--output", "json"])
        .run();
    let listed: serde_json::Value = serde_json::from_str(&list.stdout).expect("JSON");
    assert_eq!(listed[0]["name"], "plex/acme/login");
    assert_eq!(listed[0]["current"], 1);
    let refused = Test::new_in(&t)
        .args(&["secrets", "get", "plex/acme/login"])
        .run();
    assert_eq!(refused.status, 2);
    assert!(refused.stderr.contains("needs --reveal"), "{}", refused.stderr);
    scan(VALUE, &t, &[&out, &list, &refused]);
    let revealed = Test::new_in(&t)
        .args(&["secrets", "get", "plex/acme/login", "--reveal"])
        .run();
    assert_eq!(revealed.stdout, format!("{VALUE}\n"));
    let audit = Test::new_in(&t).args(&["audit", "export"]).run();
    assert!(audit.stdout.contains("secret.reveal"), "{}", audit.stdout);
    assert!(!audit.stdout.contains(VALUE));
    let verify = Test::new_in(&t).args(&["audit", "verify"]).run();
    assert_eq!(verify.status, 0, "{}{}", verify.stdout, verify.stderr);
}

#[test]
fn an_export_decrypts_with_the_real_age_cli() {
    const VALUE: &str = "exported-secret-77aa";
    if Command::new("age").arg("--version").output().is_err() {
        eprintln!("SKIPPED LOUDLY: the `age` CLI is not installed (.ci/run installs it)");
        return;
    }
    let t = Test::new();
    assert_eq!(
        Test::new_in(&t)
            .args(&["secrets", "put", "constellix/alice/key"])
            .stdin(VALUE)
            .run()
            .status,
        0
    );
    let export = Test::new_in(&t)
        .args(&["secrets", "export", "constellix/alice/key", "-o", "export.age"])
        .run();
    assert_eq!(export.status, 0, "{}", export.stderr);
    let exported = t.path().join("export.age");
    let out = Command::new("age")
        .arg("-d")
        .arg("-i")
        .arg(t.state_dir().join("identity.txt"))
        .arg(&exported)
        .stdout(Stdio::piped())
        .output()
        .expect("run age");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("the export is JSON");
    assert_eq!(doc["secrets"][0]["value"], VALUE);
}

const JOURNALED: &str = "name: journaled\ndescription: t\nsecrets:\n  key: {name: demo/key}\nlocks: [\"demo/key\"]\nsteps:\n  - id: one\n    uses: core.log\n    with: {message: one}\n  - id: mint\n    manual:\n      instructions: Create a key and paste it.\n      outputs:\n        key_id: {prompt: Key ID}\n        secret: {prompt: Secret, type: secret, secret: key}\n  - id: promote\n    uses: core.secret.promote\n    with: {secret: \"{{steps.mint.outputs.secret}}\"}\n  - id: three\n    uses: core.log\n    with: {message: \"done with {{steps.mint.outputs.key_id}}\"}\non_failure:\n  - id: discard\n    if: '{{and (eq steps.mint.status \"succeeded\") (ne steps.promote.status \"succeeded\")}}'\n    uses: core.secret.discard\n    with: {secret: \"{{steps.mint.outputs.secret}}\"}\n";

fn journaled(secret: &str) -> Test {
    Test::new().file("p.yaml", JOURNALED).file(
        "answers.yaml",
        format!("manual:\n  mint:\n    key_id: k-1\n    secret: {secret}\n"),
    )
}

#[test]
fn a_run_is_journaled_step_by_step() {
    const SECRET: &str = "journaled-secret-3d4f";
    let t = journaled(SECRET);
    let run = Test::new_in(&t)
        .args(&["run", "p.yaml", "--inputs", "answers.yaml", "--run-id", "r1"])
        .run();
    assert_eq!(run.status, 0, "{}{}", run.stdout, run.stderr);
    let show = Test::new_in(&t)
        .args(&["runs", "show", "r1", "--output", "json"])
        .run();
    let record: serde_json::Value = serde_json::from_str(&show.stdout).expect("JSON");
    assert_eq!(record["summary"]["status"], "succeeded");
    let steps: Vec<&str> = record["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["key"]["step"].as_str())
        .collect();
    assert_eq!(steps, vec!["one", "mint", "promote", "three"]);
    assert_eq!(
        record["steps"][1]["end"]["outputs"]["secret"],
        serde_json::json!({"$secret": "demo/key@1"})
    );
    assert_eq!(record["steps"][2]["intents"][0]["action"], "core.secret.promote");
    let list = Test::new_in(&t).args(&["runs", "list"]).run();
    assert!(list.stdout.contains("r1"), "{}", list.stdout);
    scan(SECRET, &t, &[&run, &show, &list]);
}

#[test]
fn a_second_run_on_the_same_credential_fails_fast_with_no_wait() {
    let t = Test::new().file(
        "slow.yaml",
        "name: slow\ndescription: t\nlocks: [\"plex/acme/client\"]\nsteps:\n  - id: hold\n    uses: core.sleep\n    with: {for: 20s}\n",
    );
    let mut holder = Command::new(ROTA)
        .args(["run", "slow.yaml", "--run-id", "holder"])
        .current_dir(t.path())
        .env("ROTA_STATE_DIR", t.state_dir())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the first run");
    // Wait (bounded) until the first run holds its lock.
    let mut held = false;
    for _ in 0..200 {
        let runs = Test::new_in(&t).args(&["runs", "list", "--output", "json"]).run();
        if runs.stdout.contains("\"holder\"") {
            held = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(held, "the first run never started");
    let second = Test::new_in(&t)
        .args(&["run", "slow.yaml", "--run-id", "second", "--no-wait"])
        .run();
    let _ = holder.kill();
    let _ = holder.wait();
    assert_eq!(second.status, 5, "{}{}", second.stdout, second.stderr);
    assert!(second.stderr.contains("plex/acme/client"), "{}", second.stderr);
    assert!(second.stderr.contains("holder"), "{}", second.stderr);
}

#[test]
fn credentials_recorded_by_a_run_show_up_in_the_inventory() {
    let t = Test::new().file(
        "p.yaml",
        "name: inv\ndescription: t\nsteps:\n  - id: record\n    uses: core.inventory.record\n    with:\n      vendor: constellix\n      account: bob\n      key_id: \"1003\"\n      expires: '{{date_add (now) \"20d\"}}'\n      consumers: [constellix-dns-sync]\n  - id: later\n    uses: core.inventory.record\n    with:\n      vendor: constellix\n      account: alice\n      key_id: \"1002\"\n      expires: '{{date_add (now) \"300d\"}}'\n",
    );
    let run = Test::new_in(&t).args(&["run", "p.yaml"]).run();
    assert_eq!(run.status, 0, "{}{}", run.stdout, run.stderr);
    let due = Test::new_in(&t)
        .args(&["inventory", "--due", "30d", "--output", "json"])
        .run();
    let due: serde_json::Value = serde_json::from_str(&due.stdout).expect("JSON");
    let keys: Vec<&str> = due
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["key_id"].as_str())
        .collect();
    assert_eq!(keys, vec!["1003"]);
    assert_eq!(due[0]["consumers"], serde_json::json!(["constellix-dns-sync"]));
    let all = Test::new_in(&t).args(&["inventory", "--output", "json"]).run();
    let all: serde_json::Value = serde_json::from_str(&all.stdout).expect("JSON");
    assert_eq!(all.as_array().map(Vec::len), Some(2));
}

/// Regression: a changing action inside for_each journals its intent under
/// the step that is in flight (it used to be refused as "not in flight").
#[test]
fn changing_actions_in_for_each_are_journaled() {
    let t = Test::new().file(
        "p.yaml",
        "name: each\ndescription: t\nsteps:\n  - id: record\n    for_each: [\"2001\", \"2002\"]\n    uses: core.inventory.record\n    with: {vendor: plytix, account: acme, key_id: \"{{item}}\"}\n",
    );
    let run = Test::new_in(&t).args(&["run", "p.yaml", "--run-id", "r1"]).run();
    assert_eq!(run.status, 0, "{}{}", run.stdout, run.stderr);
    let show = Test::new_in(&t)
        .args(&["runs", "show", "r1", "--output", "json"])
        .run();
    let record: serde_json::Value = serde_json::from_str(&show.stdout).expect("JSON");
    let intents: Vec<&str> = record["steps"][0]["intents"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["idempotency_key"].as_str())
        .collect();
    assert_eq!(intents, vec!["r1/record/0", "r1/record/1"]);
}

#[cfg(feature = "crash-points")]
mod crash {
    use super::*;
    use crate::test::with_stage;

    /// Abort at every boundary of every step (and right after the manual
    /// secret is committed), then resume: the run completes, the secret typed
    /// before the crash is not lost, and no step is done twice.
    #[test]
    fn resume_after_a_crash_at_every_step_boundary() {
        const SECRET: &str = "crash-secret-9e0b";
        let points = [
            "one:start",
            "one:end",
            "mint:start",
            "mint:capture",
            "mint:end",
            "promote:start",
            "promote:intent",
            "promote:end",
            "three:start",
            "three:end",
        ];
        for point in points {
            let t = journaled(SECRET);
            let crashed = Test::new_in(&t)
                .env("ROTA_CRASH_AT", point)
                .args(&["run", "p.yaml", "--inputs", "answers.yaml", "--run-id", "r1"])
                .run();
            assert_ne!(crashed.status, 0, "{point}: the crash point was not reached");
            assert!(
                crashed.stderr.contains(&format!("crash point {point} reached")),
                "{point}: {}",
                crashed.stderr
            );
            let resumed = Test::new_in(&t)
                .args(&["runs", "resume", "r1", "--inputs", "answers.yaml"])
                .run();
            assert_eq!(resumed.status, 0, "{point}: {}{}", resumed.stdout, resumed.stderr);
            let record = Test::new_in(&t)
                .args(&["runs", "show", "r1", "--output", "json"])
                .run();
            let record: serde_json::Value = serde_json::from_str(&record.stdout).expect("JSON");
            assert_eq!(record["summary"]["status"], "succeeded", "{point}");
            let versions = Test::new_in(&t)
                .args(&["secrets", "versions", "demo/key", "--output", "json"])
                .run();
            let versions: serde_json::Value = serde_json::from_str(&versions.stdout).expect("JSON");
            let current = with_stage(&versions, "current");
            assert_eq!(
                current.len(),
                1,
                "{point}: exactly one current version: {versions}"
            );
            let reveal = Test::new_in(&t)
                .args(&["secrets", "get", "demo/key", "--reveal"])
                .run();
            assert_eq!(
                reveal.stdout,
                format!("{SECRET}\n"),
                "{point}: the secret survived"
            );
            // Finished steps are not repeated: "one" logs once across both processes.
            let ones =
                crashed.stdout.matches("  one: one").count() + resumed.stdout.matches("  one: one").count();
            assert_eq!(ones, 1, "{point}: step one ran {ones} times");
            scan(SECRET, &t, &[&crashed, &resumed]);
        }
    }

    #[test]
    fn abort_runs_the_compensation_and_releases_the_locks() {
        const SECRET: &str = "aborted-secret-61c2";
        let t = journaled(SECRET);
        let crashed = Test::new_in(&t)
            .env("ROTA_CRASH_AT", "mint:end")
            .args(&["run", "p.yaml", "--inputs", "answers.yaml", "--run-id", "r1"])
            .run();
        assert_ne!(crashed.status, 0);
        let abort = Test::new_in(&t).args(&["runs", "abort", "r1"]).run();
        assert_eq!(abort.status, 0, "{}{}", abort.stdout, abort.stderr);
        assert!(abort.stdout.contains("ok        discard"), "{}", abort.stdout);
        let record = Test::new_in(&t)
            .args(&["runs", "show", "r1", "--output", "json"])
            .run();
        let record: serde_json::Value = serde_json::from_str(&record.stdout).expect("JSON");
        assert_eq!(record["summary"]["status"], "aborted");
        let versions = Test::new_in(&t)
            .args(&["secrets", "list", "--output", "json"])
            .run();
        assert!(
            !versions.stdout.contains("\"pending\": 1"),
            "the pending secret was discarded: {}",
            versions.stdout
        );
        let again = Test::new_in(&t)
            .args(&["run", "p.yaml", "--inputs", "answers.yaml", "--no-wait"])
            .run();
        assert_eq!(again.status, 0, "the lock was released: {}", again.stderr);
        scan(SECRET, &t, &[&crashed, &abort, &again]);
    }
}
