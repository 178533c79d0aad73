//! soar-regenerate-api-key (seed 002) through the real binary against the
//! SOAR simulator: the rehearsal, the happy path with App Host logins in the
//! background, the seed's rules, faults, crash and resume, the guided path
//! and the plan. Every test scans what it produced for every secret it can
//! learn.
//!
//! Design decision: the simulator is the judge. Each test asserts the
//! vendor's own state (the account's secret fingerprint against each app's
//! App Secret, Locked, failed logins, every App Host login recorded) and
//! proves the stored secret by signing in with it, never by trusting what
//! rota reports.

#[cfg(feature = "crash-points")]
mod crash;
mod faults;
mod guided;
mod rules;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};

use base64::Engine;
use rota_testkit::{LeakScanner, assert_no_leaks};
use serde_json::{Value, json};

use crate::sims::Sims;
use crate::test::{Output, Test, repo};

pub const PLAYBOOK: &str = "soar-regenerate-api-key";
/// Where the run stores the account's new secret (account fn_soar_utils).
pub const NEW_SECRET: &str = "soar/fn_soar_utils/api-key-secret";
const OPERATOR_SECRET: &str = "ops/soar/rota-automation";
/// The seed the rehearsal profile uses: its fixtures are the tests' too.
pub const SEED: u64 = 24301;

pub fn playbook_path() -> String {
    repo()
        .join(format!("playbooks/{PLAYBOOK}.yaml"))
        .to_string_lossy()
        .into_owned()
}

/// Compiled plugins shared by this module's tests: every test has a fresh
/// state directory, and compiling the component in a debug build takes
/// seconds. Entries are checked by the host on load, so a copy is safe.
fn shared_cache() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("soar-plugin-cache")
}

fn copy_entries(from: &Path, to: &Path) {
    let Ok(entries) = std::fs::read_dir(from) else {
        return;
    };
    if std::fs::create_dir_all(to).is_err() {
        return;
    }
    for e in entries.flatten() {
        let dest = to.join(e.file_name());
        if dest.exists() {
            continue;
        }
        // Write beside, then rename: tests running at once never see half a file.
        let part = to.join(format!(
            ".{}.{}",
            e.file_name().to_string_lossy(),
            std::process::id()
        ));
        if std::fs::copy(e.path(), &part).is_ok() {
            let _ = std::fs::rename(&part, &dest);
        }
    }
}

/// Before a test's first rota run: the compiled plugins so far.
pub fn seed_plugin_cache(t: &Test) {
    for state in [t.state_dir(), t.state_dir().join("rehearsal")] {
        copy_entries(&shared_cache(), &state.join("plugin-cache"));
    }
}

/// After a rota run: keep what it compiled for the next tests.
pub fn keep_plugin_cache(t: &Test) {
    for state in [t.state_dir(), t.state_dir().join("rehearsal")] {
        copy_entries(&state.join("plugin-cache"), &shared_cache());
    }
}

/// Standalone simulators granted to rota as a tenant would be, with the
/// operator's API key secret in the store.
pub struct Rig {
    pub sims: Sims,
    pub t: Test,
    pub login_id: String,
    operator_secret: String,
    /// Every rota invocation so far, for the leak scan.
    pub outputs: Vec<Output>,
    /// The simulator's state before anything ran.
    pub before: Value,
}

impl Rig {
    pub fn new(settings: &Value, modeled: bool) -> Rig {
        let t = Test::new();
        let sims = Sims::start(&t, &settings.to_string());
        let t = sims.configure(t, modeled);
        seed_plugin_cache(&t);
        let operator_secret = sims.put_operator_secret(&t, OPERATOR_SECRET, "soar", "/apiKey/api_key_secret");
        let login_id = sims.operator("soar")["apiKey"]["api_key_id"]
            .as_str()
            .expect("the operator's API key ID")
            .to_owned();
        let before = sims.state("soar");
        Rig {
            sims,
            t,
            login_id,
            operator_secret,
            outputs: Vec::new(),
            before,
        }
    }

    /// App Host logins every 20 ms, the fixtures of the rehearsal.
    pub fn with_app_host() -> Rig {
        Rig::new(&json!({"seed": SEED, "background_interval_ms": 20}), true)
    }

    pub fn rota(&mut self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = Test::new_in(&self.t).args(args).args(&["-vvv"]);
        for (k, v) in env {
            cmd = cmd.env(k, v);
        }
        let out = cmd.run();
        keep_plugin_cache(&self.t);
        self.outputs.push(Output {
            status: out.status,
            stdout: out.stdout.clone(),
            stderr: out.stderr.clone(),
        });
        out
    }

