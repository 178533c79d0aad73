//! Reconcile on resume, through the real binary: the `keys` test plugin
//! (built from source) against `rota_testkit::KeysVendor` on loopback, a
//! rotation aborted at every step boundary and inside the capturing call,
//! then `rota runs resume`. The vendor's own view is the judge: one live new
//! key, the one the store and the consumer hold, nothing done twice, no
//! orphan left. Every test scans everything it produced for every secret.
//! Compiled with the `crash-points` feature only.

use rota_testkit::{KeysVendor, LeakScanner, VendorView, assert_no_leaks, fingerprint};

use crate::test::{Output, Test, with_stage};

const TOKEN: &str = "vendor-admin-token-4e1f07";

const ROTATION: &str = r#"name: keys-rotation
description: create a key, hand it to the consumer, promote it, retire the old one
inputs:
  token: {type: secret, send_to: [keys]}
  old_key: {type: string}
secrets:
  key: {name: keys/demo/key}
locks: ["keys/demo"]
steps:
  - id: create
    uses: keys.create-key
    with: {token: "{{inputs.token}}", name: rota}
    captures: {secret: key}
  - id: set
    uses: keys.set-credential
    with:
      token: "{{inputs.token}}"
      consumer: app-1
      key_id: "{{steps.create.outputs.key_id}}"
      secret: "{{steps.create.outputs.secret}}"
  - id: promote
    uses: core.secret.promote
    with: {secret: "{{steps.create.outputs.secret}}"}
  - id: retire
    uses: keys.delete-key
    with: {token: "{{inputs.token}}", key_id: "{{inputs.old_key}}"}
on_failure:
  - id: compensate
    uses: core.log
    with: {message: "compensation ran after step {{run.failure.step}} failed"}
"#;

const FLEET: &str = r#"name: keys-fleet
description: one key per consumer, minted concurrently
inputs:
  token: {type: secret, send_to: [keys]}
secrets:
  key: {name: keys/fleet/key}
steps:
  - id: mint
    for_each: [a, b, c]
    concurrency: 3
    uses: keys.create-key
    with: {token: "{{inputs.token}}", name: "fleet-{{item}}"}
    captures: {secret: key}
  - id: done
    uses: core.log
    with: {message: minted}
"#;

/// A temp dir with the keys plugin granted the vendor's origin, the
/// vendor's admin token in the store, and `playbook` as p.yaml.
struct Rig {
    vendor: KeysVendor,
    t: Test,
    old_key: String,
    outputs: Vec<Output>,
}

fn rig(playbook: &str) -> Rig {
    let vendor = KeysVendor::start(TOKEN).expect("start the key vendor");
    let old_key = vendor.seed_key("rota");
    vendor.seed_consumer("app-1", &old_key);
    let t = Test::new();
    let dir = t.path().join("plugins");
    std::fs::create_dir_all(&dir).expect("plugin dir");
    std::fs::copy(rota_host::test_plugins::KEYS, dir.join("keys.wasm")).expect("copy the keys plugin");
    let config = format!(
        "plugin_dirs: [{}]\nplugins:\n  keys:\n    targets:\n      - name: local\n        base_url: {origin}\n        origins: [\"{origin}\"]\n",
        dir.display(),
        origin = vendor.origin()
    );
    let t = t.file(".config/rota/rota.yaml", config).file("p.yaml", playbook);
    let put = Test::new_in(&t)
        .args(&["secrets", "put", "keys/admin-token"])
        .stdin(TOKEN)
        .run();
    assert_eq!(put.status, 0, "{}", put.stderr);
    Rig {
        vendor,
        t,
        old_key,
        outputs: vec![put],
    }
}

impl Rig {
    fn rota(&mut self, env: &[(&str, &str)], args: &[&str]) -> Output {
        let mut cmd = Test::new_in(&self.t).args(args).args(&["-vvv"]);
        for (k, v) in env {
            cmd = cmd.env(k, v);
        }
        let out = cmd.run();
        self.outputs.push(Output {
            status: out.status,
            stdout: out.stdout.clone(),
            stderr: out.stderr.clone(),
        });
        out
    }

    fn start(&mut self, env: &[(&str, &str)]) -> Output {
        let old = format!("old_key={}", self.old_key);
        self.rota(
            env,
            &[
                "run",
                "p.yaml",
                "-i",
                "token=keys/admin-token",
                "-i",
                &old,
                "--run-id",
                "r1",
            ],
        )
    }

