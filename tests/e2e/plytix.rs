//! Plytix PIM end to end: the repository's `plytix-api-key` and
//! `plytix-api-key-role` playbooks through the real binary against the
//! simulators, with the leak scan over everything each test produced.
//!
//! Design decision: each test is a tenant of its own, standalone simulators
//! (`rota sims serve`) configured as an operator would configure Plytix,
//! so vendor state outlives a crashed `rota` and the test can act on the
//! simulators as the operator's hands. A tenant's leak scanner learns every
//! password the test can know (the operator's, the users', every key
//! password revealed from the store) and scans all its outputs at the end.

#[cfg(feature = "crash-points")]
mod crash;
mod create;
mod guided;
mod role;

use rota_testkit::{LeakScanner, assert_no_leaks};
use serde_json::{Value, json};

use crate::sims::{Sims, http};
use crate::test::{Output, Test, repo};

pub const CREATE: &str = "playbooks/plytix-api-key.yaml";
pub const ROLE: &str = "playbooks/plytix-api-key-role.yaml";
/// Where the operator's admin key password is stored.
pub const ADMIN_SECRET: &str = "ops/plytix/acme-home/admin-password";
/// Where `plytix-api-key` stores the new key's password (key_slug `pim-export`).
pub const NEW_SECRET: &str = "plytix/acme-home/pim-export/api-password";
pub const NEW_NAME: &str = "PIM export (acme-erp)";
pub const RETRY_ATTEMPTS: usize = 6;

pub struct Tenant {
    pub t: Test,
    pub sims: Sims,
    /// The operator's own key (an identifier, not a secret).
    pub admin_key: String,
    scanner: LeakScanner,
    outputs: Vec<Output>,
}

impl Tenant {
    /// Simulators with `settings` (JSON), a config granting each plugin its
    /// simulator, and the operator's admin password in the store.
    pub fn start(settings: &str, modeled: bool) -> Self {
        let t = Test::new();
        let sims = Sims::start(&t, settings);
        let t = sims.configure(t, modeled);
        let password = sims.put_operator_secret(&t, ADMIN_SECRET, "plytix", "/apiKey/api_password");
        let view = sims.operator("plytix");
        let admin_key = view["apiKey"]["api_key"].as_str().unwrap_or_default().to_owned();
        assert_eq!(admin_key.len(), 32, "the operator's API key: {view}");
        let mut scanner = LeakScanner::new();
        scanner.add("operator API password", &password);
        for u in view["users"].as_array().into_iter().flatten() {
            scanner.add(
                &format!("password of {}", u["email"]),
                u["password"].as_str().unwrap_or_default(),
            );
        }
        Self {
            t,
            sims,
            admin_key,
            scanner,
            outputs: Vec::new(),
        }
    }

    pub fn path(&self, playbook: &str) -> String {
        repo().join(playbook).to_string_lossy().into_owned()
    }

    /// An `--inputs` file for `plytix-api-key`.
    pub fn create_inputs(&self, name: &str, role: &str) -> &Self {
        self.create_inputs_as(&self.admin_key.clone(), ADMIN_SECRET, name, role)
    }

    /// The same, signing in with another key.
    pub fn create_inputs_as(&self, admin_key: &str, admin_secret: &str, name: &str, role: &str) -> &Self {
        self.inputs(
            "create.yaml",
            &format!(
                "account: acme-home\nadmin_key: {admin_key}\nadmin_password: {admin_secret}\nname: {name}\nrole: {role}\nkey_slug: pim-export\n"
            ),
        )
    }

    /// An `--inputs` file for `plytix-api-key-role`.
    pub fn role_inputs(&self, key_name: &str, role: &str) -> &Self {
        self.inputs(
            "role.yaml",
            &format!(
                "account: acme-home\nadmin_key: {}\nadmin_password: {ADMIN_SECRET}\nkey_name: {key_name}\nrole: {role}\n",
                self.admin_key
            ),
        )
    }

    pub fn inputs(&self, file: &str, text: &str) -> &Self {
        std::fs::write(self.t.path().join(file), text).expect("write inputs");
        self
    }

    /// `rota <args>` in the tenant's directory; the output is kept for the leak scan.
    pub fn rota(&mut self, args: &[&str]) -> Output {
        self.rota_env(args, &[])
    }