    /// The playbook's inputs for `account`, as `-i` arguments.
    pub fn inputs(&self, account: &str) -> Vec<String> {
        [
            format!("account={account}"),
            format!("login_id={}", self.login_id),
            format!("login_secret={OPERATOR_SECRET}"),
        ]
        .into_iter()
        .flat_map(|i| ["-i".to_owned(), i])
        .collect()
    }

    /// `rota run <playbook path> <inputs for account> <extra>`.
    pub fn run(&mut self, playbook: &str, account: &str, extra: &[&str], env: &[(&str, &str)]) -> Output {
        let inputs = self.inputs(account);
        let mut args = vec!["run", playbook];
        args.extend(inputs.iter().map(String::as_str));
        args.extend(extra);
        self.rota(&args, env)
    }

    /// The real playbook for `account`, confirmed with `--yes`.
    pub fn regenerate(&mut self, account: &str, extra: &[&str]) -> Output {
        let mut args = vec!["--yes"];
        args.extend(extra);
        self.run(&playbook_path(), account, &args, &[])
    }

    /// No more faults, so later checks see the vendor rather than a fault.
    pub fn stop_faults(&self) {
        let (code, v) = self.sims.admin(
            "PUT",
            "soar",
            "/admin/faults",
            Some(&json!({"seed": 1, "rules": []})),
        );
        assert_eq!(code, 200, "{v}");
    }

    pub fn state(&self) -> Value {
        self.sims.state("soar")
    }

    /// A stored value (the one place it may appear, kept out of the scan):
    /// the current version, or `--version N` in `extra`.
    pub fn reveal(&self, name: &str, extra: &[&str]) -> String {
        let out = Test::new_in(&self.t)
            .args(&["secrets", "get", name, "--reveal"])
            .args(extra)
            .run();
        assert_eq!(out.status, 0, "secrets get {name}: {}", out.stderr);
        out.stdout.trim_end_matches('\n').to_owned()
    }

    /// `GET /rest/session` with Basic `id:secret` at the SOAR API: its status.
    pub fn signs_in(&self, api_key_id: &str, secret: &str) -> u16 {
        session_status(self.sims.api("soar"), api_key_id, secret)
    }

    /// No operator secret, and none of `extra`, in anything rota printed or
    /// stored (trace logs included).
    pub fn scan(&self, extra: &[(&str, &str)]) {
        let mut scanner = LeakScanner::new();
        scanner.add("operator API key secret", &self.operator_secret);
        for (label, value) in extra {
            scanner.add(label, value);
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
}

/// `GET /rest/session` with HTTP Basic: the status SOAR answers.
pub fn session_status(origin: &str, id: &str, secret: &str) -> u16 {
    let host = origin.strip_prefix("http://").expect("an http:// origin");
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"));
    let mut stream = TcpStream::connect(host).unwrap_or_else(|e| panic!("connect {host}: {e}"));
    let request = format!(
        "GET /rest/session HTTP/1.1\r\nhost: {host}\r\nauthorization: Basic {basic}\r\nconnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).expect("send");
    let mut raw = String::new();
    stream.read_to_string(&mut raw).expect("read");
    raw.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {raw:?}"))
}

/// A JSON string as an owned String ("" if it is not one).
pub fn text(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_owned()
}

pub fn key<'a>(state: &'a Value, name: &str) -> &'a Value {
    state["apiKeys"]
        .as_array()
        .and_then(|k| k.iter().find(|k| k["display_name"] == name))
        .unwrap_or_else(|| panic!("no API key account {name} in {state}"))
}

pub fn app<'a>(state: &'a Value, name: &str) -> &'a Value {
    state["apps"]
        .as_array()
        .and_then(|a| a.iter().find(|a| a["name"] == name))
        .unwrap_or_else(|| panic!("no app {name} in {state}"))
}

/// `(name, fingerprint)` of an app's App Secrets.
pub fn app_secrets(state: &Value, name: &str) -> Vec<(String, String)> {
    app(state, name)["current_installation"]["secrets"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| (text(&s["name"]), text(&s["fingerprint"])))
        .collect()
}

