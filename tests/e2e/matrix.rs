//! `rota run --matrix`: one playbook for many targets in one process, each
//! an independent run with its own journal, locks and outcome.

use serde_json::Value;

use crate::sims::Sims;
use crate::test::Test;

const VERIFY: &str = "name: verify-consumer\ndescription: Checks one integration.\ninputs:\n  consumer: {type: string}\n  lock: {type: string, default: \"{{inputs.consumer}}\"}\nlocks: [\"consumer/{{inputs.lock}}\"]\nsteps:\n  - id: verify\n    uses: consumers.verify\n    with: {consumer: \"{{inputs.consumer}}\"}\n    retry: {attempts: 2, delay: 10ms}\n";

fn configured(entries: &str) -> (Test, Sims) {
    let t = Test::new()
        .file("verify.yaml", VERIFY)
        .file("matrix.yaml", entries);
    let sims = Sims::start(&t, "{}");
    let t = sims.configure(t, true);
    (t, sims)
}

#[test]
fn every_entry_is_its_own_run_and_one_failure_fails_the_matrix_only() {
    let (t, sims) = configured(
        "- consumer: plytix-erp-sync\n- consumer: constellix-dns-sync\n- consumer: no-such-integration\n",
    );
    let out = Test::new_in(&t)
        .args(&[
            "run",
            "verify.yaml",
            "--matrix",
            "matrix.yaml",
            "--concurrency",
            "2",
            "--run-id",
            "m",
            "--yes",
        ])
        .run();
    assert_eq!(out.status, 1, "{}\n{}", out.stdout, out.stderr);
    for line in ["ok        m-1 ", "ok        m-2 ", "FAILED    m-3 "] {
        assert!(out.stdout.contains(line), "missing {line:?} in\n{}", out.stdout);
    }
    assert!(
        out.stdout
            .contains("matrix of 3 runs of verify-consumer (concurrency 2): 1 failed, 2 succeeded"),
        "{}",
        out.stdout
    );
    assert!(
        out.stderr.contains("1 of 3 runs did not succeed"),
        "{}",
        out.stderr
    );
    let calls: Vec<Value> = sims.state("consumers")["consumers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        calls.iter().all(|c| c["calls"] == 1),
        "each integration checked once: {calls:?}"
    );
    // Each entry is journaled as a run of its own.
    let runs = Test::new_in(&t).args(&["runs", "list", "--output", "json"]).run();
    let runs: Value = serde_json::from_str(&runs.stdout).expect("JSON");
    assert_eq!(runs.as_array().map(Vec::len), Some(3), "{runs}");
}

#[test]
fn entries_sharing_a_lock_do_not_run_together() {
    let (t, _sims) = configured(
        "- {consumer: plytix-erp-sync, lock: same}\n- {consumer: constellix-dns-sync, lock: same}\n",
    );
    let out = Test::new_in(&t)
        .args(&[
            "run",
            "verify.yaml",
            "--matrix",
            "matrix.yaml",
            "--output",
            "json",
            "--yes",
        ])
        .run();
    let last: Value = serde_json::from_str(out.stdout.lines().last().unwrap_or_default()).expect("JSON");
    assert_eq!(last["event"], "matrix_finished", "{}", out.stdout);
    assert_eq!(last["runs"], 2);
    // Either both ran one after the other or the second was refused at
    // once: never both at the same time holding the same lock.
    let succeeded = last["outcomes"]["succeeded"].as_u64().unwrap_or(0);
    let refused = last["outcomes"]["not started"].as_u64().unwrap_or(0);
    assert_eq!(succeeded + refused, 2, "{last}");
    if refused == 1 {
        assert!(out.stdout.contains("run_not_started"), "{}", out.stdout);
        assert!(
            out.stdout.contains("consumer/same"),
            "names the lock: {}",
            out.stdout
        );
    }
}

#[test]
fn a_bad_matrix_file_says_what_was_expected() {
    let t = Test::new()
        .file("verify.yaml", VERIFY)
        .file("matrix.yaml", "consumer: x\n");
    let out = Test::new_in(&t)
        .args(&["run", "verify.yaml", "--matrix", "matrix.yaml", "--yes"])
        .run();
    assert_eq!(out.status, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("a matrix file is a list of entries"),
        "{}",
        out.stderr
    );
    let t = t.file("matrix.yaml", "- [1, 2]\n");
    let out = Test::new_in(&t)
        .args(&["run", "verify.yaml", "--matrix", "matrix.yaml", "--yes"])
        .run();
    assert_eq!(out.status, 2, "{}", out.stderr);
    assert!(out.stderr.contains("matrix.yaml: entry 1:"), "{}", out.stderr);
}