    pub fn rota_env(&mut self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = Test::new_in(&self.t).args(args);
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

    /// Runs a repository playbook with an inputs file (and more arguments).
    pub fn run(&mut self, playbook: &str, inputs: &str, more: &[&str]) -> Output {
        let path = self.path(playbook);
        let mut args = vec!["run", path.as_str(), "--inputs", inputs];
        args.extend_from_slice(more);
        self.rota(&args)
    }

    /// The Plytix account as its admin API shows it.
    pub fn plytix(&self) -> Value {
        self.sims.state("plytix")
    }

    pub fn keys(&self) -> Vec<Value> {
        self.plytix()["apiKeys"].as_array().cloned().unwrap_or_default()
    }

    pub fn key(&self, name: &str) -> Option<Value> {
        self.keys().into_iter().find(|k| k["name"] == name)
    }

    /// Adds what a terminal showed to the outputs the leak scan covers.
    pub fn scan_too(&mut self, shown: &str) {
        self.outputs.push(Output {
            status: 0,
            stdout: shown.to_owned(),
            stderr: String::new(),
        });
    }

    /// A value the test learnt that must never show up anywhere.
    pub fn learn(&mut self, label: &str, value: &str) {
        self.scanner.add(label, value);
    }

    /// Stores a secret as the operator would (`rota secrets put`, value on stdin).
    pub fn put_secret(&mut self, name: &str, value: &str) {
        self.learn(name, value);
        let out = Test::new_in(&self.t)
            .args(&["secrets", "put", name])
            .stdin(value)
            .run();
        assert_eq!(out.status, 0, "secrets put {name}: {}", out.stderr);
    }

    /// Everything a refused run or a plan must leave as it was: the Plytix
    /// account (but its count of issued tokens), the consumer registry, the
    /// store's listing.
    pub fn snapshot(&mut self) -> Unchanged {
        let secrets = Test::new_in(&self.t)
            .args(&["secrets", "list", "--output", "json"])
            .run()
            .stdout;
        Unchanged {
            account: account(&self.plytix()),
            consumers: self.sims.state("consumers"),
            secrets,
        }
    }

    /// The account, the registry and the store are as `before` saw them.
    pub fn assert_unchanged(&mut self, before: &Unchanged, what: &str) {
        let now = self.snapshot();
        assert_eq!(now.account, before.account, "{what}: the Plytix account changed");
        assert_eq!(now.consumers, before.consumers, "{what}: the registry changed");
        assert_eq!(now.secrets, before.secrets, "{what}: the store changed");
    }

    /// Runs `playbook` and checks it is refused with `message` (exit 1)
    /// having changed nothing at the vendor, in the registry or the store.
    pub fn assert_refused(&mut self, playbook: &str, inputs: &str, message: &str) -> Output {
        let before = self.snapshot();
        let out = self.run(playbook, inputs, &["--yes"]);
        assert_eq!(out.status, 1, "{}\n{}", out.stdout, out.stderr);
        assert!(
            out.stderr.contains(message),
            "missing {message:?} in\n{}",
            out.stderr
        );
        self.assert_unchanged(&before, message);
        out
    }

    /// A stored secret's current value, read AFTER the scanned commands and
    /// added to the scan.
    pub fn reveal(&mut self, secret: &str) -> Option<String> {
        let out = Test::new_in(&self.t)
            .args(&["secrets", "get", secret, "--reveal"])
            .run();
        if out.status != 0 {
            return None;
        }
        let value = out.stdout.trim().to_owned();
        self.scanner.add(&format!("stored {secret}"), &value);
        Some(value)
    }

    /// Stops injecting faults (before the test checks the vendor itself).
    pub fn clear_faults(&self, system: &str) {
        let (status, body) = self.sims.admin(
            "PUT",
            system,
            "/admin/faults",
            Some(&json!({"seed": 0, "rules": []})),
        );
        assert_eq!(status, 200, "{body}");
    }

    /// Whether the new key's current password in the store signs it in
    /// (the documented exchange, straight at the simulator); `None` if the
    /// key or its password is missing.
    pub fn new_key_signs_in(&mut self) -> Option<bool> {
        let key = self.key(NEW_NAME)?;
        let password = self.reveal(NEW_SECRET)?;
        let api_key = key["api_key"].as_str().unwrap_or_default();
        Some(self.token_exchange(api_key, &password) == 200)
    }

    /// The documented token exchange, straight at the simulator.
    pub fn token_exchange(&self, api_key: &str, password: &str) -> u16 {
        let url = format!("{}/auth/api/get-token", self.sims.api("plytix"));
        http(
            "POST",
            &url,
            Some(&json!({"api_key": api_key, "api_password": password})),
        )
        .0
    }

    /// No learnt secret in any output of this tenant's commands nor in its state.
    pub fn assert_no_leaks(&self) {
        let mut hits = Vec::new();
        for (i, out) in self.outputs.iter().enumerate() {
            hits.extend(
                self.scanner
                    .scan_bytes(&format!("stdout #{i}"), out.stdout.as_bytes()),
            );
            hits.extend(
                self.scanner
                    .scan_bytes(&format!("stderr #{i}"), out.stderr.as_bytes()),
            );
        }
        hits.extend(
            self.scanner
                .scan_rota_state(&self.t.state_dir())
                .expect("scan the state dir"),
        );
        assert_no_leaks(&hits);
    }
}

/// What [`Tenant::snapshot`] saw.
pub struct Unchanged {
    account: Value,
    consumers: Value,
    secrets: String,
}

/// `rota run <playbook> --rehearse` by name, as from the repository root,
/// with its own state.
pub struct Rehearsal {
    t: Test,
    playbooks: String,
}

impl Rehearsal {
    pub fn new() -> Self {
        Self {
            t: Test::new(),
            playbooks: repo().join("playbooks").to_string_lossy().into_owned(),
        }
    }