pub fn status(state: &Value, name: &str) -> String {
    app(state, name)["current_installation"]["status"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// App Host logins that failed, as recorded by the simulator.
pub fn failed_logins(state: &Value) -> Vec<Value> {
    state["apps"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|a| a["authLog"].as_array().cloned().unwrap_or_default())
        .filter(|l| l["ok"] != true)
        .collect()
}

/// How many App Host logins of `app` succeeded.
pub fn good_logins(state: &Value, name: &str) -> usize {
    app(state, name)["authLog"]
        .as_array()
        .map(|l| l.iter().filter(|l| l["ok"] == true).count())
        .unwrap_or(0)
}

/// The state without what moves by itself (App Host login records, bans).
pub fn settled(state: &Value) -> Value {
    let mut s = state.clone();
    for a in s["apps"].as_array_mut().into_iter().flatten() {
        if let Some(o) = a.as_object_mut() {
            o.remove("authLog");
        }
    }
    if let Some(o) = s.as_object_mut() {
        o.remove("ipBans");
    }
    s
}

/// What two runs from the same fixtures must agree on: [`settled`] without
/// dates (fixtures are dated from each simulator's start) and with the
/// regenerated secret's fingerprint, whatever its value, as `<new secret>`.
pub fn outcome(state: &Value) -> Value {
    let fp = key(state, "fn_soar_utils")["secretFingerprint"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let text = settled(state).to_string().replace(&fp, "<new secret>");
    let mut v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    strip_dates(&mut v);
    v
}

/// The state without fixture dates, to compare two simulator instances.
pub fn without_dates(state: &Value) -> Value {
    let mut v = state.clone();
    strip_dates(&mut v);
    v
}

fn strip_dates(v: &mut Value) {
    match v {
        Value::Object(o) => {
            o.remove("create_date");
            o.remove("last_modified_date");
            o.values_mut().for_each(strip_dates);
        }
        Value::Array(a) => a.iter_mut().for_each(strip_dates),
        _ => {}
    }
}

/// The App Secret each fixture app keeps account fn_soar_utils's secret in.
pub const USERS: [(&str, &str); 2] = [
    ("fn_soar_utils", "fn_soar_utils"),
    ("fn_misp", "soar_api_key_secret"),
];

/// The seed procedure's end state for account fn_soar_utils, against the
/// state before it: same ID, new secret, unlocked, no failed login; both
/// apps deployed holding exactly that secret; everything else untouched.
pub fn assert_regenerated(before: &Value, after: &Value, why: &str) {
    let (old, new) = (key(before, "fn_soar_utils"), key(after, "fn_soar_utils"));
    assert_eq!(new["id"], 12, "{why}");
    assert_eq!(new["api_key_id"], old["api_key_id"], "{why}: the ID stays");
    assert_ne!(
        new["secretFingerprint"], old["secretFingerprint"],
        "{why}: the secret was regenerated"
    );
    assert_eq!(new["locked"], false, "{why}: {new}");
    assert_eq!(new["failed_login_count"], 0, "{why}: {new}");
    for (name, secret) in USERS {
        assert_eq!(status(after, name), "deployed", "{why}: {name}");
        assert_eq!(
            app_secrets(after, name),
            vec![(secret.to_owned(), text(&new["secretFingerprint"]))],
            "{why}: {name} holds the new secret"
        );
    }
    assert_eq!(
        after["apiKeys"].as_array().map(Vec::len),
        Some(4),
        "{why}: no key was added or removed"
    );
    for other in [
        "rota_automation",
        "fn_qradar_integration",
        "fn_splunk_integration",
    ] {
        assert_eq!(key(after, other), key(before, other), "{why}: {other} untouched");
    }
    for other in ["fn_qradar_integration", "fn_splunk_integration"] {
        let strip = |s: &Value| {
            let mut a = app(s, other).clone();
            if let Some(o) = a.as_object_mut() {
                o.remove("authLog");
            }
            a
        };
        assert_eq!(strip(after), strip(before), "{why}: app {other} untouched");
    }
}

/// The JSON events of a `--output json` run.
pub fn events(out: &Output) -> Vec<Value> {
    out.stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The outputs of a step, from the run's final report.
pub fn step_outputs(out: &Output, step: &str) -> Value {
    events(out)
        .into_iter()
        .filter(|e| e["event"] == "report")
        .flat_map(|e| e["report"]["steps"].as_array().cloned().unwrap_or_default())
        .find(|s| s["id"] == step)
        .map(|s| s["outputs"].clone())
        .unwrap_or(Value::Null)
}

/// The rehearsal's full vendor state (its last JSON line).
fn rehearsal_state(out: &Output) -> Value {
    let last: Value =
        serde_json::from_str(out.stdout.lines().last().unwrap_or_default()).expect("a JSON line");
    assert_eq!(last["event"], "rehearsal", "{last}");
    last["vendors"]["soar"]["state"].clone()
}

fn rehearse(t: &Test, extra: &[&str]) -> Output {
    let playbooks = repo().join("playbooks");
    let mut args = vec!["run", PLAYBOOK, "--rehearse", "--yes", "--output", "json"];
    args.extend(extra);
    seed_plugin_cache(t);
    let out = Test::new_in(t)
        .env("ROTA_PLAYBOOK_PATH", &playbooks.to_string_lossy())
        .args(&args)
        .run();
    keep_plugin_cache(t);
    out
}

fn rehearsal_leak_scan(t: &Test, outputs: &[&Output]) {
    let reveal = |name: &str| {
        let out = Test::new_in(t)
            .args(&["--rehearsal", "secrets", "get", name, "--reveal"])
            .run();
        assert_eq!(out.status, 0, "{name}: {}", out.stderr);
        out.stdout.trim_end_matches('\n').to_owned()
    };
    let mut scanner = LeakScanner::new();
    scanner.add("new secret", &reveal(NEW_SECRET));
    scanner.add(
        "operator secret",
        &reveal("rehearsal/soar/rota-automation-secret"),
    );
    let mut hits = Vec::new();
    for (i, out) in outputs.iter().enumerate() {
        hits.extend(scanner.scan_bytes(&format!("stdout #{i}"), out.stdout.as_bytes()));
        hits.extend(scanner.scan_bytes(&format!("stderr #{i}"), out.stderr.as_bytes()));
    }
    hits.extend(scanner.scan_rota_state(&t.state_dir()).expect("scan the state"));
    assert_no_leaks(&hits);
}

/// The README's kind of first command: nothing but the playbook's name.
/// Automated and guided rehearsals end in the same vendor state, with the
/// App Host signing in throughout and never failing.
#[test]
fn rehearsal_automated_and_guided_reach_the_same_state_with_no_failed_login() {
    let plan = Test::new();
    let before = {
        let playbooks = repo().join("playbooks");
        let out = Test::new_in(&plan)
            .env("ROTA_PLAYBOOK_PATH", &playbooks.to_string_lossy())
            .args(&["plan", PLAYBOOK, "--rehearse", "--output", "json"])
            .run();
        assert_eq!(out.status, 0, "{}{}", out.stdout, out.stderr);
        rehearsal_state(&out)
    };
    let t = Test::new();
    let automated = rehearse(&t, &[]);
    assert_eq!(automated.status, 0, "{}\n{}", automated.stdout, automated.stderr);
    let auto_state = rehearsal_state(&automated);
    // Two simulator instances: their fixtures are dated from each one's start.
    assert_regenerated(
        &without_dates(&before),
        &without_dates(&auto_state),
        "automated rehearsal",
    );
    assert_eq!(
        failed_logins(&auto_state),
        Vec::<Value>::new(),
        "no App Host login failed"
    );
    for (name, _) in USERS {
        assert!(
            good_logins(&auto_state, name) > 0,
            "{name} signed in during the rehearsal (background App Host): {auto_state}"
        );
    }
    // fn_misp is found by its app.config's api_key_id only; fn_soar_utils
    // by that and by the App Secret its app.config names after the account.
    let found = step_outputs(&automated, "find");
    assert_eq!(found["apps"], "fn_soar_utils,fn_misp", "{found}");
    assert_eq!(
        found["details"][0]["matched_by"],
        json!(["api_key_id", "config_secret_name"])
    );
    assert_eq!(found["details"][1]["matched_by"], json!(["api_key_id"]));
    assert_eq!(found["details"][1]["secret_name"], "soar_api_key_secret");

    let g = Test::new();
    let guided = rehearse(&g, &["--guided"]);
    assert_eq!(guided.status, 0, "{}\n{}", guided.stdout, guided.stderr);
    for step in [
        "account",
        "find",
        "undeploy",
        "regenerate",
        "update_secrets",
        "deploy",
        "check_account",
    ] {
        let path = events(&guided)
            .into_iter()
            .find(|e| e["event"] == "step_started" && e["id"] == step)
            .map(|e| e["path"].clone());
        assert_eq!(path, Some(json!("manual")), "{step} took its guided path");
    }
    let guided_state = rehearsal_state(&guided);
    assert_eq!(failed_logins(&guided_state), Vec::<Value>::new());
    assert_eq!(
        outcome(&guided_state),
        outcome(&auto_state),
        "the guided path ends where the automated one does"
    );
    rehearsal_leak_scan(&t, &[&automated]);
    rehearsal_leak_scan(&g, &[&guided]);
}

/// After a rehearsal the inventory holds every account the plugin listed,
/// the regenerated one with its apps and its secret's name; SOAR secrets
/// never expire, so none is due.
#[test]
fn rehearsal_inventory_lists_the_regenerated_key_and_its_apps() {
    let t = Test::new();
    let out = rehearse(&t, &[]);
    assert_eq!(out.status, 0, "{}\n{}", out.stdout, out.stderr);
    let state = rehearsal_state(&out);
    let inv = Test::new_in(&t)
        .args(&["--rehearsal", "inventory", "--output", "json"])
        .run();
    assert_eq!(inv.status, 0, "{}", inv.stderr);
    let rows: Value = serde_json::from_str(&inv.stdout).expect("JSON");
    let summary: Vec<(String, String, Value, Value)> = rows
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            (
                text(&r["account"]),
                text(&r["key_id"]),
                r["consumers"].clone(),
                r["expires"].clone(),
            )
        })
        .collect();
    let id = |name: &str| {
        key(&state, name)["api_key_id"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(
        summary,
        vec![
            (
                "fn_qradar_integration".into(),
                id("fn_qradar_integration"),
                json!(["fn_qradar_integration"]),
                Value::Null
            ),
            (
                "fn_soar_utils".into(),
                id("fn_soar_utils"),
                json!(["fn_soar_utils", "fn_misp"]),
                Value::Null
            ),
            (
                "fn_splunk_integration".into(),
                id("fn_splunk_integration"),
                json!(["fn_splunk_integration"]),
                Value::Null
            ),
            (
                "rota_automation".into(),
                id("rota_automation"),
                json!([]),
                Value::Null
            ),
        ]
    );
    let regenerated = rows
        .as_array()
        .and_then(|r| r.iter().find(|r| r["account"] == "fn_soar_utils"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(regenerated["vendor"], "soar");
    assert_eq!(regenerated["status"], "active");
    assert_eq!(regenerated["secret"], NEW_SECRET);
    assert!(regenerated["created"].is_string(), "{regenerated}");
    let due = Test::new_in(&t)
        .args(&["--rehearsal", "inventory", "--due", "30d", "--output", "json"])
        .run();
    assert_eq!(due.status, 0, "{}", due.stderr);
    assert_eq!(
        serde_json::from_str::<Value>(&due.stdout).expect("JSON"),
        json!([]),
        "SOAR secrets never expire"
    );
}

/// The happy path against standalone simulators configured like a tenant:
/// the exact end state, the stored secret signs in, the old one does not.
#[test]
fn happy_path_regenerates_in_place_and_every_app_runs_on_the_new_secret() {
    let mut r = Rig::with_app_host();
    let out = r.regenerate("fn_soar_utils", &["--run-id", "happy"]);
    assert_eq!(out.status, 0, "{}\n{}", out.stdout, out.stderr);
    for line in [
        "undeploy: undeploy app fn_soar_utils, so it stops signing in before its secret is replaced",
        "undeploy: undeploy app fn_misp, so it stops signing in before its secret is replaced",
        "update_secrets: give app fn_misp the new secret of API key account fn_soar_utils in its App Secrets",
        "deploy: deploy app fn_misp again, now holding the new secret",
        "run happy succeeded",
    ] {
        assert!(out.stdout.contains(line), "missing {line:?} in\n{}", out.stdout);
    }
    r.sims.tick("soar");
    let after = r.state();
    assert_regenerated(&r.before, &after, "happy path");
    assert_eq!(failed_logins(&after), Vec::<Value>::new());
    assert!(good_logins(&after, "fn_misp") > 0, "{after}");
    let api_key_id = text(&key(&after, "fn_soar_utils")["api_key_id"]);
    let versions = Test::new_in(&r.t)
        .args(&["secrets", "versions", NEW_SECRET, "--output", "json"])
        .run();
    let versions: Value = serde_json::from_str(&versions.stdout).expect("JSON");
    assert_eq!(versions.as_array().map(Vec::len), Some(1), "{versions}");
    assert_eq!(versions[0]["stages"], json!(["current"]), "{versions}");
    let secret = r.reveal(NEW_SECRET, &[]);
    assert_eq!(
        r.signs_in(&api_key_id, &secret),
        200,
        "the stored secret is the account's"
    );
    r.scan(&[("new secret", &secret)]);
}