    fn crash_at(&mut self, point: &str) {
        let crashed = self.start(&[("ROTA_CRASH_AT", point)]);
        assert_ne!(crashed.status, 0, "{point}: the crash point was not reached");
        assert!(
            crashed.stderr.contains(&format!("crash point {point} reached")),
            "{point}: {}",
            crashed.stderr
        );
    }

    fn resume(&mut self) -> Output {
        self.rota(&[], &["runs", "resume", "r1"])
    }

    fn show(&mut self) -> String {
        self.rota(&[], &["runs", "show", "r1"]).stdout
    }

    fn record(&mut self) -> serde_json::Value {
        let out = self.rota(&[], &["runs", "show", "r1", "--output", "json"]);
        serde_json::from_str(&out.stdout).expect("runs show --output json is JSON")
    }

    /// The value of a stored version, by fingerprint (the reveal's output is
    /// the one place the value may appear, so it is not kept for the scan).
    fn stored_fingerprint(&self, name: &str, version: Option<u64>) -> String {
        let v = version.map(|v| v.to_string());
        let mut args = vec!["secrets", "get", name, "--reveal"];
        if let Some(v) = &v {
            args.extend(["--version", v.as_str()]);
        }
        let out = Test::new_in(&self.t).args(&args).run();
        assert_eq!(out.status, 0, "{}", out.stderr);
        fingerprint(out.stdout.trim_end_matches('\n'))
    }

    fn versions(&self, name: &str) -> serde_json::Value {
        let out = Test::new_in(&self.t)
            .args(&["secrets", "versions", name, "--output", "json"])
            .run();
        serde_json::from_str(&out.stdout).unwrap_or(serde_json::Value::Null)
    }

    /// Zero hits of the admin token or any key the vendor minted in any
    /// output (trace-level logs included) or anywhere in the state.
    fn scan(&self) {
        let mut scanner = LeakScanner::new();
        scanner.add("admin token", TOKEN);
        for (i, s) in self.vendor.minted_secrets().iter().enumerate() {
            scanner.add(&format!("minted key #{i}"), s);
        }
        let mut hits = Vec::new();
        for (i, out) in self.outputs.iter().enumerate() {
            hits.extend(scanner.scan_bytes(&format!("stdout #{i}"), out.stdout.as_bytes()));
            hits.extend(scanner.scan_bytes(&format!("stderr #{i}"), out.stderr.as_bytes()));
        }
        hits.extend(
            scanner
                .scan_rota_state(&self.t.state_dir())
                .expect("scan the state dir"),
        );
        assert_no_leaks(&hits);
    }

    /// The rotation finished exactly once: one new live key, held by the
    /// consumer and by the store as current (same value, same key ID), the old
    /// key deleted, and every key created beyond the one kept was revoked.
    /// Returns the vendor's view.
    fn assert_rotated(&mut self, point: &str) -> VendorView {
        let record = self.record();
        assert_eq!(record["summary"]["status"], "succeeded", "{point}");
        let view = self.vendor.view();
        assert_eq!(view.keys.len(), 1, "{point}: one live key: {view:?}");
        let live = view.keys[0].clone();
        assert_ne!(live.id, self.old_key, "{point}: the old key was retired");
        assert_eq!(
            view.consumers
                .get("app-1")
                .map(|c| (c.key_id.clone(), c.fingerprint.clone())),
            Some((live.id.clone(), live.fingerprint.clone())),
            "{point}: the consumer holds the live key"
        );
        assert_eq!(
            view.deletes, view.creates,
            "{point}: the old key plus every extra key created was deleted: {view:?}"
        );
        let versions = self.versions("keys/demo/key");
        let current = with_stage(&versions, "current");
        assert_eq!(current.len(), 1, "{point}: one current version: {versions}");
        assert_eq!(
            current[0]["provenance"]["key_id"], live.id,
            "{point}: the stored secret carries the vendor key ID"
        );
        assert_eq!(
            self.stored_fingerprint("keys/demo/key", None),
            live.fingerprint,
            "{point}: the store holds the live key's secret"
        );
        view
    }
}