    pub fn rota(&self, args: &[&str]) -> Output {
        Test::new_in(&self.t)
            .env("ROTA_PLAYBOOK_PATH", &self.playbooks)
            .args(args)
            .run()
    }

    /// `--rehearse --yes --output json`: the run and the simulated Plytix's
    /// keys at its end.
    pub fn run(&self, playbook: &str) -> (Output, Vec<Value>) {
        let out = self.rota(&["run", playbook, "--rehearse", "--yes", "--output", "json"]);
        assert_eq!(out.status, 0, "{}\n{}", out.stdout, out.stderr);
        let last: Value =
            serde_json::from_str(out.stdout.lines().last().unwrap_or_default()).expect("a rehearsal event");
        let keys = last["vendors"]["plytix"]["state"]["apiKeys"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        (out, keys)
    }

    /// The rehearsal inventory (`--due 30d` with `due`).
    pub fn inventory(&self, due: bool) -> Vec<Value> {
        let mut args = vec!["--rehearsal", "inventory", "--output", "json"];
        if due {
            args.extend(["--due", "30d"]);
        }
        let out = self.rota(&args);
        serde_json::from_str::<Value>(&out.stdout)
            .ok()
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default()
    }

    /// None of the rehearsal store's `secrets` in `out` or its state.
    pub fn assert_no_leaks(&self, out: &Output, secrets: &[&str]) {
        let mut scanner = LeakScanner::new();
        for name in secrets {
            let v = self.rota(&["--rehearsal", "secrets", "get", name, "--reveal"]);
            assert_eq!(v.status, 0, "{name}: {}", v.stderr);
            scanner.add(name, v.stdout.trim());
        }
        let mut hits = scanner.scan_bytes("stdout", out.stdout.as_bytes());
        hits.extend(scanner.scan_bytes("stderr", out.stderr.as_bytes()));
        hits.extend(
            scanner
                .scan_rota_state(&self.t.state_dir().join("rehearsal"))
                .expect("scan the rehearsal state"),
        );
        assert_no_leaks(&hits);
    }
}

/// The account as it matters: everything but how many access tokens were
/// issued (every sign-in issues one; tests count them apart).
pub fn account(state: &Value) -> Value {
    let mut s = state.clone();
    if let Some(m) = s.as_object_mut() {
        m.remove("activeTokens");
    }
    s
}

pub fn active_tokens(state: &Value) -> u64 {
    state["activeTokens"].as_u64().unwrap_or_default()
}

/// The key named `name` among `keys` (Null if none).
pub fn named(keys: &[Value], name: &str) -> Value {
    keys.iter()
        .find(|k| k["name"] == name)
        .cloned()
        .unwrap_or(Value::Null)
}

/// Keys as (name, role, role type), sorted: what two runs that each created
/// their own key can be compared on.
pub fn roles_of(keys: &[Value]) -> Vec<(String, String, String)> {
    let mut v: Vec<(String, String, String)> = keys
        .iter()
        .map(|k| {
            let s = |p: &str| {
                k.pointer(p)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned()
            };
            (s("/name"), s("/role/name"), s("/role/type"))
        })
        .collect();
    v.sort();
    v
}

/// Keys without their creation times (fixtures are dated from "now").
pub fn undated(keys: &[Value]) -> Vec<Value> {
    keys.iter()
        .map(|k| {
            let mut k = k.clone();
            if let Some(m) = k.as_object_mut() {
                m.remove("created");
            }
            k
        })
        .collect()
}

/// The JSON events of a `--output json` run.
pub fn events(out: &Output) -> Vec<Value> {
    out.stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .collect()
}

pub fn retries(out: &Output) -> Vec<Value> {
    events(out)
        .into_iter()
        .filter(|e| e["event"] == "step_retrying")
        .collect()
}

/// The status of each step of a run, from `rota runs show`.
pub fn step_statuses(tenant: &mut Tenant, run_id: &str) -> Vec<(String, String)> {
    let out = tenant.rota(&["runs", "show", run_id, "--output", "json"]);
    let record: Value = serde_json::from_str(&out.stdout).unwrap_or(Value::Null);
    record["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            (
                s["key"]["step"].as_str().unwrap_or_default().to_owned(),
                s["end"]["outcome"].as_str().unwrap_or("not ended").to_owned(),
            )
        })
        .collect()
}
