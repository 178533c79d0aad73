//! constellix: the Constellix API-key rollover (seed 003) end to end, the
//! real binary against the real simulators: the happy path with consumers
//! calling all along, the seed's rules (at most two keys, every view and
//! delete logged), retiring a key, plans, the inventory, and (in the
//! submodules) faults, crashes and the guided path.
//!
//! Design decision: every test reads the outcome from the simulators' admin
//! state (keys, audit log, what each integration holds and how its calls
//! went), never from rota's own report of what it did; and every test ends
//! with the leak scan over everything it ran, with every secret value it can
//! learn (the operator view's secret keys, and the new key's secret revealed
//! only after the scanned commands).

#[cfg(feature = "crash-points")]
mod crash;
mod faults;
mod guided;

use std::io::{Read, Write};
use std::net::TcpStream;

use rota_testkit::{LeakScanner, assert_no_leaks};
use serde_json::{Value, json};

use crate::sims::Sims;
use crate::test::{Output, Test, repo};

/// The committed playbook, run by path as an operator would.
pub(crate) fn playbook() -> String {
    repo()
        .join("playbooks/constellix-api-key-rollover.yaml")
        .to_string_lossy()
        .into_owned()
}

pub(crate) const BOB_SECRET: &str = "constellix/bob/secret-key";
pub(crate) const ALICE_SECRET: &str = "constellix/alice/secret-key";

/// A Constellix tenant played by standalone simulators: rota configured for
/// it (one target per plugin), bob's and alice's secret keys in the store.
pub(crate) struct Tenant {
    pub(crate) t: Test,
    pub(crate) sims: Sims,
    /// bob's live API key (1003) and alice's first (1001, the administrator).
    pub(crate) bob_api_key: String,
    pub(crate) alice_api_key: String,
    /// Every secret key the operator view shows, for the leak scan.
    secrets: Vec<(String, String)>,
}

fn text_at(v: &Value, pointer: &str) -> String {
    match v.pointer(pointer) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        other => panic!("no text at {pointer}: {other:?} in {v}"),
    }
}

impl Tenant {
    /// Simulators with `settings`; modeled actions enabled or not.
    pub(crate) fn start(settings: &str, modeled: bool) -> Self {
        let t = Test::new();
        let sims = Sims::start(&t, settings);
        let t = sims.configure(t, modeled);
        sims.put_operator_secret(&t, BOB_SECRET, "constellix", "/users/1/apiKeys/0/secretKey");
        sims.put_operator_secret(&t, ALICE_SECRET, "constellix", "/users/0/apiKeys/0/secretKey");
        let view = sims.operator("constellix");
        let mut secrets = Vec::new();
        for (u, user) in view["users"].as_array().into_iter().flatten().enumerate() {
            for (k, key) in user["apiKeys"].as_array().into_iter().flatten().enumerate() {
                secrets.push((
                    format!("operator view users/{u}/apiKeys/{k} secret key"),
                    text_at(key, "/secretKey"),
                ));
            }
        }
        let tenant = Self {
            bob_api_key: text_at(&view, "/users/1/apiKeys/0/apiKey"),
            alice_api_key: text_at(&view, "/users/0/apiKeys/0/apiKey"),
            t,
            sims,
            secrets,
        };
        assert_eq!(
            text_at(&view, "/users/1/apiKeys/0/id"),
            "1003",
            "fixture: bob's key"
        );
        tenant
    }

    /// bob's rollover inputs (with alice exporting the audit log), plus `extra` lines.
    pub(crate) fn bob_inputs(&self, extra: &str) -> String {
        format!(
            "user: bob\napi_key: {}\nadmin_api_key: {}\nadmin_secret_key: {ALICE_SECRET}\n{extra}",
            self.bob_api_key, self.alice_api_key
        )
    }

    /// `rota run` of the playbook with this inputs file's text and more args.
    pub(crate) fn run(&self, inputs: &str, args: &[&str]) -> Output {
        let t = Test::new_in(&self.t).file("inputs.yaml", inputs);
        let pb = playbook();
        let mut all = vec!["run", pb.as_str(), "--inputs", "inputs.yaml"];
        all.extend_from_slice(args);
        Test::new_in(&t).args(&all).run()
    }

    pub(crate) fn constellix(&self) -> Value {
        self.sims.state("constellix")
    }