fn reconcile_points(points: &[&str]) {
    for point in points {
        let mut r = rig(ROTATION);
        r.crash_at(point);
        let resumed = r.resume();
        assert_eq!(resumed.status, 0, "{point}: {}{}", resumed.stdout, resumed.stderr);
        let view = r.assert_rotated(point);
        let timeline = r.show();
        // k-1 is the old key; the first create makes k-2.
        let (creates, says): (u32, &[&str]) = match *point {
            "create:intent" => (
                1,
                &[
                    "reconciled keys.create-key (idempotency key r1/create): not applied at the vendor; redone",
                ],
            ),
            "create:answer" => (
                2,
                &[
                    "reconciled keys.create-key (idempotency key r1/create): left orphan key(s) k-2; revoking them, then redoing it",
                    "calling keys.revoke-key to revoke key k-2 (idempotency key r1/create)",
                    "revoked key k-2 (keys.revoke-key)",
                ],
            ),
            "create:capture" => (
                1,
                &[
                    "reconciled keys.create-key (idempotency key r1/create): applied before the interruption; adopted key k-2",
                ],
            ),
            "set:intent" => (
                1,
                &["reconciled keys.set-credential (idempotency key r1/set): repeated it (resume: repeat)"],
            ),
            "retire:intent" => (
                1,
                &["reconciled keys.delete-key (idempotency key r1/retire): repeated it (resume: repeat)"],
            ),
            _ => (1, &[]),
        };
        assert_eq!(view.creates, creates, "{point}: {view:?}\n{timeline}");
        for line in says {
            assert!(timeline.contains(line), "{point}: no {line:?} in:\n{timeline}");
        }
        if says.is_empty() {
            assert!(
                !timeline.contains("reconciled"),
                "{point}: nothing to reconcile:\n{timeline}"
            );
        }
        if *point == "create:answer" {
            assert_eq!(view.keys[0].id, "k-3", "{point}: the redone create's key is live");
        }
        r.scan();
    }
}

mod crash {
    use super::*;

    /// Aborted before, inside (after the intent, with the vendor's answer in
    /// hand, after the capture commit) and after the capturing call.
    #[test]
    fn an_interrupted_key_creation_is_reconciled_on_resume() {
        reconcile_points(&[
            "create:start",
            "create:intent",
            "create:answer",
            "create:capture",
            "create:end",
        ]);
    }

    /// Aborted at every boundary of the steps after the key exists.
    #[test]
    fn a_rotation_interrupted_after_the_key_exists_resumes_without_redoing_anything() {
        reconcile_points(&[
            "set:start",
            "set:intent",
            "set:end",
            "promote:start",
            "promote:intent",
            "promote:end",
            "retire:start",
            "retire:intent",
            "retire:end",
        ]);
    }

    /// Three creates in flight at once: each item is reconciled on its own
    /// (by its idempotency key, with the captures of that item only).
    #[test]
    fn concurrent_for_each_creates_are_each_reconciled() {
        for point in ["mint:intent", "mint:answer", "mint:capture"] {
            let mut r = rig(FLEET);
            let crashed = r.rota(
                &[("ROTA_CRASH_AT", point)],
                &["run", "p.yaml", "-i", "token=keys/admin-token", "--run-id", "r1"],
            );
            assert_ne!(crashed.status, 0, "{point}: the crash point was not reached");
            let resumed = r.resume();
            assert_eq!(resumed.status, 0, "{point}: {}{}", resumed.stdout, resumed.stderr);
            let record = r.record();
            assert_eq!(record["summary"]["status"], "succeeded", "{point}");
            let view = r.vendor.view();
            let mint = record["steps"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|s| s["key"]["step"] == "mint")
                .cloned()
                .unwrap_or_default();
            let items = mint["end"]["outputs"].as_array().cloned().unwrap_or_default();
            assert_eq!(items.len(), 3, "{point}: {mint}");
            for (item, out) in ["a", "b", "c"].iter().zip(&items) {
                let named = view.named(&format!("fleet-{item}"));
                assert_eq!(named.len(), 1, "{point}: one key for {item}: {view:?}");
                assert_eq!(out["key_id"], named[0].id, "{point}: item {item}: {out}");
                let handle = out["secret"]["$secret"].as_str().unwrap_or_default();
                let version = handle.rsplit_once('@').and_then(|(_, v)| v.parse().ok());
                assert_eq!(
                    r.stored_fingerprint("keys/fleet/key", version),
                    named[0].fingerprint,
                    "{point}: item {item}'s stored secret is its key's"
                );
            }
            // The seeded old key is still there, and nothing else.
            assert_eq!(view.keys.len(), 4, "{point}: {view:?}");
            assert_eq!(
                view.creates - view.deletes,
                3,
                "{point}: every extra create was revoked: {view:?}"
            );
            r.scan();
        }
    }

