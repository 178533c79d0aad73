//! plex-api-key-reset end to end: the real binary with the bundled plex and
//! demandcaster plugins against the simulators (standalone `rota sims
//! serve`, so they outlive a crashed `rota`), or in process with
//! `--rehearse`. Every test ends with the leak scan over everything it ran.
//!
//! Design decision: one judge for every test, [`Rig::outcome`]: the
//! simulators' own admin state and rota's store reduced to what the
//! procedure promises (which of the fixture's secrets are left at Plex,
//! whether the one new secret there is the one rota's store and DemandCaster
//! hold, whether DemandCaster's last test passed, that nothing else moved),
//! compared with a literal expectation.

#[cfg(feature = "crash-points")]
mod crash;
mod faults;
mod guided;
mod rehearsal;

use std::path::Path;
use std::sync::Arc;

use rota_testkit::{LeakScanner, assert_no_leaks, fingerprint};
use serde_json::{Value, json};

use crate::sims::Sims;
use crate::test::{Output, Test, repo};

pub(crate) const PLAYBOOK: &str = "plex-api-key-reset";
/// Where the run keeps the new client secret.
pub(crate) const SECRET: &str = "plex/123456/demandcaster/client-secret";
const PORTAL_KEY: &str = "ops/plex/portal-key";
const DC_PASSWORD: &str = "ops/demandcaster/planner";
pub(crate) const INPUTS: [&str; 10] = [
    "-i",
    "customer=123456",
    "-i",
    "portal_key=ops/plex/portal-key",
    "-i",
    "dc_username=planner@acme.example",
    "-i",
    "dc_password=ops/demandcaster/planner",
    "-i",
    "business_node=1042",
];