    /// One integration's record in the consumer service.
    pub(crate) fn consumer(&self, id: &str) -> Value {
        self.sims.state("consumers")["consumers"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["id"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("no consumer {id}"))
    }

    /// A stored secret's value, read with `--reveal` (after the scanned commands).
    pub(crate) fn reveal(&self, name: &str, version: u32) -> String {
        let v = version.to_string();
        let out = Test::new_in(&self.t)
            .args(&["secrets", "get", name, "--version", &v, "--reveal"])
            .run();
        assert_eq!(out.status, 0, "reveal {name}@{version}: {}", out.stderr);
        out.stdout.trim().to_owned()
    }

    /// A stored secret's versions, oldest first: (version, stages).
    pub(crate) fn versions(&self, name: &str) -> Vec<(u32, Vec<String>)> {
        let out = Test::new_in(&self.t)
            .args(&["secrets", "versions", name, "--output", "json"])
            .run();
        assert_eq!(out.status, 0, "versions of {name}: {}", out.stderr);
        let v: Value = serde_json::from_str(&out.stdout).expect("versions JSON");
        v.as_array()
            .into_iter()
            .flatten()
            .map(|x| {
                let version = x["handle"]["$secret"]
                    .as_str()
                    .and_then(|h| h.rsplit_once('@'))
                    .and_then(|(_, n)| n.parse().ok())
                    .unwrap_or(0);
                let stages = x["stages"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect();
                (version, stages)
            })
            .collect()
    }

    /// The version of a stored secret that is current.
    pub(crate) fn current_version(&self, name: &str) -> u32 {
        self.versions(name)
            .into_iter()
            .find(|(_, stages)| stages.iter().any(|s| s == "current"))
            .map(|(v, _)| v)
            .unwrap_or_else(|| panic!("{name} has no current version"))
    }

    /// The leak scan over these outputs and the state dir, with every
    /// secret the operator view shows plus `more`.
    pub(crate) fn scan(&self, outputs: &[&Output], more: &[(&str, &str)]) {
        scan_all(&self.t, &self.secrets, outputs, more);
    }
}

pub(crate) fn scan_all(t: &Test, secrets: &[(String, String)], outputs: &[&Output], more: &[(&str, &str)]) {
    let mut scanner = LeakScanner::new();
    for (label, value) in secrets {
        scanner.add(label, value);
    }
    for (label, value) in more {
        scanner.add(label, value);
    }
    let mut hits = Vec::new();
    for (i, out) in outputs.iter().enumerate() {
        hits.extend(scanner.scan_bytes(&format!("command {i} stdout"), out.stdout.as_bytes()));
        hits.extend(scanner.scan_bytes(&format!("command {i} stderr"), out.stderr.as_bytes()));
    }
    hits.extend(
        scanner
            .scan_rota_state(&t.state_dir())
            .expect("scan the state dir"),
    );
    assert_no_leaks(&hits);
}

/// The leak scan of rehearsal runs sharing `t`: their outputs and the
/// rehearsal state, with versions 1 to n of each named secret, revealed now
/// (after the scanned commands).
pub(crate) fn scan_rehearsal(t: &Test, outputs: &[&Output], secrets: &[(&str, u32)]) {
    let mut scanner = LeakScanner::new();
    for (name, versions) in secrets {
        for v in 1..=*versions {
            let out = Test::new_in(t)
                .args(&[
                    "--rehearsal",
                    "secrets",
                    "get",
                    name,
                    "--version",
                    &v.to_string(),
                    "--reveal",
                ])
                .run();
            assert_eq!(out.status, 0, "reveal {name}@{v}: {}", out.stderr);
            let value = out.stdout.trim().to_owned();
            assert_eq!(value.len(), 36, "{name}@{v} is a Constellix secret key");
            scanner.add(&format!("{name}@{v}"), &value);
        }
    }
    let mut hits = Vec::new();
    for (i, o) in outputs.iter().enumerate() {
        hits.extend(scanner.scan_bytes(&format!("run {i} stdout"), o.stdout.as_bytes()));
        hits.extend(scanner.scan_bytes(&format!("run {i} stderr"), o.stderr.as_bytes()));
    }
    hits.extend(
        scanner
            .scan_rota_state(&t.state_dir().join("rehearsal"))
            .expect("scan the rehearsal state"),
    );
    assert_no_leaks(&hits);
}

/// Each step's status, as listed; a step that never started reads `not_run`.
#[track_caller]
pub(crate) fn assert_statuses(out: &Output, expected: &[(&str, &str)]) {
    let got: Vec<(&str, String)> = expected
        .iter()
        .map(|(step, _)| (*step, status_of(out, step)))
        .collect();
    let want: Vec<(&str, String)> = expected
        .iter()
        .map(|(step, s)| (*step, (*s).to_owned()))
        .collect();
    assert_eq!(got, want);
}

/// The keys of one user in a Constellix admin state.
pub(crate) fn keys_of(state: &Value, user: u64) -> Vec<Value> {
    state["apiKeys"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|k| k["userId"] == user)
        .cloned()
        .collect()
}

/// The audit actions logged for one key, in order.
pub(crate) fn audit_of(state: &Value, key_id: u64) -> Vec<String> {
    state["audit"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["apiKeyId"] == key_id)
        .filter_map(|e| e["action"].as_str().map(str::to_owned))
        .collect()
}

/// Every `view` in the whole audit log.
pub(crate) fn views(state: &Value) -> Vec<Value> {
    state["audit"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["action"] == "view")
        .cloned()
        .collect()
}

/// A signed v4 call straight at the Constellix simulator: proves a stored
/// secret key is the one Constellix holds for `api_key`.
pub(crate) fn signed_status(origin: &str, api_key: &str, secret_key: &str, path: &str) -> u16 {
    let ts = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0),
    )
    .unwrap_or(0);
    let token = rota_sims::constellix_token(api_key, secret_key, ts);
    let host = origin.strip_prefix("http://").expect("an http origin");
    let mut s = TcpStream::connect(host).expect("connect to the simulator");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nhost: {host}\r\nauthorization: Bearer {token}\r\nconnection: close\r\n\r\n"
    )
    .expect("send");
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("read");
    raw.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// The JSON events of a `--output json` run.