    /// A reconcile action that fails (the vendor's list is down) stops the
    /// resume with what is known and leaves the run resumable; the next
    /// resume finishes it.
    #[test]
    fn a_failing_reconcile_stops_the_resume_and_leaves_the_run_resumable() {
        let mut r = rig(ROTATION);
        r.crash_at("create:answer");
        r.vendor.fail_lists(true);
        let stopped = r.resume();
        assert_eq!(stopped.status, 1, "{}{}", stopped.stdout, stopped.stderr);
        for needle in [
            "error: run r1 stopped: resume stopped at step create: cannot reconcile: keys.find-key failed:",
            "upstream error 503",
            "what the journal holds for the interrupted keys.create-key call (r1/create): intent with a snapshot of the vendor's state; no secret captured; no vendor key ID recorded",
            "the run is still interrupted: nothing was compensated",
            "`rota runs resume r1`",
            "`rota runs abort r1`",
        ] {
            assert!(
                stopped.stderr.contains(needle),
                "no {needle:?} in:\n{}",
                stopped.stderr
            );
        }
        assert!(!stopped.stdout.contains("compensation ran"), "{}", stopped.stdout);
        let record = r.record();
        assert_eq!(record["summary"]["status"], "interrupted");
        r.vendor.fail_lists(false);
        let resumed = r.resume();
        assert_eq!(resumed.status, 0, "{}{}", resumed.stdout, resumed.stderr);
        let view = r.assert_rotated("after the second resume");
        assert_eq!(view.creates, 2, "{view:?}");
        r.scan();
    }

    /// The store refuses the capture commit: the key just minted is revoked
    /// by the ID the host read, the run fails naming it, compensation runs.
    #[test]
    fn a_capture_that_cannot_be_stored_revokes_the_new_key() {
        let mut r = rig(ROTATION);
        let out = r.start(&[("ROTA_FAIL_AT", "create:capture-commit")]);
        assert_eq!(out.status, 1, "{}{}", out.stdout, out.stderr);
        let last = out.stderr.lines().last().unwrap_or_default();
        for needle in [
            "error: run r1 failed: step create failed: keys.create-key:",
            "the vendor answered with secret keys/demo/key but rota could not store it",
            "ROTA_FAIL_AT=create:capture-commit",
            "vendor key ID k-2",
            "rota revoked key k-2 with keys.revoke-key",
        ] {
            assert!(last.contains(needle), "no {needle:?} in:\n{last}");
        }
        assert!(
            out.stdout.contains("compensation ran after step create failed"),
            "{}",
            out.stdout
        );
        let view = r.vendor.view();
        assert_eq!((view.creates, view.deletes), (1, 1), "{view:?}");
        assert_eq!(
            view.keys.iter().map(|k| k.id.as_str()).collect::<Vec<_>>(),
            vec![r.old_key.as_str()],
            "no orphan: only the old key is left"
        );
        assert_eq!(
            view.consumers.get("app-1").map(|c| c.key_id.clone()),
            Some(r.old_key.clone())
        );
        let timeline = r.show();
        for line in [
            "create:   calling keys.revoke-key to revoke key k-2 (idempotency key r1/create)",
            "create:   revoked key k-2 (keys.revoke-key)",
        ] {
            assert!(timeline.contains(line), "no {line:?} in:\n{timeline}");
        }
        assert_eq!(r.record()["summary"]["status"], "failed");
        r.scan();
    }
}

