//! The vendor simulators as a separate process (`rota sims serve`), for
//! tests whose simulators must outlive a `rota` process (crash and resume),
//! or that act on the simulators themselves (the operator's clicks in a
//! guided run, plans compared against the full admin state).
//!
//! Design decision: the tests drive these simulators exactly as an operator
//! would drive a staging tenant: a user config (`rota.yaml`) with one target
//! per plugin granting that simulator's loopback origin, and the operator's
//! credentials put into the store with `rota secrets put`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};

use serde_json::Value;

use crate::test::{ROTA, Test};

/// The systems `rota sims serve` starts, by the plugin names that use them.
pub const SYSTEMS: [&str; 6] = [
    "plex",
    "demandcaster",
    "plytix",
    "soar",
    "constellix",
    "consumers",
];

pub struct Sims {
    child: Child,
    /// (system, api origin, admin origin)
    origins: Vec<(String, String, String)>,
}

impl Drop for Sims {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Sims {
    /// Starts `rota sims serve` with these settings (JSON: seed, faults,
    /// background_interval_ms, ...; `{}` for the defaults).
    pub fn start(test: &Test, settings: &str) -> Self {
        let path = test.path().join("sims-settings.json");
        std::fs::write(&path, settings).expect("write simulator settings");
        let mut child = Command::new(ROTA)
            .args(["sims", "serve", "--settings"])
            .arg(&path)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn rota sims serve");
        let stdout = child.stdout.take().expect("sims stdout");
        let mut lines = BufReader::new(stdout).lines();
        let mut origins = Vec::new();
        for _ in SYSTEMS {
            let line = lines
                .next()
                .expect("rota sims serve printed too few lines")
                .expect("read rota sims serve output");
            let mut parts = line.split_whitespace();
            let system = parts.next().unwrap_or_default().to_owned();
            let api = parts
                .next()
                .and_then(|p| p.strip_prefix("api="))
                .unwrap_or_default();
            let admin = parts
                .next()
                .and_then(|p| p.strip_prefix("admin="))
                .unwrap_or_default();
            assert!(
                !api.is_empty() && !admin.is_empty(),
                "unexpected sims line {line:?}"
            );
            origins.push((system, api.to_owned(), admin.to_owned()));
        }
        Self { child, origins }
    }

    fn find(&self, system: &str) -> &(String, String, String) {
        self.origins
            .iter()
            .find(|(s, _, _)| s == system)
            .unwrap_or_else(|| panic!("no simulator {system}"))
    }

    /// The vendor API origin of a system.
    pub fn api(&self, system: &str) -> &str {
        &self.find(system).1
    }

    /// The admin API origin of a system (never granted to a plugin).
    pub fn admin_origin(&self, system: &str) -> &str {
        &self.find(system).2
    }

    /// An admin call; returns the status and the JSON answer (Null if empty).
    pub fn admin(&self, method: &str, system: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        http(method, &format!("{}{path}", self.admin_origin(system)), body)
    }

    /// `GET /admin/state` -> its `state` (secrets as fingerprints only).
    pub fn state(&self, system: &str) -> Value {
        let (status, v) = self.admin("GET", system, "/admin/state", None);
        assert_eq!(status, 200, "admin state of {system}: {v}");
        v.get("state").cloned().unwrap_or(Value::Null)
    }

    /// The credentials the operator drives a system with.
    pub fn operator(&self, system: &str) -> Value {
        let (status, v) = self.admin("GET", system, "/admin/operator", None);
        assert_eq!(status, 200, "operator view of {system}: {v}");
        v
    }

    /// `POST /admin/tick`: one round of background work (consumers call
    /// their vendors, SOAR apps log in, DemandCaster syncs).
    pub fn tick(&self, system: &str) -> Value {
        let (status, v) = self.admin("POST", system, "/admin/tick", None);
        assert_eq!(status, 200, "tick of {system}: {v}");
        v
    }

    /// An operator config granting each plugin its simulator's origin, with
    /// modeled actions enabled or not.
    pub fn config(&self, modeled: bool) -> String {
        let mut out = String::from("plugins:\n");
        for (system, api, _) in &self.origins {
            out.push_str(&format!(
                "  {system}:\n    targets:\n      - name: sims\n        base_url: \"{api}\"\n        origins: [\"{api}\"]\n        rehearsal: true\n        modeled: {}\n",
                if modeled { "enabled" } else { "disabled" }
            ));
        }
        out
    }

    /// Writes [`Sims::config`] as the user config of `test` (and every
    /// `Test::new_in` of it).
    pub fn configure(&self, test: Test, modeled: bool) -> Test {
        test.file(".config/rota/rota.yaml", self.config(modeled))
    }

    /// Puts a value read from a system's operator view (at an RFC 6901
    /// pointer) into the store as secret `name`, as the operator would with
    /// `rota secrets put`. Returns the value, for leak scans.
    pub fn put_operator_secret(&self, test: &Test, name: &str, system: &str, pointer: &str) -> String {
        let view = self.operator(system);
        let value = match view.pointer(pointer) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            other => panic!("operator view of {system} has no string at {pointer}: {other:?}"),
        };
        let out = Test::new_in(test)
            .args(&["secrets", "put", name])
            .stdin(&value)
            .run();
        assert_eq!(out.status, 0, "secrets put {name}: {}", out.stderr);
        value
    }
}

/// A blocking HTTP/1.1 call on loopback (the admin APIs are plain HTTP).
pub fn http(method: &str, url: &str, body: Option<&Value>) -> (u16, Value) {
    let rest = url.strip_prefix("http://").expect("an http:// URL");
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let mut stream = TcpStream::connect(host).unwrap_or_else(|e| panic!("connect {host}: {e}"));
    let payload = body.map(|b| b.to_string()).unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\naccept: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{payload}",
        payload.len()
    );
    stream.write_all(request.as_bytes()).expect("send request");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read response");
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {head:?}"));
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase().starts_with("transfer-encoding:") && l.to_ascii_lowercase().contains("chunked")
    });
    let body = if chunked { dechunk(body) } else { body.to_owned() };
    let value = if body.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&body).unwrap_or(Value::String(body))
    };
    (status, value)
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}