pub(crate) fn events(out: &Output) -> Vec<Value> {
    out.stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .collect()
}

/// Each step's status in a run's report (the `report` event).
pub(crate) fn statuses(out: &Output) -> Vec<(String, String)> {
    events(out)
        .iter()
        .find(|e| e["event"] == "report")
        .and_then(|r| r["report"]["steps"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .map(|s| (text_at(s, "/id"), text_at(s, "/status")))
        .collect()
}

/// A step's status in the report; a step that never started is not in it,
/// and reads as `not_run`.
pub(crate) fn status_of(out: &Output, step: &str) -> String {
    statuses(out)
        .into_iter()
        .find(|(id, _)| id == step)
        .map_or_else(|| "not_run".to_owned(), |(_, s)| s)
}

/// What an uninterrupted rollover leaves behind for bob: exactly one key,
/// the new one, expiring `months` after its creation, held by the
/// integration, whose calls never failed; the old key's log is its create
/// and one delete; no key was ever viewed; and the current stored secret is
/// the new key's own.
pub(crate) fn assert_rolled_over(tenant: &Tenant, months: u32) -> (String, String) {
    let state = tenant.constellix();
    let bob = keys_of(&state, 102);
    assert_eq!(bob.len(), 1, "bob holds exactly the new key: {bob:?}");
    let new = &bob[0];
    let new_id = new["id"].as_u64().expect("a numeric key id");
    assert_eq!(new_id, 1004, "the one key rota generated");
    let created = text_at(new, "/createdAt");
    let expires = text_at(new, "/expiresAt");
    assert_eq!(
        expires,
        add_months(&created, months),
        "the new key expires {months} months after it was created"
    );
    assert_eq!(keys_of(&state, 101).len(), 2, "alice's keys are untouched");
    assert_eq!(audit_of(&state, 1003), ["create", "delete"]);
    assert_eq!(audit_of(&state, new_id), ["create"]);
    assert_eq!(views(&state), Vec::<Value>::new(), "no key was ever viewed");
    let dns = tenant.consumer("constellix-dns-sync");
    let new_api_key = text_at(new, "/apiKey");
    assert_eq!(dns["credential"]["api_key"], new_api_key.as_str(), "{dns}");
    assert_eq!(
        dns["credential"]["secretFingerprint"], new["secretKeyFingerprint"],
        "the integration holds the new key's own secret"
    );
    assert_eq!(dns["failedCalls"], 0, "no downtime: {dns}");
    (new_id.to_string(), new_api_key)
}

/// `2026-01-31T10:00:00Z` + n months, day clamped, as Constellix counts.
pub(crate) fn add_months(iso: &str, months: u32) -> String {
    let (y, rest) = iso.split_at(4);
    let (m, rest) = rest[1..].split_at(2);
    let (d, time) = rest[1..].split_at(2);
    let (y, m, d): (i64, i64, u32) = (
        y.parse().expect("year"),
        m.parse().expect("month"),
        d.parse().expect("day"),
    );
    let total = y * 12 + (m - 1) + i64::from(months);
    let (ny, nm) = (total.div_euclid(12), total.rem_euclid(12) + 1);
    let leap = (ny % 4 == 0 && ny % 100 != 0) || ny % 400 == 0;
    let days = match nm {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    format!("{ny:04}-{nm:02}-{:02}{time}", d.min(days))
}

#[test]
fn rollover_generates_switches_verifies_then_deletes_the_old_key_with_no_downtime() {
    let tenant = Tenant::start(r#"{"seed": 3003, "background_interval_ms": 25}"#, true);
    let before = tenant.consumer("constellix-dns-sync");
    let out = tenant.run(&tenant.bob_inputs(""), &["--yes", "--run-id", "r1"]);
    assert_eq!(out.status, 0, "{}\n{}", out.stdout, out.stderr);
    for line in [
        "ok        keys",
        "ok        find_users",
        "switch: switch integration constellix-dns-sync from API key",
        "delete_old: delete the old API key 1003 of bob",
        "ok        audit_check",
        "run r1 succeeded",
    ] {
        assert!(out.stdout.contains(line), "missing {line:?} in\n{}", out.stdout);
    }
    let (new_id, new_api_key) = assert_rolled_over(&tenant, 12);
    // The integration kept calling Constellix through the whole rollover.
    let dns = tenant.consumer("constellix-dns-sync");
    let calls = dns["calls"].as_u64().unwrap_or(0) - before["calls"].as_u64().unwrap_or(0);
    assert!(
        calls >= 5,
        "the integration called Constellix during the run ({calls} calls)"
    );
    assert_eq!(dns["failedCalls"], 0, "zero failed calls: {dns}");

    // The store: the new key's secret is current, the old one previous.
    assert_eq!(
        tenant.versions(BOB_SECRET),
        [(1, vec!["previous".to_owned()]), (2, vec!["current".to_owned()])]
    );

    // The inventory: the new key with its expiry and its integration, the old one revoked.
    let inv = Test::new_in(&tenant.t)
        .args(&["inventory", "--output", "json"])
        .run();
    let inv: Value = serde_json::from_str(&inv.stdout).expect("inventory JSON");
    let row = |id: &str| {
        inv.as_array()
            .into_iter()
            .flatten()
            .find(|r| r["key_id"] == id)
            .cloned()
            .unwrap_or(Value::Null)
    };
    let new_key = keys_of(&tenant.constellix(), 102)[0].clone();
    assert_eq!(row(&new_id)["status"], "active");
    assert_eq!(row(&new_id)["expires"], new_key["expiresAt"]);
    assert_eq!(row(&new_id)["consumers"], json!(["constellix-dns-sync"]));
    assert_eq!(row(&new_id)["secret"], BOB_SECRET);
    assert_eq!(row("1003")["status"], "revoked");

    let origin = tenant.sims.api("constellix").to_owned();
    let new_secret = tenant.reveal(BOB_SECRET, 2);
    assert_eq!(
        signed_status(&origin, &new_api_key, &new_secret, "/v4/domains"),
        200,
        "the stored secret key is the new key's"
    );
    assert_eq!(
        signed_status(
            &origin,
            &tenant.bob_api_key,
            &tenant.reveal(BOB_SECRET, 1),
            "/v4/domains"
        ),
        401,
        "the old key is gone"
    );
    tenant.scan(&[&out], &[("bob's new secret key", &new_secret)]);
}

/// Guards the check above: an integration whose key is deleted before it is
/// switched does record downtime, so zero failed calls means something.
#[test]
fn deleting_the_old_key_before_switching_shows_up_as_downtime() {
    let tenant = Tenant::start(r#"{"seed": 3003}"#, true);
    tenant.sims.tick("consumers");
    assert_eq!(tenant.consumer("constellix-dns-sync")["failedCalls"], 0);
    let (status, _) = tenant
        .sims
        .admin("DELETE", "constellix", "/admin/ui/users/102/apikeys/1003", None);
    assert_eq!(status, 204);
    tenant.sims.tick("consumers");
    assert_eq!(tenant.consumer("constellix-dns-sync")["failedCalls"], 1);
}

#[test]
fn a_third_key_is_refused_before_anything_changes() {
    let tenant = Tenant::start(r#"{"seed": 3003}"#, true);
    let (before_c, before_k) = (tenant.constellix(), tenant.sims.state("consumers"));
    // alice holds two keys (1001, never expires; 1002, 10 months).
    let inputs = format!(
        "user: alice\napi_key: {}\nsecret_key: {ALICE_SECRET}\n",
        tenant.alice_api_key
    );
    let out = tenant.run(&inputs, &["--yes", "--run-id", "r1"]);
    assert_eq!(out.status, 1, "{}\n{}", out.stdout, out.stderr);
    let state = tenant.constellix();
    let k1002 = keys_of(&state, 101)
        .into_iter()
        .find(|k| k["id"] == 1002)
        .expect("key 1002");
    let expected = format!(
        "alice already holds two API keys: 1001 (expires never), the one this rollover replaces, and 1002 (created {}, expires {}). \
         A user may hold at most two, so nothing was changed: to delete 1002 first, run again with -i retire=1002 (no integration may use it)",
        text_at(&k1002, "/createdAt"),
        text_at(&k1002, "/expiresAt")
    );
    assert!(out.stdout.contains(&expected), "{}\n{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("FAILED    refuse_third"), "{}", out.stdout);
    assert!(!out.stdout.contains("ok        generate"), "{}", out.stdout);
    assert_eq!(state, before_c, "the vendor is unchanged");
    assert_eq!(
        tenant.sims.state("consumers"),
        before_k,
        "no integration was touched"
    );
    assert_eq!(
        tenant.versions(ALICE_SECRET),
        [(1, vec!["current".to_owned()])],
        "no secret was stored"
    );

    // The plugin's own answer to a third key is a typed conflict, not a retry.
    let direct = Test::new_in(&tenant.t)
        .file(
            "third.yaml",
            format!(
                "name: third\ndescription: d\ninputs:\n  key: {{type: secret, send_to: [constellix]}}\nsecrets:\n  s: {{name: \"third/secret\"}}\n\
                 steps:\n  - id: gen\n    uses: constellix.generate-key\n    with: {{account: alice, api_key: \"{}\", secret_key: \"{{{{inputs.key}}}}\", expiry: never}}\n    captures: {{secret: s}}\n    retry: {{attempts: 3, delay: 100ms}}\n",
                tenant.alice_api_key
            ),
        )
        .args(&["run", "third.yaml", "-i", &format!("key={ALICE_SECRET}"), "--output", "json"])
        .run();
    assert_eq!(direct.status, 1, "{}{}", direct.stdout, direct.stderr);
    assert!(
        direct
            .stdout
            .contains("a Constellix user may hold at most two API keys"),
        "{}",
        direct.stdout
    );
    assert!(
        !direct.stdout.contains("step_retrying"),
        "a conflict is not retried"
    );
    assert_eq!(tenant.constellix(), before_c, "still unchanged");
    tenant.scan(&[&out, &direct], &[]);
}

/// alice holds two keys; she names the unused one (1002) to retire: it is
/// deleted first, then 1001 rolls over as usual.
#[test]
fn with_two_keys_an_unused_key_named_to_retire_is_deleted_first() {
    let tenant = Tenant::start(r#"{"seed": 3003}"#, true);
    let inputs = format!(
        "user: alice\napi_key: {}\nsecret_key: {ALICE_SECRET}\nretire: \"1002\"\nexpiry: never\n",
        tenant.alice_api_key
    );
    let out = tenant.run(&inputs, &["--yes", "--run-id", "r1"]);
    assert_eq!(out.status, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("retire: delete unused API key 1002 of alice"),
        "{}",
        out.stdout
    );
    let state = tenant.constellix();
    let alice = keys_of(&state, 101);
    assert_eq!(alice.len(), 1, "{alice:?}");
    assert_eq!(alice[0]["id"], 1004);
    assert_eq!(alice[0]["expiresAt"], Value::Null, "never expires");
    assert_eq!(audit_of(&state, 1002), ["create", "delete"]);
    assert_eq!(audit_of(&state, 1001), ["create", "delete"]);
    let order: Vec<u64> = state["audit"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["action"] != "view" && e["userId"] == 101 && e["id"].as_u64() > Some(3))
        .filter_map(|e| e["apiKeyId"].as_u64())
        .collect();
    assert_eq!(
        order,
        [1002, 1004, 1001],
        "retire, generate, then the old key last"
    );
    assert_eq!(keys_of(&state, 102).len(), 1, "bob is untouched");
    let new_secret = tenant.reveal(ALICE_SECRET, 2);
    tenant.scan(&[&out], &[("alice's new secret key", &new_secret)]);
}

#[test]
fn a_key_to_retire_that_an_integration_uses_is_refused_before_anything_changes() {
    let tenant = Tenant::start(r#"{"seed": 3003}"#, true);
    let view = tenant.sims.operator("constellix");
    let (status, _) = tenant.sims.admin(
        "POST",
        "consumers",
        "/admin/consumers",
        Some(&json!({"id": "alice-cert-bot", "origin": tenant.sims.api("constellix"),
                     "credential": {"vendor": "constellix", "api_key": text_at(&view, "/users/0/apiKeys/1/apiKey"),
                                    "secret_key": text_at(&view, "/users/0/apiKeys/1/secretKey")}})),
    );
    assert_eq!(status, 201);
    let before = (tenant.constellix(), tenant.sims.state("consumers"));
    let inputs = format!(
        "user: alice\napi_key: {}\nsecret_key: {ALICE_SECRET}\nretire: \"1002\"\n",
        tenant.alice_api_key
    );
    let out = tenant.run(&inputs, &["--yes"]);
    assert_eq!(out.status, 1, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout
            .contains("FAILED    retire_unused: assertion failed: key 1002 (API key ")
            && out.stdout.contains(
                "is used by [\"alice-cert-bot\"]: deleting it would break them, so nothing was changed"
            ),
        "{}",
        out.stdout
    );
    assert_eq!((tenant.constellix(), tenant.sims.state("consumers")), before);

    // Naming the key being replaced, or a retire when there is one key, is refused too.
    let wrong = format!(
        "user: alice\napi_key: {}\nsecret_key: {ALICE_SECRET}\nretire: \"1001\"\n",
        tenant.alice_api_key
    );
    let out2 = tenant.run(&wrong, &["--yes"]);
    assert_eq!(out2.status, 1);
    assert!(
        out2.stdout.contains(
            "retire=1001 must name the key alice holds besides 1001, the one this rollover replaces (other key: 1002); nothing was changed"
        ),
        "{}",
        out2.stdout
    );
    let out3 = tenant.run(&tenant.bob_inputs("retire: \"1002\"\n"), &["--yes"]);
    assert_eq!(out3.status, 1);
    assert!(
        out3.stdout.contains("(other key: none); nothing was changed"),
        "{}",
        out3.stdout
    );
    assert_eq!((tenant.constellix(), tenant.sims.state("consumers")), before);
    tenant.scan(&[&out, &out2, &out3], &[]);
}

/// A plan runs only what writes nothing (listing keys writes no audit
/// entry) and names the fixtures' real IDs and dates; the vendors and the
/// store are exactly as before.
#[test]
fn a_plan_names_the_real_key_and_dates_and_changes_nothing() {
    let tenant = Tenant::start(r#"{"seed": 3003}"#, true);
    let all = |t: &Tenant| -> Vec<Value> { crate::sims::SYSTEMS.iter().map(|s| t.sims.state(s)).collect() };
    let before = all(&tenant);
    let t = Test::new_in(&tenant.t).file("inputs.yaml", tenant.bob_inputs(""));
    let out = Test::new_in(&t)
        .args(&["plan", &playbook(), "--inputs", "inputs.yaml"])
        .run();
    assert_eq!(out.status, 0, "{}\n{}", out.stdout, out.stderr);
    let bob = keys_of(&before[4], 102)[0].clone();
    let (created, expires) = (text_at(&bob, "/createdAt"), text_at(&bob, "/expiresAt"));
    for line in [
        format!(
            "  users_found: integrations using API key {} (key 1003), to switch to the new key: [\"constellix-dns-sync\"]",
            tenant.bob_api_key
        ),
        format!(
            "  generate: would ask: Generate a second API key for bob expiring in 12 months, switch every integration to it, and then delete API key 1003 (created {created}, expires {expires})?"
        ),
        format!(
            "  generate: would generate a second API key for bob expiring in 12 months, to replace API key 1003, which expires {expires}"
        ),
        format!(
            "  delete_old: would ask: Delete API key 1003 of bob (API key {}, created {created}, expires {expires}), now that every integration works with the new key?",
            tenant.bob_api_key
        ),
        "  record_old: would record key 1003 of bob as revoked".to_owned(),
        "nothing was changed".to_owned(),
    ] {
        assert!(out.stdout.contains(&line), "missing {line:?} in\n{}", out.stdout);
    }
    assert!(
        all(&tenant) == before,
        "the full admin state changed during the plan"
    );
    assert_eq!(
        tenant.versions(BOB_SECRET),
        [(1, vec!["current".to_owned()])],
        "nothing stored"
    );
    let inv = Test::new_in(&tenant.t)
        .args(&["inventory", "--output", "json"])
        .run();
    assert_eq!(inv.stdout.trim(), "[]", "a plan records nothing");
    tenant.scan(&[&out], &[]);
}

/// The rehearsal's inventory lists bob's key due in 20 days before the
/// rollover (a run that stopped at the first question), and afterwards the
/// new key with its expiry, the old one revoked and no longer due.
#[test]
fn rehearsal_inventory_lists_the_expiring_key_before_and_the_new_expiry_after() {
    let t = Test::new();
    let pb = playbook();
    let stopped = Test::new_in(&t).args(&["run", &pb, "--rehearse"]).run();
    assert_eq!(stopped.status, 1, "{}\n{}", stopped.stdout, stopped.stderr);
    assert!(
        stopped
            .stderr
            .contains("step generate needs a confirmation and no one can answer"),
        "{}",
        stopped.stderr
    );
    let due = |t: &Test, within: &str| -> Value {
        let out = Test::new_in(t)
            .args(&["--rehearsal", "inventory", "--due", within, "--output", "json"])
            .run();
        assert_eq!(out.status, 0, "{}", out.stderr);
        serde_json::from_str(&out.stdout).expect("inventory JSON")
    };
    let before = due(&t, "30d");
    let rows = before.as_array().cloned().unwrap_or_default();
    assert_eq!(rows.len(), 1, "{before}");
    assert_eq!(
        (
            rows[0]["vendor"].clone(),
            rows[0]["account"].clone(),
            rows[0]["key_id"].clone()
        ),
        (json!("constellix"), json!("bob"), json!("1003"))
    );
    assert_eq!(rows[0]["status"], "active");

    let out = Test::new_in(&t)
        .args(&["run", &pb, "--rehearse", "--yes", "--output", "json"])
        .run();
    assert_eq!(out.status, 0, "{}\n{}", out.stdout, out.stderr);
    let vendors = events(&out).last().cloned().unwrap_or_default();
    let new_key = keys_of(&vendors["vendors"]["constellix"]["state"], 102)[0].clone();
    assert_eq!(
        due(&t, "30d"),
        json!([]),
        "nothing is due: 1003 is revoked, 1004 has a year"
    );
    let year = due(&t, "400d");
    let rows = year.as_array().cloned().unwrap_or_default();
    assert_eq!(rows.len(), 1, "{year}");
    assert_eq!(rows[0]["key_id"], "1004");
    assert_eq!(rows[0]["expires"], new_key["expiresAt"]);
    assert_eq!(rows[0]["consumers"], json!(["constellix-dns-sync"]));
    let all = Test::new_in(&t)
        .args(&["--rehearsal", "inventory", "--output", "json"])
        .run();
    let all: Value = serde_json::from_str(&all.stdout).expect("JSON");
    let old = all
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| r["key_id"] == "1003")
        .cloned()
        .unwrap_or_default();
    assert_eq!(old["status"], "revoked");
    scan_rehearsal(&t, &[&stopped, &out], &[(BOB_SECRET, 2), (ALICE_SECRET, 1)]);
}