/// Regression: an interrupted changing call whose action declares no resume
/// policy still makes `rota runs resume` refuse, with the message it always had.
#[test]
fn a_call_without_a_resume_policy_still_refuses_to_resume() {
    let t = Test::new();
    let dir = t.path().join("plugins");
    std::fs::create_dir_all(&dir).expect("plugin dir");
    std::fs::copy(rota_host::test_plugins::ECHO, dir.join("echo.wasm")).expect("copy the echo plugin");
    let t = t
        .file(
            ".config/rota/rota.yaml",
            format!(
                "plugin_dirs: [{}]\nplugins:\n  echo:\n    targets:\n      - name: local\n        origins: [\"http://127.0.0.1:9\"]\n",
                dir.display()
            ),
        )
        .file(
            "p.yaml",
            "name: t\ndescription: t\ninputs:\n  admin: {type: secret, send_to: [echo]}\nsecrets:\n  key: {name: demo/key}\nsteps:\n  - id: mint\n    uses: echo.create-key\n    with: {url: \"http://127.0.0.1:9/keys\", id: acct, admin: \"{{inputs.admin}}\"}\n    captures: {secret: key}\n",
        );
    let put = Test::new_in(&t)
        .args(&["secrets", "put", "demo/admin"])
        .stdin("echo-admin-secret-77c1")
        .run();
    assert_eq!(put.status, 0, "{}", put.stderr);
    let crashed = Test::new_in(&t)
        .env("ROTA_CRASH_AT", "mint:intent")
        .args(&["run", "p.yaml", "-i", "admin=demo/admin", "--run-id", "r1"])
        .run();
    assert!(
        crashed.stderr.contains("crash point mint:intent reached"),
        "{}",
        crashed.stderr
    );
    let refused = Test::new_in(&t).args(&["runs", "resume", "r1"]).expect(
        1,
        "",
        "error: cannot resume run r1: step mint was calling echo.create-key when the run stopped, and rota \
         cannot read back whether the vendor applied it. Check the vendor (input: \
         {\"url\":\"http://127.0.0.1:9/keys\",\"id\":\"acct\",\"admin\":{\"$secret\":\"demo/admin@1\"}}), \
         then `rota runs abort r1` (which runs the playbook's compensation) and start a new run.\n",
    );
    let record = Test::new_in(&t)
        .args(&["runs", "show", "r1", "--output", "json"])
        .run();
    assert!(
        record.stdout.contains("\"status\": \"interrupted\""),
        "{}",
        record.stdout
    );
    let mut scanner = LeakScanner::new();
    scanner.add("admin", "echo-admin-secret-77c1");
    let mut hits = Vec::new();
    for (what, out) in [("crashed", &crashed), ("refused", &refused), ("record", &record)] {
        hits.extend(scanner.scan_bytes(&format!("{what} stdout"), out.stdout.as_bytes()));
        hits.extend(scanner.scan_bytes(&format!("{what} stderr"), out.stderr.as_bytes()));
    }
    hits.extend(scanner.scan_rota_state(&t.state_dir()).expect("scan state"));
    assert_no_leaks(&hits);
}

#[test]
fn plugins_inspect_shows_how_each_action_resumes() {
    let mut r = rig(ROTATION);
    let out = r.rota(&[], &["plugins", "inspect", "keys"]);
    assert_eq!(out.status, 0, "{}", out.stderr);
    for line in [
        "  create-key  [documented]\n",
        "    key id:   /id in the answer, stored with the captured secret\n    resume:   reconcile with find-key (snapshot before each call: key-ids)\n    revoke:   revoke-key (deletes what it creates, by key id)\n",
        "  set-credential  [documented]\n    Sets a consumer's credential (PUT: idempotent, safe to repeat)\n    resume:   repeat (an interrupted call is made again)\n    revoke:   none declared\n",
        "  revoke-key  [documented]\n    Revoke for create-key: deletes an orphan key by its ID (not-found if it is already gone)\n    resume:   refuse (declares no policy: an interrupted call stops the resume)\n",
    ] {
        assert!(out.stdout.contains(line), "no {line:?} in:\n{}", out.stdout);
    }
    let json = r.rota(&[], &["plugins", "inspect", "keys", "--output", "json"]);
    let v: serde_json::Value = serde_json::from_str(&json.stdout).expect("JSON");
    let action = |name: &str| {
        v["actions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|a| a["name"] == name)
            .cloned()
            .unwrap_or_default()
    };
    let create = action("create-key");
    assert_eq!(
        create["resume"],
        serde_json::json!({"kind": "reconcile", "snapshot": "key-ids", "reconcile": "find-key"})
    );
    assert_eq!(create["revoke"], "revoke-key");
    assert_eq!(create["key_id"], "/id");
    assert_eq!(
        action("delete-key")["resume"],
        serde_json::json!({"kind": "repeat"})
    );
    assert_eq!(
        action("key-ids")["resume"],
        serde_json::Value::Null,
        "read-only: nothing to resume"
    );
    r.scan();
}