/// The JSON events of a `--output json` run, one per line.
pub(crate) fn events(out: &Output) -> Vec<Value> {
    out.stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The final status of each step, in the order they finished.
pub(crate) fn finished(out: &Output) -> Vec<(String, String)> {
    events(out)
        .iter()
        .filter(|e| e["event"] == "step_finished")
        .map(|e| {
            (
                e["id"].as_str().unwrap_or_default().to_owned(),
                e["status"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

fn playbooks() -> String {
    repo().join("playbooks").display().to_string()
}

/// The fixture as the run found it: the ids and fingerprints of the
/// DemandCaster client application's two secrets, and everything the
/// procedure must leave alone.
#[derive(Clone, Debug)]
pub(crate) struct Fixture {
    pub client_id: String,
    pub expired: (String, String),
    pub old: (String, String),
    pub valid_until: String,
    pub untouched: Value,
}

impl Fixture {
    fn read(plex: &Value, dc: &Value) -> Self {
        let app = demandcaster_app(plex);
        let secrets = app["secrets"].as_array().cloned().unwrap_or_default();
        assert_eq!(secrets.len(), 2, "fixture: two secrets: {app}");
        let pair = |s: &Value| {
            (
                s["id"].as_str().unwrap_or_default().to_owned(),
                s["fingerprint"].as_str().unwrap_or_default().to_owned(),
            )
        };
        let (expired, old) = match (secrets[0]["expired"].as_bool(), secrets[1]["expired"].as_bool()) {
            (Some(true), Some(false)) => (pair(&secrets[0]), pair(&secrets[1])),
            _ => panic!("fixture: the first secret expired, the second is valid: {app}"),
        };
        assert_eq!(
            connection(dc, 1)["clientSecretFingerprint"],
            old.1,
            "fixture: DemandCaster holds the valid secret"
        );
        Self {
            client_id: app["clientId"].as_str().unwrap_or_default().to_owned(),
            expired,
            old,
            valid_until: secrets[1]["validUntil"].as_str().unwrap_or_default().to_owned(),
            untouched: untouched(plex, dc),
        }
    }
}

pub(crate) fn demandcaster_app(plex: &Value) -> Value {
    plex["clientApplications"]
        .as_array()
        .and_then(|a| {
            a.iter()
                .find(|a| a["name"] == "DemandCaster" && a["customerId"] == "123456")
        })
        .cloned()
        .unwrap_or_else(|| panic!("no DemandCaster app for PCN 123456 in {plex}"))
}

pub(crate) fn connection(dc: &Value, id: u64) -> Value {
    dc["pcns"]
        .as_array()
        .and_then(|a| a.iter().find(|p| p["id"] == id))
        .cloned()
        .unwrap_or_else(|| panic!("no PCN connection {id} in {dc}"))
}

/// What the procedure must not touch: the other client applications and
/// DemandCaster's other connection.
fn untouched(plex: &Value, dc: &Value) -> Value {
    let others: Vec<Value> = plex["clientApplications"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["name"] != "DemandCaster")
        .cloned()
        .collect();
    // Fixture dates are relative to the simulator's clock at start or reset,
    // so only ids, names and fingerprints are compared.
    let others: Vec<Value> = others
        .iter()
        .map(|a| {
            let secrets: Vec<Value> = a["secrets"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|s| json!([s["id"], s["fingerprint"]]))
                .collect();
            json!({"clientId": a["clientId"], "name": a["name"], "customerId": a["customerId"], "secrets": secrets})
        })
        .collect();
    let pcn2 = connection(dc, 2);
    let pcn2 = json!([pcn2["pcn"], pcn2["clientId"], pcn2["clientSecretFingerprint"]]);
    json!({"apps": others, "pcn2": pcn2})
}

/// The outcome of a completed reset.
pub(crate) fn reset_done() -> Value {
    json!({
        "plex": ["new (current)"],
        "demandcaster": {"client_id": "unchanged", "secret": "new (current)", "last_test_ok": true},
        "store": ["current"],
        "untouched": true,
    })
}

/// Standalone simulators, a user config granting each plugin its
/// simulator, the operator's credentials in the store, and every output kept
/// for the leak scan.
pub(crate) struct Rig {
    pub sims: Arc<Sims>,
    pub t: Test,
    pub fixture: Fixture,
    outputs: Vec<(String, Output)>,
    values: Vec<(String, String)>,
}

impl Rig {
    pub fn start(settings: &str, modeled: bool) -> Self {
        let t = Test::new();
        let sims = Arc::new(Sims::start(&t, settings));
        let t = sims.configure(t, modeled);
        let fixture = Fixture::read(&sims.state("plex"), &sims.state("demandcaster"));
        let mut values = Vec::new();
        values.push((
            "portal consumer key".to_owned(),
            sims.put_operator_secret(&t, PORTAL_KEY, "plex", "/portalKeys/0/consumerKey"),
        ));
        values.push((
            "DemandCaster password".to_owned(),
            sims.put_operator_secret(&t, DC_PASSWORD, "demandcaster", "/users/0/password"),
        ));
        if let Some(s) = sims
            .operator("plex")
            .pointer("/portalKeys/0/consumerSecret")
            .and_then(Value::as_str)
        {
            values.push(("portal consumer secret".to_owned(), s.to_owned()));
        }
        Self {
            sims,
            t,
            fixture,
            outputs: Vec::new(),
            values,
        }
    }

    /// A fresh directory with this rig's config and state (the operator's
    /// secrets, the compiled plugins) copied, on the same simulators, which
    /// are reset to their fixtures: no rebuild, no new simulator process.
    pub fn fork(&self) -> Rig {
        self.reset_sims();
        let t = Test::new();
        for dir in [".config", ".rota-state"] {
            copy_dir(&self.t.path().join(dir), &t.path().join(dir));
        }
        Rig {
            sims: self.sims.clone(),
            t,
            fixture: self.fixture.clone(),
            outputs: Vec::new(),
            values: self.values.clone(),
        }
    }

    /// Runs `rota` in the rig's directory, keeping the output for the scan.
    pub fn rota(&mut self, label: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = Test::new_in(&self.t)
            .env("ROTA_PLAYBOOK_PATH", &playbooks())
            .args(args);
        for (k, v) in env {
            cmd = cmd.env(k, v);
        }
        let out = cmd.run();
        self.outputs.push((
            label.to_owned(),
            Output {
                status: out.status,
                stdout: out.stdout.clone(),
                stderr: out.stderr.clone(),
            },
        ));
        out
    }

    /// `rota run plex-api-key-reset` with the fixture's inputs, `--yes`,
    /// JSON events, and `extra` arguments.
    pub fn run(&mut self, run_id: &str, extra: &[&str], env: &[(&str, &str)]) -> Output {
        let mut args = vec!["run", PLAYBOOK];
        args.extend(INPUTS);
        args.extend(["--yes", "--output", "json", "--run-id", run_id]);
        args.extend(extra);
        self.rota(&format!("run {run_id}"), &args, env)
    }

    /// Keeps text the test saw elsewhere (a terminal), for the scan.
    pub fn keep(&mut self, label: &str, text: &str) {
        self.outputs.push((
            label.to_owned(),
            Output {
                status: 0,
                stdout: text.to_owned(),
                stderr: String::new(),
            },
        ));
    }

    /// Remembers a value the test learned, for the scan.
    pub fn learned(&mut self, label: &str, value: &str) {
        self.values.push((label.to_owned(), value.to_owned()));
    }

    /// The store's versions of the new secret: (version, stages, fingerprint).
    /// Values are revealed here, after the commands being judged, and only
    /// their fingerprints are kept (the values go to the scan list).
    pub fn store(&mut self) -> Vec<(u64, Vec<String>, String)> {
        let out = Test::new_in(&self.t)
            .args(&["secrets", "versions", SECRET, "--output", "json"])
            .run();
        if out.status != 0 {
            assert!(
                out.stderr.contains("no secret") || out.stderr.contains("not found"),
                "secrets versions: {}",
                out.stderr
            );
            return Vec::new();
        }
        let listed: Value = serde_json::from_str(&out.stdout).unwrap_or(Value::Null);
        let mut versions = Vec::new();
        for v in listed.as_array().into_iter().flatten() {
            let handle = v["handle"]["$secret"].as_str().unwrap_or_default();
            let version: u64 = handle
                .rsplit_once('@')
                .and_then(|(_, n)| n.parse().ok())
                .unwrap_or_else(|| panic!("bad handle {handle}"));
            let stages: Vec<String> = v["stages"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect();
            let n = version.to_string();
            let reveal = Test::new_in(&self.t)
                .args(&["secrets", "get", SECRET, "--version", &n, "--reveal"])
                .run();
            assert_eq!(reveal.status, 0, "{}", reveal.stderr);
            let value = reveal.stdout.trim_end_matches('\n').to_owned();
            self.learned(&format!("{SECRET}@{version}"), &value);
            versions.push((version, stages, fingerprint(&value)));
        }
        versions
    }

    /// The procedure's outcome, judged by the simulators and the store (see
    /// the module doc); compare with [`reset_done`] or a literal.
    pub fn outcome(&mut self) -> Value {
        let store = self.store();
        let plex = self.sims.state("plex");
        let dc = self.sims.state("demandcaster");
        let f = self.fixture.clone();
        let name = |id: &str, fp: &str| -> String {
            if id == f.expired.0 {
                return "expired".to_owned();
            }
            if id == f.old.0 {
                return "old".to_owned();
            }
            match store.iter().find(|(_, _, s)| s == fp) {
                Some((_, stages, _)) => format!("new ({})", stages.join(", ")),
                None => format!("unknown {id}"),
            }
        };
        let app = demandcaster_app(&plex);
        let at_plex: Vec<(String, String, String)> = app["secrets"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| {
                let (id, fp) = (
                    s["id"].as_str().unwrap_or_default(),
                    s["fingerprint"].as_str().unwrap_or_default(),
                );
                (id.to_owned(), fp.to_owned(), name(id, fp))
            })
            .collect();
        let pcn = connection(&dc, 1);
        let held = pcn["clientSecretFingerprint"].as_str().unwrap_or_default();
        let dc_secret = if held == f.old.1 {
            "old".to_owned()
        } else if held == f.expired.1 {
            "expired".to_owned()
        } else {
            match store.iter().find(|(_, _, s)| s == held) {
                Some((_, stages, _)) => format!("new ({})", stages.join(", ")),
                None => "a secret rota does not hold".to_owned(),
            }
        };
        let dc_secret = if at_plex.iter().any(|(_, fp, _)| fp == held) {
            dc_secret
        } else {
            format!("{dc_secret}, DELETED at Plex")
        };
        json!({
            "plex": at_plex.iter().map(|(_, _, n)| n.clone()).collect::<Vec<_>>(),
            "demandcaster": {
                "client_id": if pcn["clientId"] == f.client_id.as_str() { "unchanged".to_owned() } else { format!("changed to {}", pcn["clientId"]) },
                "secret": dc_secret,
                "last_test_ok": pcn["lastTest"]["ok"],
            },
            "store": store.iter().map(|(_, s, _)| s.join(", ")).collect::<Vec<_>>(),
            "untouched": untouched(&plex, &dc) == f.untouched,
        })
    }

    /// Zero hits of every value the test learned in every output and in the
    /// state directory.
    pub fn scan(&mut self) {
        // The new secret's values, revealed after everything judged ran.
        self.store();
        let mut scanner = LeakScanner::new();
        for (label, value) in &self.values {
            scanner.add(label, value);
        }
        let mut hits = Vec::new();
        for (label, out) in &self.outputs {
            hits.extend(scanner.scan_bytes(&format!("{label} stdout"), out.stdout.as_bytes()));
            hits.extend(scanner.scan_bytes(&format!("{label} stderr"), out.stderr.as_bytes()));
        }
        hits.extend(
            scanner
                .scan_rota_state(&self.t.state_dir())
                .expect("scan the state dir"),
        );
        assert_no_leaks(&hits);
    }

    /// The DemandCaster app's secrets at Plex, `(id, validUntil)`.
    pub fn plex_secrets(&self) -> Vec<(String, String)> {
        demandcaster_app(&self.sims.state("plex"))["secrets"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| {
                (
                    s["id"].as_str().unwrap_or_default().to_owned(),
                    s["validUntil"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    }

    /// Back to the fixtures (the simulators keep running).
    pub fn reset_sims(&self) {
        for system in ["plex", "demandcaster"] {
            let (status, v) = self.sims.admin("POST", system, "/admin/reset", None);
            assert_eq!(status, 200, "reset {system}: {v}");
        }
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create dir");
    let mode = std::fs::metadata(from).expect("stat dir").permissions();
    std::fs::set_permissions(to, mode).expect("keep the dir's mode");
    for entry in std::fs::read_dir(from).expect("read dir").flatten() {
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        if src.is_dir() {
            copy_dir(&src, &dst);
        } else {
            std::fs::copy(&src, &dst).expect("copy file");
        }
    }
}

#[test]
fn happy_path_leaves_one_new_secret_that_demandcaster_holds_and_tested() {
    let mut rig = Rig::start("{}", true);
    let out = rig.run("r1", &[], &[]);
    assert_eq!(out.status, 0, "{}\n{}", out.stdout, out.stderr);
    let steps: Vec<String> = finished(&out)
        .into_iter()
        .map(|(id, status)| format!("{id} {status}"))
        .collect();
    assert_eq!(
        steps,
        [
            "find_client_app succeeded",
            "read_secrets succeeded",
            "delete_expired_secret succeeded",
            "add_new_secret succeeded",
            "check_new_secret succeeded",
            "find_business_node succeeded",
            "enter_business_node succeeded",
            "open_pcn_connection succeeded",
            "update_pcn_connection succeeded",
            "test_connection succeeded",
            "promote_new_secret succeeded",
            "record_new_secret succeeded",
            "delete_old_secret succeeded",
        ]
    );
    assert_eq!(rig.outcome(), reset_done());

    // The new secret: valid 365 days from now, its ID recorded everywhere.
    let secrets = rig.plex_secrets();
    assert_eq!(secrets.len(), 1);
    let (new_id, valid_until) = secrets[0].clone();
    assert!(!valid_until.is_empty());
    let report = events(&out)
        .into_iter()
        .find(|e| e["event"] == "report")
        .unwrap_or_default();
    let step = |id: &str| {
        report["report"]["steps"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["id"] == id))
            .cloned()
            .unwrap_or(Value::Null)
    };
    assert_eq!(step("add_new_secret")["outputs"]["secret_id"], new_id.as_str());
    assert_eq!(
        step("add_new_secret")["outputs"]["secret"],
        json!({"$secret": format!("{SECRET}@1")})
    );
    assert_eq!(
        step("delete_expired_secret")["outputs"]["secret_id"],
        rig.fixture.expired.0.as_str()
    );
    assert_eq!(
        step("delete_old_secret")["outputs"]["secret_id"],
        rig.fixture.old.0.as_str()
    );
    assert_eq!(
        step("update_pcn_connection")["outputs"]["client_id_changed"],
        false,
        "the client id stays: only the secret changes"
    );
    let dc = rig.sims.state("demandcaster");
    assert_eq!(connection(&dc, 1)["lastTest"]["plexStatus"], 200);
    // DemandCaster signed in (one session for the run) and entered the node.
    let sessions = dc["sessions"].as_array().cloned().unwrap_or_default();
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    assert_eq!(sessions[0]["enteredBusinessNode"], 1042);

    // The inventory: the two fixture secrets deleted, the new one active.
    let inv = rig.rota("inventory", &["inventory", "--output", "json"], &[]);
    let inv: Value = serde_json::from_str(&inv.stdout).expect("inventory JSON");
    let entry = |id: &str| {
        inv.as_array()
            .and_then(|a| a.iter().find(|c| c["key_id"] == id))
            .cloned()
            .unwrap_or_else(|| panic!("{id} not in the inventory: {inv}"))
    };
    for id in [&rig.fixture.expired.0, &rig.fixture.old.0] {
        let e = entry(id);
        assert_eq!(e["status"], "revoked", "{e}");
        assert_eq!(e["account"], "123456/DemandCaster");
        assert_eq!(e["consumers"], json!(["demandcaster"]));
    }
    let e = entry(&new_id);
    assert_eq!(e["status"], "active", "{e}");
    assert_eq!(e["consumers"], json!(["demandcaster"]));
    assert_eq!(e["secret"], SECRET);
    assert_eq!(
        e["expires"].as_str().map(|s| &s[..19]),
        Some(&valid_until[..19]),
        "the inventory expiry is Plex's valid-until"
    );
    rig.scan();
}

/// Seed rule: the deletion in the seed is of EXPIRED secrets only; the old
/// secret is deleted last (by its recorded ID) and only because it expires
/// soon; a valid secret that lasts longer is left alone.
#[test]
fn only_the_expired_and_the_expiring_old_secret_go_and_a_long_lived_one_stays() {
    let mut rig = Rig::start("{}", true);
    let client = rig.fixture.client_id.clone();
    let (status, extra) = rig.sims.admin(
        "POST",
        "plex",
        &format!("/admin/ui/client-applications/{client}/secrets"),
        Some(&json!({"validDays": 200})),
    );
    assert_eq!(status, 201, "{extra}");
    let extra_id = extra["id"].as_str().unwrap_or_default().to_owned();
    rig.learned(
        "the long-lived secret",
        extra["secret"].as_str().unwrap_or_default(),
    );
    let out = rig.run("r1", &[], &[]);
    assert_eq!(out.status, 0, "{}\n{}", out.stdout, out.stderr);
    let left: Vec<String> = rig.plex_secrets().into_iter().map(|(id, _)| id).collect();
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(left.contains(&extra_id), "the long-lived secret stays: {left:?}");
    assert!(!left.contains(&rig.fixture.expired.0) && !left.contains(&rig.fixture.old.0));
    rig.scan();
}

/// Seed rule: with a still-valid old secret that is not due (no window),
/// the old secret is kept, and the inventory says it is due within 30 days.
#[test]
fn a_valid_old_secret_outside_the_window_is_kept_and_shows_as_due() {
    let mut rig = Rig::start("{}", true);
    let out = rig.run("r1", &["-i", "retire_within_days=0"], &[]);
    assert_eq!(out.status, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(
        finished(&out).contains(&("delete_old_secret".to_owned(), "skipped".to_owned())),
        "{:?}",
        finished(&out)
    );
    assert_eq!(
        rig.outcome(),
        json!({
            "plex": ["old", "new (current)"],
            "demandcaster": {"client_id": "unchanged", "secret": "new (current)", "last_test_ok": true},
            "store": ["current"],
            "untouched": true,
        })
    );
    let due = rig.rota("due", &["inventory", "--due", "30d", "--output", "json"], &[]);
    let due: Value = serde_json::from_str(&due.stdout).expect("JSON");
    let ids: Vec<&str> = due
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["key_id"].as_str())
        .collect();
    assert_eq!(ids, vec![rig.fixture.old.0.as_str()], "{due}");
    rig.scan();
}

/// Seed rule: the plugin deletes only what it can identify by ID, and an
/// "expired only" delete refuses a secret that is still valid.
#[test]
fn delete_refuses_an_unknown_id_and_a_valid_secret_meant_as_expired() {
    const PROBE: &str = r#"name: delete-probe
description: Deletes one Plex secret by ID.
inputs:
  portal_key: {type: secret, send_to: [plex]}
  client_id: {type: string}
  secret_id: {type: string}
  only_if_expired: {type: boolean}
steps:
  - id: delete
    uses: plex.delete-secret
    with:
      portal_key: "{{inputs.portal_key}}"
      client_id: "{{inputs.client_id}}"
      secret_id: "{{inputs.secret_id}}"
      only_if_expired: "{{inputs.only_if_expired}}"
"#;
    let mut rig = Rig::start("{}", true);
    rig.t = Test::new_in(&rig.t).file("probe.yaml", PROBE);
    let client = format!("client_id={}", rig.fixture.client_id);
    let (old, valid_until) = (rig.fixture.old.0.clone(), rig.fixture.valid_until.clone());
    let mut probe = |label: &str, secret_id: &str, only_if_expired: bool| {
        let id = format!("secret_id={secret_id}");
        let expired = format!("only_if_expired={only_if_expired}");
        let args = [
            "run",
            "probe.yaml",
            "-i",
            "portal_key=ops/plex/portal-key",
            "-i",
            &client,
            "-i",
            &id,
            "-i",
            &expired,
        ];
        rig.rota(label, &args, &[])
    };
    let unknown = probe("unknown id", "00000000-0000-4000-8000-000000000000", false);
    let valid = probe("valid as expired", &old, true);
    let not_an_id = probe("not an id", "../secrets", false);
    let client_id = rig.fixture.client_id.clone();
    assert_eq!(unknown.status, 1, "{}", unknown.stdout);
    assert!(
        unknown.stdout.contains(&format!(
            "client {client_id} has no secret 00000000-0000-4000-8000-000000000000"
        )) && unknown.stdout.contains("nothing was deleted"),
        "{}",
        unknown.stdout
    );
    assert_eq!(valid.status, 1, "{}", valid.stdout);
    assert!(
        valid.stdout.contains(&format!(
            "secret {old} of client {client_id} is valid until {valid_until}: it was to be deleted as expired, so nothing was deleted"
        )),
        "{}",
        valid.stdout
    );
    assert_eq!(not_an_id.status, 1, "{}", not_an_id.stdout);
    assert_eq!(rig.plex_secrets().len(), 2, "nothing was deleted");
    rig.scan();
}

/// Seed rule: after the update, the connection is verified against Plex
/// before the old secret goes. When DemandCaster's test cannot pass, the
/// run fails and both secrets stay: DemandCaster never points at a deleted
/// secret, and the new one stays in the store for the operator.
#[test]
fn a_failing_connection_test_keeps_the_old_secret() {
    let settings = r#"{"faults": {"demandcaster": [
        {"method": "POST", "path": "/api/datahub/plex/pcns/{id}/test", "rate": 1.0, "kind": "status", "status": 403}
    ]}}"#;
    let mut rig = Rig::start(settings, true);
    let out = rig.run("r1", &[], &[]);
    assert_eq!(out.status, 1, "{}\n{}", out.stdout, out.stderr);
    let steps = finished(&out);
    for (id, status) in [
        ("update_pcn_connection", "succeeded"),
        ("test_connection", "failed"),
        ("keep_both_secrets", "succeeded"),
        ("delete_unused_secret", "skipped"),
    ] {
        assert!(
            steps.contains(&(id.to_owned(), status.to_owned())),
            "{id} {status}: {steps:?}"
        );
    }
    assert!(
        !steps.iter().any(|(id, _)| id == "delete_old_secret"),
        "{steps:?}"
    );
    assert_eq!(
        rig.outcome(),
        json!({
            "plex": ["old", "new (pending)"],
            "demandcaster": {"client_id": "unchanged", "secret": "new (pending)", "last_test_ok": null},
            "store": ["pending"],
            "untouched": true,
        })
    );
    assert!(out.stdout.contains("rota kept it"), "{}", out.stdout);
    rig.scan();
}
