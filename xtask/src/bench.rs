//! `cargo xtask bench e2e`: rota side by side with Ansible and with a raw
//! Rust floor, whole processes against the same simulators.
//!
//! Design decisions:
//! - Every contender is timed as a whole process (wall clock around spawn
//!   and `wait4`, user+sys CPU and peak RSS from `wait4`'s rusage, which on
//!   Linux includes every descendant the process reaped: Ansible's workers
//!   and module processes count). Contenders alternate run by run, the
//!   starting one rotating, so a load spike on this shared machine hits all
//!   of them alike.
//! - The simulators start once (`rota sims serve`); before every run they
//!   are reset to their fixtures and their request logs cleared, so every
//!   run starts from the same vendor state, and after every run the merged
//!   request log (method, path, query, body digest, status, in one order
//!   across systems) must equal the one rota's first run produced. A
//!   contender that made other calls fails the bench with the diff: the
//!   numbers are only comparable if the work is the same.
//! - rota starts every run from a copy of one state directory (operator
//!   secrets put once with `rota secrets put`, plugin cache warmed once), so
//!   no run inherits another's journal, secret versions or locks.
//! - Secrets go to the floor and to Ansible in 0600 files only (Ansible:
//!   `-e @file`), never argv or environment, and a contender's output is
//!   shown only when it fails (none of them prints a secret value: rota by
//!   design, the floor by construction, Ansible through `no_log`).

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

/// The seed playbooks, in the order they are benched.
const PROCEDURES: [&str; 5] = [
    "plex-api-key-reset",
    "plytix-api-key",
    "plytix-api-key-role",
    "soar-regenerate-api-key",
    "constellix-api-key-rollover",
];
/// The procedure of the scale part: one Constellix user per target.
const SCALE_PROCEDURE: &str = "constellix-api-key-rollover";
const ANSIBLE_CORE: &str = "ansible-core<2.20";
const FLOOR_PACKAGE: &str = "rota-bench-floor";

type Result<T, E = String> = std::result::Result<T, E>;

struct Opts {
    smoke: bool,
    runs: usize,
    warmup: usize,
    scale: Vec<usize>,
    scale_runs: usize,
    concurrency: usize,
    ansible_max_n: usize,
    procedures: Vec<String>,
    parts: Vec<String>,
    release: bool,
    profile: bool,
}

const USAGE: &str = "usage: cargo xtask bench e2e [--smoke] [--runs K] [--warmup W] \
[--scale 1,10,100,1000] [--scale-runs K] [--concurrency C] [--ansible-max-n N] \
[--procedures a,b] [--only single,scale,cold] [--debug] [--profile]";

fn parse(args: &[String]) -> Result<Opts> {
    let mut o = Opts {
        smoke: false,
        runs: 5,
        warmup: 1,
        scale: vec![1, 10, 100, 1000],
        scale_runs: 3,
        concurrency: 8,
        ansible_max_n: 100,
        procedures: PROCEDURES.iter().map(|s| (*s).to_owned()).collect(),
        parts: vec!["single".into(), "scale".into(), "cold".into()],
        release: true,
        profile: false,
    };
    let mut it = args.iter();
    let num = |v: Option<&String>, flag: &str| -> Result<usize> {
        v.and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("{flag} needs a number\n{USAGE}"))
    };
    let list = |v: Option<&String>, flag: &str| -> Result<Vec<String>> {
        v.map(|s| s.split(',').map(str::to_owned).collect())
            .ok_or_else(|| format!("{flag} needs a comma-separated list\n{USAGE}"))
    };
    while let Some(a) = it.next() {
        match a.as_str() {
            "--smoke" => {
                o.smoke = true;
                o.runs = 1;
                o.warmup = 0;
                o.scale = vec![1];
                o.scale_runs = 1;
                o.release = false;
            }
            "--runs" => o.runs = num(it.next(), a)?,
            "--warmup" => o.warmup = num(it.next(), a)?,
            "--scale-runs" => o.scale_runs = num(it.next(), a)?,
            "--concurrency" => o.concurrency = num(it.next(), a)?,
            "--ansible-max-n" => o.ansible_max_n = num(it.next(), a)?,
            "--scale" => {
                o.scale = list(it.next(), a)?
                    .iter()
                    .map(|s| s.parse::<usize>().ok().filter(|n| *n > 0))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| format!("--scale takes positive numbers, e.g. 1,10,100\n{USAGE}"))?;
            }
            "--procedures" => {
                o.procedures = list(it.next(), a)?;
                if let Some(bad) = o.procedures.iter().find(|p| !PROCEDURES.contains(&p.as_str())) {
                    return Err(format!(
                        "unknown procedure {bad:?}; the seed playbooks are {}",
                        PROCEDURES.join(", ")
                    ));
                }
            }
            "--only" => {
                o.parts = list(it.next(), a)?;
                if let Some(bad) = o
                    .parts
                    .iter()
                    .find(|p| !["single", "scale", "cold"].contains(&p.as_str()))
                {
                    return Err(format!("unknown part {bad:?}: single, scale or cold\n{USAGE}"));
                }
            }
            "--debug" => o.release = false,
            "--profile" => o.profile = true,
            "--release" => o.release = true,
            _ => return Err(format!("unknown argument {a:?}\n{USAGE}")),
        }
    }
    if o.runs == 0 {
        return Err("--runs must be at least 1".into());
    }
    Ok(o)
}

/// The entry point: `cargo xtask bench e2e ...`.
pub fn e2e(root: &Path, args: &[String]) -> Result<()> {
    let opts = parse(args)?;
    let root = &fs::canonicalize(root).map_err(|e| format!("{}: {e}", root.display()))?;
    let saved = root.join("target/bench/report.md");
    let started = Instant::now();
    let load_before = loadavg();
    let bins = build(root, opts.release)?;
    let ansible = ensure_ansible(root)?;
    let work = root.join("target/bench/work");
    if work.exists() {
        fs::remove_dir_all(&work).map_err(|e| format!("cannot clear {}: {e}", work.display()))?;
    }
    fs::create_dir_all(&work).map_err(|e| format!("cannot create {}: {e}", work.display()))?;
    let max_n = if opts.parts.iter().any(|p| p == "scale") {
        opts.scale.iter().copied().max().unwrap_or(0)
    } else {
        0
    };
    let sims = Sims::start(&bins.rota, &work, max_n)?;
    let config = work.join("rota.yaml");
    write(&config, &sims.config())?;
    let xdg = work.join("xdg");
    fs::create_dir_all(&xdg).map_err(|e| e.to_string())?;
    let env = Env {
        origins: sims.api_origins(),
        root: root.to_owned(),
        work: work.clone(),
        rota: bins.rota.clone(),
        floor: bins.floor.clone(),
        ansible,
        config,
        xdg,
        template: work.join("state-template"),
        template_scale: work.join("state-template-scale"),
    };

    let mut procs = Vec::new();
    for name in &opts.procedures {
        procs.push(Procedure::load(root, name, &sims)?);
    }
    let scale_users = if max_n > 0 {
        bench_users(&sims, max_n)?
    } else {
        Vec::new()
    };
    fs::create_dir_all(&env.template).map_err(|e| e.to_string())?;
    eprintln!("bench: putting operator secrets into a rota state dir");
    // A plugin is compiled into the cache the first time a run uses it:
    // one run of every procedure benched (and of the scale one) warms it.
    let mut warm: Vec<&Procedure> = procs.iter().collect();
    let scale_proc;
    if max_n > 0 && !opts.procedures.iter().any(|p| p == SCALE_PROCEDURE) {
        scale_proc = Procedure::load(root, SCALE_PROCEDURE, &sims)?;
        warm.push(&scale_proc);
    }
    let mut secrets: BTreeMap<String, String> = BTreeMap::new();
    for p in &warm {
        secrets.extend(p.secrets.clone());
    }
    env.put_secrets(&env.template, &secrets)?;
    for p in warm {
        eprintln!("bench: warming the plugin cache with {}", p.name);
        env.warm_cache(p, &sims)?;
    }
    if !scale_users.is_empty() {
        eprintln!(
            "bench: putting {} bench users' secrets into a second state dir",
            scale_users.len()
        );
        copy_dir(&env.template, &env.template_scale)?;
        let users: BTreeMap<String, String> = scale_users
            .iter()
            .map(|u| (format!("constellix/{}/secret-key", u.user), u.secret_key.clone()))
            .collect();
        env.put_secrets(&env.template_scale, &users)?;
    }

    let mut report = Report::default();
    report.header(&opts, &bins, load_before, args);
    if opts.parts.iter().any(|p| p == "single") {
        for p in &procs {
            eprintln!("bench: {}", p.name);
            let rows = bench_single(&env, &sims, p, &opts)?;
            report.single.push((p.name.clone(), rows));
            // Saved as it goes: a failure later keeps what was measured.
            write(&saved, &report.render())?;
        }
    }
    if opts.profile
        && let Some(first) = procs.first()
    {
        profile(&env, &sims, first)?;
    }
    if opts.parts.iter().any(|p| p == "scale") {
        for &n in &opts.scale {
            eprintln!("bench: scale N={n}");
            let users = scale_users.get(..n).ok_or("fewer bench users than N")?;
            let rows = bench_scale(&env, &sims, users, &opts)?;
            report.scale.push((n, rows));
            write(&saved, &report.render())?;
        }
    }
    if opts.parts.iter().any(|p| p == "cold") {
        let Some(first) = procs.first() else {
            return Err("the cold-start part runs the first procedure: name one with --procedures".into());
        };
        eprintln!("bench: cold start");
        report.cold = Some(bench_cold(&env, &sims, first, &opts)?);
    }
    report.footer(loadavg(), started.elapsed());
    let text = report.render();
    print!("{text}");
    write(&saved, &text)?;
    eprintln!("bench: report saved to {}", saved.display());
    drop(sims);
    // A missed target is a finding to report, not a harness failure.
    let missed = report.missed();
    if !missed.is_empty() && !opts.smoke {
        eprintln!("bench: targets not met: {}", missed.join("; "));
    }
    Ok(())
}

// ---------------------------------------------------------------- build

struct Bins {
    rota: PathBuf,
    floor: PathBuf,
    profile: &'static str,
}

fn build(root: &Path, release: bool) -> Result<Bins> {
    let mut cmd = crate::cargo();
    cmd.args(["build", "--locked", "-p", "rota", "-p", FLOOR_PACKAGE]);
    if release {
        cmd.arg("--release");
    }
    crate::run(&mut cmd)?;
    let profile = if release { "release" } else { "debug" };
    let dir = target_dir(root).join(profile);
    let bins = Bins {
        rota: dir.join("rota"),
        floor: dir.join(FLOOR_PACKAGE),
        profile,
    };
    for b in [&bins.rota, &bins.floor] {
        if !b.is_file() {
            return Err(format!("cargo build succeeded but {} is missing", b.display()));
        }
    }
    Ok(bins)
}

fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
}

/// `ansible-playbook` from a venv under `target/bench/venv`, made (and
/// ansible-core installed from PyPI) on first use.
fn ensure_ansible(root: &Path) -> Result<PathBuf> {
    let venv = root.join("target/bench/venv");
    let playbook = venv.join("bin/ansible-playbook");
    if playbook.is_file() {
        return Ok(playbook);
    }
    let python = which("python3")
        .ok_or("the Ansible contender needs python3 (Debian: apt-get install python3 python3-venv)")?;
    eprintln!("bench: creating a Python venv for Ansible in {}", venv.display());
    let made = Command::new(&python)
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .map_err(|e| format!("cannot run python3 -m venv: {e}"))?;
    if !made.success() || !venv.join("bin/pip").is_file() {
        let _ = fs::remove_dir_all(&venv);
        return Err(
            "python3 -m venv failed: install the venv module (Debian: apt-get install python3-venv)".into(),
        );
    }
    crate::run(
        Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", "--disable-pip-version-check"])
            .arg(ANSIBLE_CORE),
    )
    .map_err(|e| format!("installing {ANSIBLE_CORE} from PyPI into the venv: {e}"))?;
    if playbook.is_file() {
        Ok(playbook)
    } else {
        Err(format!(
            "{ANSIBLE_CORE} installed but {} is missing",
            playbook.display()
        ))
    }
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_string_lossy()
        .split(':')
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

// ---------------------------------------------------------------- simulators

/// `rota sims serve`, and its admin API.
struct Sims {
    child: Child,
    /// system -> (api origin, admin origin)
    origins: BTreeMap<String, (String, String)>,
}

impl Drop for Sims {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Sims {
    fn start(rota: &Path, work: &Path, bench_users: usize) -> Result<Sims> {
        // No background work: every request in the log is one a contender caused.
        let settings = work.join("sims-settings.json");
        write(
            &settings,
            &json!({"constellix_bench_users": bench_users}).to_string(),
        )?;
        let mut child = Command::new(rota)
            .args(["sims", "serve", "--settings"])
            .arg(&settings)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start rota sims serve: {e}"))?;
        let out = child.stdout.take().ok_or("rota sims serve has no stdout")?;
        let mut origins = BTreeMap::new();
        for line in BufReader::new(out).lines().take(6) {
            let line = line.map_err(|e| format!("reading rota sims serve: {e}"))?;
            let mut parts = line.split_whitespace();
            let system = parts.next().unwrap_or_default().to_owned();
            let field = |p: Option<&str>, k: &str| p.and_then(|p| p.strip_prefix(k)).map(str::to_owned);
            let api = field(parts.next(), "api=");
            let admin = field(parts.next(), "admin=");
            match (api, admin) {
                (Some(a), Some(b)) => {
                    origins.insert(system, (a, b));
                }
                _ => return Err(format!("unexpected line from rota sims serve: {line:?}")),
            }
        }
        if origins.len() != 6 {
            return Err(format!("rota sims serve listed {} systems, not 6", origins.len()));
        }
        Ok(Sims { child, origins })
    }

    fn admin(&self, method: &str, system: &str, path: &str, body: Option<&Value>) -> Result<Value> {
        let (_, admin) = self
            .origins
            .get(system)
            .ok_or_else(|| format!("no {system} simulator"))?;
        let (status, v) = http(method, &format!("{admin}{path}"), body)?;
        if (200..300).contains(&status) {
            Ok(v)
        } else {
            Err(format!(
                "{method} {path} at the {system} simulator answered {status}"
            ))
        }
    }

    fn operator(&self, system: &str) -> Result<Value> {
        self.admin("GET", system, "/admin/operator", None)
    }

    /// Fixtures again and empty request logs, on every system.
    fn reset(&self) -> Result<()> {
        for system in self.origins.keys() {
            self.admin("POST", system, "/admin/reset", Some(&json!({})))?;
            self.admin("DELETE", system, "/admin/requests", None)?;
        }
        Ok(())
    }

    /// Every system's request log, merged in `seq` order, one line a call.
    fn requests(&self) -> Result<Vec<String>> {
        let mut all: Vec<(u64, String)> = Vec::new();
        for system in self.origins.keys() {
            let v = self.admin("GET", system, "/admin/requests", None)?;
            for r in v["requests"].as_array().into_iter().flatten() {
                let query: Vec<String> = r["query"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|p| format!("{}={}", p[0].as_str().unwrap_or(""), p[1].as_str().unwrap_or("")))
                    .collect();
                let line = format!(
                    "{system} {} {}{}{} body={} -> {}",
                    r["method"].as_str().unwrap_or("?"),
                    r["path"].as_str().unwrap_or("?"),
                    if query.is_empty() { "" } else { "?" },
                    query.join("&"),
                    r["body"].as_str().unwrap_or("-"),
                    r["status"]
                );
                all.push((r["seq"].as_u64().unwrap_or(u64::MAX), line));
            }
        }
        all.sort_by_key(|(seq, _)| *seq);
        Ok(all.into_iter().map(|(_, l)| l).collect())
    }

    /// A user config granting each plugin its simulator's origin, modeled
    /// actions enabled (what tests/e2e/sims.rs does).
    fn config(&self) -> String {
        let mut out = String::from("plugins:\n");
        for (system, (api, _)) in &self.origins {
            out.push_str(&format!(
                "  {system}:\n    targets:\n      - name: sims\n        base_url: \"{api}\"\n        origins: [\"{api}\"]\n        rehearsal: true\n        modeled: enabled\n"
            ));
        }
        out
    }

    fn api_origins(&self) -> Value {
        Value::Object(
            self.origins
                .iter()
                .map(|(s, (api, _))| (s.clone(), Value::String(api.clone())))
                .collect(),
        )
    }
}

/// A blocking HTTP/1.1 call on loopback (the admin APIs are plain HTTP).
fn http(method: &str, url: &str, body: Option<&Value>) -> Result<(u16, Value)> {
    let rest = url.strip_prefix("http://").ok_or("an http:// URL")?;
    let (host, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, "/"),
    };
    let mut stream = TcpStream::connect(host).map_err(|e| format!("connect {host}: {e}"))?;
    let payload = body.map(Value::to_string).unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{payload}",
        payload.len()
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("{method} {url}: {e}"))?;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .map_err(|e| format!("{method} {url}: {e}"))?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("{method} {url}: no status line"))?;
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let body = if chunked { dechunk(body) } else { body.to_owned() };
    let value = if body.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&body).unwrap_or(Value::String(body))
    };
    Ok((status, value))
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
        out.push_str(rest.get(..n).unwrap_or_default());
        s = rest.get(n..).unwrap_or_default().trim_start_matches("\r\n");
    }
    out
}

// ---------------------------------------------------------------- procedures

/// A seed playbook with what its rehearsal profile says the operator holds.
struct Procedure {
    name: String,
    /// Input values as `--inputs` takes them (secret inputs name a stored secret).
    inputs: Map<String, Value>,
    /// Operator secrets: store name -> value.
    secrets: BTreeMap<String, String>,
}

impl Procedure {
    fn load(root: &Path, name: &str, sims: &Sims) -> Result<Procedure> {
        let path = root.join(format!("playbooks/{name}.rehearse.yaml"));
        let text = fs::read_to_string(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let profile: Value = serde_yaml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut inputs = profile["inputs"].as_object().cloned().unwrap_or_default();
        let read = |v: &Value, what: &str| -> Result<String> {
            let system = v["system"]
                .as_str()
                .ok_or_else(|| format!("{}: {what} has no system", path.display()))?;
            let pointer = v["pointer"]
                .as_str()
                .ok_or_else(|| format!("{}: {what} has no pointer", path.display()))?;
            match sims.operator(system)?.pointer(pointer) {
                Some(Value::String(s)) => Ok(s.clone()),
                Some(Value::Number(n)) => Ok(n.to_string()),
                _ => Err(format!(
                    "{}: {what}: the {system} operator view has no text at {pointer}",
                    path.display()
                )),
            }
        };
        for (input, from) in profile["operator_inputs"].as_object().into_iter().flatten() {
            if !inputs.contains_key(input) {
                inputs.insert(input.clone(), Value::String(read(from, input)?));
            }
        }
        let mut secrets = BTreeMap::new();
        for (secret, from) in profile["operator_secrets"].as_object().into_iter().flatten() {
            secrets.insert(secret.clone(), read(from, secret)?);
        }
        Ok(Procedure {
            name: name.to_owned(),
            inputs,
            secrets,
        })
    }
}

/// One scale target: a seeded Constellix bench user.
#[derive(Clone)]
struct BenchUser {
    user: String,
    api_key: String,
    secret_key: String,
}

fn bench_users(sims: &Sims, n: usize) -> Result<Vec<BenchUser>> {
    let view = sims.operator("constellix")?;
    let users: Vec<BenchUser> = view["users"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|u| {
            let email = u["email"].as_str()?;
            let user = email.strip_suffix("@acme-dns.example")?.strip_prefix("bench-")?;
            Some(BenchUser {
                user: format!("bench-{user}"),
                api_key: u.pointer("/apiKeys/0/apiKey")?.as_str()?.to_owned(),
                secret_key: u.pointer("/apiKeys/0/secretKey")?.as_str()?.to_owned(),
            })
        })
        .collect();
    if users.len() < n {
        return Err(format!(
            "the Constellix simulator seeded {} bench users, not {n}",
            users.len()
        ));
    }
    Ok(users)
}

// ---------------------------------------------------------------- running

struct Env {
    /// The simulators' vendor API origins, by system.
    origins: Value,
    root: PathBuf,
    work: PathBuf,
    rota: PathBuf,
    floor: PathBuf,
    ansible: PathBuf,
    config: PathBuf,
    xdg: PathBuf,
    template: PathBuf,
    /// The template plus the scale part's bench users' secrets: a store
    /// holding a thousand unrelated secrets is kept away from the other parts.
    template_scale: PathBuf,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Contender {
    Rota,
    Floor,
    Ansible,
}

impl Contender {
    fn name(self) -> &'static str {
        match self {
            Contender::Rota => "rota",
            Contender::Floor => "floor",
            Contender::Ansible => "Ansible",
        }
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct Sample {
    wall: Duration,
    cpu: Duration,
    rss_kib: u64,
}

impl Env {
    fn rota_cmd(&self, state: &Path) -> Command {
        let mut cmd = Command::new(&self.rota);
        cmd.current_dir(&self.root)
            .env_remove("RUST_LOG")
            .env_remove("ROTA_PLAYBOOK_PATH")
            .env_remove("ROTA_IDENTITY_FILE")
            .env_remove("ROTA_PASSPHRASE_FILE")
            .env_remove("ROTA_CONFIG")
            .env("ROTA_STATE_DIR", state)
            .env("XDG_CONFIG_HOME", &self.xdg)
            .arg("--config")
            .arg(&self.config);
        cmd
    }

    fn ansible_cmd(&self, playbook: &str, dir: &Path) -> Command {
        let mut cmd = Command::new(&self.ansible);
        let home = self.work.join("ansible-home");
        cmd.current_dir(&self.root)
            .env("ANSIBLE_CONFIG", self.root.join("bench/ansible/ansible.cfg"))
            .env("ANSIBLE_HOME", &home)
            .env("ANSIBLE_LOCAL_TEMP", home.join("tmp"))
            .env("ANSIBLE_NOCOLOR", "1")
            .arg(self.root.join(format!("bench/ansible/{playbook}.yml")))
            .arg("-e")
            .arg(format!("@{}", dir.join("vars.json").display()))
            .arg("-e")
            .arg(format!("@{}", dir.join("secrets.json").display()));
        cmd
    }

    /// Puts secrets into a state dir the way an operator does (`rota
    /// secrets put`, value on stdin).
    fn put_secrets(&self, state: &Path, all: &BTreeMap<String, String>) -> Result<()> {
        for (name, value) in all {
            let mut child = self
                .rota_cmd(state)
                .args(["secrets", "put", name])
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .map_err(|e| format!("cannot run rota secrets put: {e}"))?;
            if let Some(mut stdin) = child.stdin.take() {
                stdin
                    .write_all(value.as_bytes())
                    .map_err(|e| format!("rota secrets put {name}: {e}"))?;
            }
            let out = child
                .wait_with_output()
                .map_err(|e| format!("rota secrets put {name}: {e}"))?;
            if !out.status.success() {
                return Err(format!(
                    "rota secrets put {name} failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
        }
        Ok(())
    }

    /// Runs `p` once in a scratch copy and adds the plugins it compiled to
    /// the template's cache.
    fn warm_cache(&self, p: &Procedure, sims: &Sims) -> Result<()> {
        sims.reset()?;
        let dir = self.prepare(p)?;
        let state = self.fresh_state(true)?;
        let (_, ok, out) = self.measure(Contender::Rota, &mut self.rota_single(p, &dir, &state), &dir)?;
        if !ok {
            return Err(format!(
                "rota run {} (warming the plugin cache) failed:\n{out}",
                p.name
            ));
        }
        copy_dir(&state.join("plugin-cache"), &self.template.join("plugin-cache"))
    }

    /// A fresh copy of the template state; `warm` keeps the plugin cache.
    fn fresh_state(&self, warm: bool) -> Result<PathBuf> {
        self.fresh_state_from(&self.template, warm)
    }

    fn fresh_state_from(&self, template: &Path, warm: bool) -> Result<PathBuf> {
        let state = self.work.join("state");
        if state.exists() {
            fs::remove_dir_all(&state).map_err(|e| format!("cannot clear {}: {e}", state.display()))?;
        }
        copy_dir(template, &state)?;
        if !warm {
            let cache = state.join("plugin-cache");
            if cache.exists() {
                fs::remove_dir_all(&cache).map_err(|e| e.to_string())?;
            }
        }
        Ok(state)
    }

    /// The per-procedure files: rota's inputs, the floor's job, Ansible's
    /// vars, and one 0600 secrets file the floor and Ansible read.
    fn prepare(&self, p: &Procedure) -> Result<PathBuf> {
        let dir = self.work.join(&p.name);
        fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        write(
            &dir.join("inputs.json"),
            &Value::Object(p.inputs.clone()).to_string(),
        )?;
        write_secret_file(
            &dir.join("secrets.json"),
            &json!({"secrets": p.secrets}).to_string(),
        )?;
        let out = dir.join("out");
        write(
            &dir.join("job.json"),
            &json!({
                "procedure": p.name,
                "origins": self.sims_origins(),
                "inputs": p.inputs,
                "secrets_file": dir.join("secrets.json"),
                "out_dir": out,
            })
            .to_string(),
        )?;
        write(
            &dir.join("vars.json"),
            &json!({
                "origins": self.sims_origins(),
                "inputs": p.inputs,
                "out_dir": out,
                "ansible_connection": "local",
                "ansible_python_interpreter": self.ansible.with_file_name("python"),
            })
            .to_string(),
        )?;
        Ok(dir)
    }

    fn sims_origins(&self) -> Value {
        self.origins.clone()
    }

    fn rota_single(&self, p: &Procedure, dir: &Path, state: &Path) -> Command {
        let mut cmd = self.rota_cmd(state);
        cmd.arg("run")
            .arg(self.root.join(format!("playbooks/{}.yaml", p.name)))
            .arg("--yes")
            .arg("--inputs")
            .arg(dir.join("inputs.json"));
        cmd
    }

    /// Spawns `cmd` (output to files in `dir`) and times it with wait4.
    /// Returns the sample, whether it exited 0, and its output.
    fn measure(&self, who: Contender, cmd: &mut Command, dir: &Path) -> Result<(Sample, bool, String)> {
        let out_path = dir.join(format!("{}.out", who.name()));
        let out = fs::File::create(&out_path).map_err(|e| e.to_string())?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        let t0 = Instant::now();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", who.name()))?;
        let (ok, cpu, rss_kib) = wait4(&child)?;
        let wall = t0.elapsed();
        let text = fs::read_to_string(&out_path).unwrap_or_default();
        Ok((Sample { wall, cpu, rss_kib }, ok, text))
    }
}

/// Waits for `child` with wait4: (exited 0, user+sys CPU, peak RSS in KiB).
#[allow(
    unsafe_code,
    reason = "wait4 is the one call that reports a reaped child's CPU time and peak RSS"
)]
fn wait4(child: &Child) -> Result<(bool, Duration, u64)> {
    let pid = libc::pid_t::try_from(child.id()).map_err(|e| e.to_string())?;
    let mut status: libc::c_int = 0;
    // SAFETY: rusage is a plain C struct of integers, for which all-zero is valid.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: `pid` is our own child, not yet reaped (std's Child only
        // waits when asked, and it is never asked); `status` and `ru` are
        // live, writable and of the types wait4 expects.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
        if r == pid {
            break;
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(format!("wait4: {e}"));
        }
    }
    let tv = |t: libc::timeval| {
        Duration::from_secs(u64::try_from(t.tv_sec).unwrap_or(0))
            + Duration::from_micros(u64::try_from(t.tv_usec).unwrap_or(0))
    };
    let ok = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
    Ok((
        ok,
        tv(ru.ru_utime) + tv(ru.ru_stime),
        u64::try_from(ru.ru_maxrss).unwrap_or(0),
    ))
}

/// The calls of a run, compared with the reference; Err is the report.
fn same_calls(who: &str, reference: &[String], got: &[String], ordered: bool) -> Result<()> {
    if ordered {
        if reference == got {
            return Ok(());
        }
        let diff = lcs_diff(reference, got);
        return Err(format!(
            "{who} did not make the same calls as rota, in the same order (- rota, + {who}):\n{diff}"
        ));
    }
    let count = |v: &[String]| {
        let mut m: BTreeMap<String, i64> = BTreeMap::new();
        for l in v {
            *m.entry(l.clone()).or_default() += 1;
        }
        m
    };
    let (a, b) = (count(reference), count(got));
    if a == b {
        return Ok(());
    }
    let mut diff = String::new();
    for k in a
        .keys()
        .chain(b.keys())
        .collect::<std::collections::BTreeSet<_>>()
    {
        let (x, y) = (a.get(k).copied().unwrap_or(0), b.get(k).copied().unwrap_or(0));
        if x != y {
            diff.push_str(&format!("  rota {x}x, {who} {y}x: {k}\n"));
        }
    }
    Err(format!(
        "{who} did not make the same calls as rota (as a multiset):\n{diff}"
    ))
}

/// A line diff by longest common subsequence: `  ` both, `- ` only in
/// `a`, `+ ` only in `b`.
fn lcs_diff(a: &[String], b: &[String]) -> String {
    let (n, m) = (a.len(), b.len());
    let mut t = vec![vec![0usize; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            t[i][j] = if a[i] == b[j] {
                t[i + 1][j + 1] + 1
            } else {
                t[i + 1][j].max(t[i][j + 1])
            };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, String::new());
    while i < n || j < m {
        if i < n && j < m && a[i] == b[j] {
            out.push_str(&format!("    {}\n", a[i]));
            i += 1;
            j += 1;
        } else if j < m && (i == n || t[i][j + 1] >= t[i + 1][j]) {
            out.push_str(&format!("  + {}\n", b[j]));
            j += 1;
        } else {
            out.push_str(&format!("  - {}\n", a[i]));
            i += 1;
        }
    }
    out
}

/// The samples of one contender in one table row.
#[derive(Default, Clone)]
struct Row {
    who: String,
    samples: Vec<Sample>,
    note: String,
}

fn order<T: Clone>(round: usize, all: &[T]) -> Vec<T> {
    let mut v = all.to_vec();
    if !v.is_empty() {
        let k = round % v.len();
        v.rotate_left(k);
    }
    v
}

fn bench_single(env: &Env, sims: &Sims, p: &Procedure, opts: &Opts) -> Result<Vec<Row>> {
    let dir = env.prepare(p)?;
    let all = [Contender::Rota, Contender::Floor, Contender::Ansible];
    let mut rows: Vec<Row> = all
        .iter()
        .map(|c| Row {
            who: c.name().to_owned(),
            ..Row::default()
        })
        .collect();
    let mut reference: Option<Vec<String>> = None;
    for round in 0..opts.warmup + opts.runs {
        for who in order(round, &all) {
            if reference.is_none() && who != Contender::Rota {
                continue;
            }
            sims.reset()?;
            let out_dir = dir.join("out");
            if out_dir.exists() {
                fs::remove_dir_all(&out_dir).map_err(|e| e.to_string())?;
            }
            fs::create_dir_all(&out_dir).map_err(|e| e.to_string())?;
            let state = env.fresh_state(true)?;
            let mut cmd = match who {
                Contender::Rota => env.rota_single(p, &dir, &state),
                Contender::Floor => {
                    let mut c = Command::new(&env.floor);
                    c.arg(dir.join("job.json"));
                    c
                }
                Contender::Ansible => {
                    let mut c = env.ansible_cmd(&p.name, &dir);
                    c.args(["-i", "localhost,"]);
                    c
                }
            };
            let (sample, ok, out) = env.measure(who, &mut cmd, &dir)?;
            if !ok {
                return Err(format!("{} failed on {}:\n{out}", who.name(), p.name));
            }
            let calls = sims.requests()?;
            match &reference {
                None => {
                    write(&dir.join("calls.txt"), &(calls.join("\n") + "\n"))?;
                    reference = Some(calls);
                }
                Some(r) => same_calls(who.name(), r, &calls, true).map_err(|e| format!("{}: {e}", p.name))?,
            }
            if round >= opts.warmup
                && let Some(row) = rows.iter_mut().find(|r| r.who == who.name())
            {
                row.samples.push(sample);
            }
        }
    }
    // Runs skipped before the reference existed leave the first round short.
    if let Some(r) = &reference
        && let Some(row) = rows.first_mut()
    {
        row.note = format!("{} calls", r.len());
    }
    Ok(rows)
}

fn bench_scale(env: &Env, sims: &Sims, users: &[BenchUser], opts: &Opts) -> Result<Vec<Row>> {
    let n = users.len();
    let c = opts.concurrency.min(n).max(1);
    let dir = env.work.join(format!("scale-{n}"));
    fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let inputs = |u: &BenchUser| json!({"user": u.user, "api_key": u.api_key, "expiry": "12"});
    let entries: Vec<Value> = users.iter().map(inputs).collect();
    write(
        &dir.join("matrix.json"),
        &Value::Array(entries.clone()).to_string(),
    )?;
    let secrets: BTreeMap<String, String> = users
        .iter()
        .map(|u| (format!("constellix/{}/secret-key", u.user), u.secret_key.clone()))
        .collect();
    write_secret_file(
        &dir.join("secrets.json"),
        &json!({"secrets": secrets}).to_string(),
    )?;
    let out = dir.join("out");
    write(
        &dir.join("job.json"),
        &json!({
            "procedure": SCALE_PROCEDURE,
            "origins": env.sims_origins(),
            "targets": entries,
            "concurrency": c,
            "secrets_file": dir.join("secrets.json"),
            "out_dir": out,
        })
        .to_string(),
    )?;
    let hosts: Map<String, Value> = users
        .iter()
        .map(|u| (u.user.clone(), json!({"inputs": inputs(u)})))
        .collect();
    write(
        &dir.join("inventory.yml"),
        &json!({"all": {"hosts": hosts}}).to_string(),
    )?;
    write(
        &dir.join("vars.json"),
        &json!({
            "origins": env.sims_origins(),
            "out_dir": out,
            "ansible_connection": "local",
            "ansible_python_interpreter": env.ansible.with_file_name("python"),
        })
        .to_string(),
    )?;
    let with_ansible = n <= opts.ansible_max_n;
    let all: Vec<Contender> = if with_ansible {
        vec![Contender::Rota, Contender::Floor, Contender::Ansible]
    } else {
        vec![Contender::Rota, Contender::Floor]
    };
    let mut rows: Vec<Row> = all
        .iter()
        .map(|w| Row {
            who: w.name().to_owned(),
            ..Row::default()
        })
        .collect();
    let mut reference: Option<Vec<String>> = None;
    let runs = opts.scale_runs.max(1);
    let warmup = if n >= 100 { 0 } else { opts.warmup };
    for round in 0..warmup + runs {
        for who in order(round, &all) {
            if reference.is_none() && who != Contender::Rota {
                continue;
            }
            // At N >= 100 one Ansible run takes minutes: it runs once.
            if who == Contender::Ansible && n >= 100 && round > warmup {
                continue;
            }
            sims.reset()?;
            if out.exists() {
                fs::remove_dir_all(&out).map_err(|e| e.to_string())?;
            }
            fs::create_dir_all(&out).map_err(|e| e.to_string())?;
            let state = env.fresh_state_from(&env.template_scale, true)?;
            let mut cmd = match who {
                Contender::Rota => {
                    let mut cmd = env.rota_cmd(&state);
                    cmd.arg("run")
                        .arg(env.root.join(format!("playbooks/{SCALE_PROCEDURE}.yaml")))
                        .arg("--yes")
                        .arg("--matrix")
                        .arg(dir.join("matrix.json"))
                        .arg("--concurrency")
                        .arg(c.to_string());
                    cmd
                }
                Contender::Floor => {
                    let mut cmd = Command::new(&env.floor);
                    cmd.arg(dir.join("job.json"));
                    cmd
                }
                Contender::Ansible => {
                    let mut cmd = env.ansible_cmd(SCALE_PROCEDURE, &dir);
                    cmd.arg("-i")
                        .arg(dir.join("inventory.yml"))
                        .arg("-f")
                        .arg(c.to_string());
                    cmd
                }
            };
            let (sample, ok, text) = env.measure(who, &mut cmd, &dir)?;
            if !ok {
                let tail: Vec<&str> = text.lines().rev().take(40).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                return Err(format!("{} failed at N={n}:\n{}", who.name(), tail.join("\n")));
            }
            let calls = sims.requests()?;
            match &reference {
                None => reference = Some(calls),
                Some(r) => same_calls(who.name(), r, &calls, false).map_err(|e| format!("N={n}: {e}"))?,
            }
            if round >= warmup
                && let Some(row) = rows.iter_mut().find(|r| r.who == who.name())
            {
                row.samples.push(sample);
            }
        }
    }
    if with_ansible
        && n >= 100
        && let Some(row) = rows.iter_mut().find(|r| r.who == "Ansible")
    {
        row.note = "one run (minutes each at this N)".into();
    }
    if !with_ansible {
        rows.push(Row {
            who: "Ansible".into(),
            samples: Vec::new(),
            note: format!("not run: capped at N = {} (--ansible-max-n)", opts.ansible_max_n),
        });
    }
    if let Some(row) = rows.first_mut() {
        row.note = format!(
            "concurrency {c}; {} calls",
            reference.as_ref().map_or(0, Vec::len)
        );
    }
    Ok(rows)
}

/// One rota run of `p` under `perf record --call-graph dwarf` (on-CPU samples) and one
/// under `strace -f -c -w` (wall time per syscall, so the time rota waits
/// shows too), into `target/bench/`.
fn profile(env: &Env, sims: &Sims, p: &Procedure) -> Result<()> {
    let dir = env.prepare(p)?;
    let out = env.root.join("target/bench");
    for (tool, args) in [
        (
            "perf",
            vec![
                "record".to_owned(),
                "-F".to_owned(),
                "10000".to_owned(),
                "--call-graph".to_owned(),
                "dwarf,32768".to_owned(),
                "-o".to_owned(),
                out.join(format!("perf-{}.data", p.name)).display().to_string(),
                "--".to_owned(),
            ],
        ),
        (
            "strace",
            vec![
                "-f".to_owned(),
                "-c".to_owned(),
                "-w".to_owned(),
                "-o".to_owned(),
                out.join(format!("strace-{}.txt", p.name)).display().to_string(),
                "--".to_owned(),
            ],
        ),
    ] {
        let Some(bin) = which(tool) else {
            return Err(format!(
                "--profile needs {tool} (Debian: apt-get install linux-perf strace)"
            ));
        };
        sims.reset()?;
        let state = env.fresh_state(true)?;
        let rota = env.rota_single(p, &dir, &state);
        let mut cmd = Command::new(bin);
        cmd.args(&args)
            .arg(rota.get_program())
            .args(rota.get_args())
            .current_dir(&env.root);
        for (k, v) in rota.get_envs() {
            match v {
                Some(v) => cmd.env(k, v),
                None => cmd.env_remove(k),
            };
        }
        let (_, ok, text) = env.measure(Contender::Rota, &mut cmd, &dir)?;
        if !ok {
            return Err(format!("{tool} on rota run {} failed:\n{text}", p.name));
        }
        eprintln!(
            "bench: {tool} profile of rota run {} written to {}",
            p.name,
            out.display()
        );
    }
    Ok(())
}

struct Cold {
    rows: Vec<Row>,
}

fn bench_cold(env: &Env, sims: &Sims, p: &Procedure, opts: &Opts) -> Result<Cold> {
    let dir = env.prepare(p)?;
    let names = [
        "rota --version".to_owned(),
        "rota list".to_owned(),
        "rota validate playbooks/".to_owned(),
        format!("rota run {} (warm plugin cache)", p.name),
        format!("rota run {} (empty plugin cache)", p.name),
    ];
    let mut rows: Vec<Row> = names
        .iter()
        .map(|n| Row {
            who: n.clone(),
            ..Row::default()
        })
        .collect();
    let reference = fs::read_to_string(dir.join("calls.txt"))
        .ok()
        .map(|t| t.lines().map(str::to_owned).collect::<Vec<_>>());
    for round in 0..opts.warmup + opts.runs {
        for i in order(round, &[0usize, 1, 2, 3, 4]) {
            let state = env.fresh_state(i != 4)?;
            let mut cmd = env.rota_cmd(&state);
            match i {
                0 => {
                    cmd.arg("--version");
                }
                1 => {
                    cmd.arg("list");
                }
                2 => {
                    cmd.args(["validate", "playbooks/"]);
                }
                _ => {
                    sims.reset()?;
                    cmd = env.rota_single(p, &dir, &state);
                }
            }
            let (sample, ok, out) = env.measure(Contender::Rota, &mut cmd, &dir)?;
            if !ok {
                return Err(format!(
                    "{} failed:\n{out}",
                    names.get(i).map_or("rota", String::as_str)
                ));
            }
            if i >= 3
                && let Some(r) = &reference
            {
                same_calls("rota", r, &sims.requests()?, true)?;
            }
            if round >= opts.warmup
                && let Some(row) = rows.get_mut(i)
            {
                row.samples.push(sample);
            }
        }
    }
    Ok(Cold { rows })
}

// ---------------------------------------------------------------- report

#[derive(Default)]
struct Report {
    head: String,
    single: Vec<(String, Vec<Row>)>,
    scale: Vec<(usize, Vec<Row>)>,
    cold: Option<Cold>,
    foot: String,
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v.get(m).copied().unwrap_or(f64::NAN)
    } else {
        (v.get(m - 1).copied().unwrap_or(f64::NAN) + v.get(m).copied().unwrap_or(f64::NAN)) / 2.0
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn fmt_ms(x: f64) -> String {
    if x.is_nan() {
        "-".into()
    } else if x >= 10_000.0 {
        format!("{:.1} s", x / 1000.0)
    } else if x >= 1000.0 {
        format!("{:.2} s", x / 1000.0)
    } else if x >= 100.0 {
        format!("{x:.0} ms")
    } else {
        format!("{x:.1} ms")
    }
}

impl Row {
    fn walls(&self) -> Vec<f64> {
        self.samples.iter().map(|s| ms(s.wall)).collect()
    }
    fn wall(&self) -> f64 {
        median(self.walls())
    }
    fn wall_range(&self) -> String {
        let w = self.walls();
        if w.is_empty() {
            return "-".into();
        }
        let lo = w.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = w.iter().copied().fold(0.0, f64::max);
        format!("{} ({}-{})", fmt_ms(median(w)), fmt_ms(lo), fmt_ms(hi))
    }
    fn cpu(&self) -> f64 {
        median(self.samples.iter().map(|s| ms(s.cpu)).collect())
    }
    fn rss_mib(&self) -> f64 {
        median(self.samples.iter().map(|s| s.rss_kib as f64 / 1024.0).collect())
    }
    fn rss_max_mib(&self) -> f64 {
        self.samples
            .iter()
            .map(|s| s.rss_kib as f64 / 1024.0)
            .fold(f64::NAN, f64::max)
    }
}

fn ratio(a: f64, b: f64) -> String {
    if a.is_nan() || b.is_nan() || b == 0.0 {
        "-".into()
    } else if a / b < 0.1 {
        format!("{:.4}", a / b)
    } else {
        format!("{:.2}", a / b)
    }
}

fn mib(x: f64) -> String {
    if x.is_nan() {
        "-".into()
    } else {
        format!("{x:.1} MiB")
    }
}

impl Report {
    fn header(&mut self, opts: &Opts, bins: &Bins, load: String, args: &[String]) {
        let cpu = fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|t| {
                t.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, m)| m.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown CPU".into());
        let cores = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
        let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        let date = Command::new("date")
            .args(["-u", "+%Y-%m-%d %H:%M UTC"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default();
        self.head = format!(
            "## End-to-end benchmark, {date}\n\n\
             Command: `cargo xtask bench e2e {}`{}\n\n\
             Machine: {cores} cores ({cpu}), Linux {}; {} binaries; load average at start {load}.\n\
             Medians of {} timed runs after {} warm-up run(s) per contender (scale: {} runs), \
             contenders alternating run by run; wall clock per process, user+sys CPU and \
             peak RSS from wait4 (descendants included). Every run's vendor calls were \
             checked against rota's.\n\n",
            args.join(" "),
            if opts.smoke {
                " (smoke: one run, numbers not meaningful)"
            } else {
                ""
            },
            kernel.trim(),
            bins.profile,
            opts.runs,
            opts.warmup,
            opts.scale_runs
        );
    }

    fn footer(&mut self, load: String, took: Duration) {
        self.foot = format!(
            "Load average at the end: {load}; the whole bench took {:.0} s.\n",
            took.as_secs_f64()
        );
    }

    fn render(&self) -> String {
        let mut s = self.head.clone();
        if !self.single.is_empty() {
            s.push_str("### Single procedure\n\n| procedure | contender | wall median (min-max) | user+sys CPU | peak RSS | note |\n|---|---|---|---|---|---|\n");
            for (name, rows) in &self.single {
                for r in rows {
                    s.push_str(&format!(
                        "| {name} | {} | {} | {} | {} | {} |\n",
                        r.who,
                        r.wall_range(),
                        fmt_ms(r.cpu()),
                        mib(r.rss_mib()),
                        r.note
                    ));
                }
            }
            s.push_str("\n| procedure | rota/Ansible wall (target <= 0.01) | rota/floor wall (target <= 2) | rota/floor CPU |\n|---|---|---|---|\n");
            for (name, rows) in &self.single {
                let get = |w: &str| rows.iter().find(|r| r.who == w);
                let (r, f, a) = (get("rota"), get("floor"), get("Ansible"));
                let w = |x: Option<&Row>| x.map_or(f64::NAN, Row::wall);
                let c = |x: Option<&Row>| x.map_or(f64::NAN, Row::cpu);
                s.push_str(&format!(
                    "| {name} | {} | {} | {} |\n",
                    ratio(w(r), w(a)),
                    ratio(w(r), w(f)),
                    ratio(c(r), c(f))
                ));
            }
            s.push('\n');
        }
        if !self.scale.is_empty() {
            s.push_str(&format!(
                "### Scale: {SCALE_PROCEDURE} for N independent Constellix users\n\n\
                 rota: one process, `--matrix` of N entries; floor: the same concurrency; \
                 Ansible: one host per user, `forks` = the concurrency.\n\n\
                 | N | contender | wall median (min-max) | targets/s | user+sys CPU | peak RSS | note |\n|---|---|---|---|---|---|---|\n"
            ));
            for (n, rows) in &self.scale {
                for r in rows {
                    let tput = *n as f64 / (r.wall() / 1000.0);
                    s.push_str(&format!(
                        "| {n} | {} | {} | {} | {} | {} | {} |\n",
                        r.who,
                        r.wall_range(),
                        if tput.is_nan() {
                            "-".into()
                        } else {
                            format!("{tput:.1}")
                        },
                        fmt_ms(r.cpu()),
                        mib(r.rss_mib()),
                        r.note
                    ));
                }
            }
            s.push_str("\n| N | floor/rota throughput (target <= 2 at N = 1000) | rota/Ansible wall | rota peak RSS (target < 200 MiB) |\n|---|---|---|---|\n");
            for (n, rows) in &self.scale {
                let get = |w: &str| rows.iter().find(|r| r.who == w);
                let w = |x: Option<&Row>| x.map_or(f64::NAN, Row::wall);
                s.push_str(&format!(
                    "| {n} | {} | {} | {} |\n",
                    ratio(w(get("rota")), w(get("floor"))),
                    ratio(w(get("rota")), w(get("Ansible"))),
                    mib(get("rota").map_or(f64::NAN, Row::rss_max_mib))
                ));
            }
            s.push('\n');
        }
        if let Some(cold) = &self.cold {
            s.push_str("### Cold start\n\n| command | wall median (min-max) | user+sys CPU | peak RSS |\n|---|---|---|---|\n");
            for r in &cold.rows {
                s.push_str(&format!(
                    "| `{}` | {} | {} | {} |\n",
                    r.who,
                    r.wall_range(),
                    fmt_ms(r.cpu()),
                    mib(r.rss_mib())
                ));
            }
            s.push_str("\nTarget: `rota validate playbooks/` under 20 ms with a warm cache.\n\n");
        }
        s.push_str(&self.foot);
        s
    }

    /// The targets this run missed, in words.
    fn missed(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (name, rows) in &self.single {
            let w = |who: &str| rows.iter().find(|r| r.who == who).map_or(f64::NAN, Row::wall);
            let (r, f, a) = (w("rota"), w("floor"), w("Ansible"));
            if r / a > 0.01 {
                out.push(format!("{name}: rota/Ansible {}", ratio(r, a)));
            }
            if r / f > 2.0 {
                out.push(format!("{name}: rota/floor {}", ratio(r, f)));
            }
        }
        for (n, rows) in &self.scale {
            let get = |who: &str| rows.iter().find(|r| r.who == who);
            if *n == 1000 {
                let (r, f) = (
                    get("rota").map_or(f64::NAN, Row::wall),
                    get("floor").map_or(f64::NAN, Row::wall),
                );
                if r / f > 2.0 {
                    out.push(format!("N=1000: floor/rota throughput {}", ratio(r, f)));
                }
                let rss = get("rota").map_or(f64::NAN, Row::rss_max_mib);
                if rss >= 200.0 {
                    out.push(format!("N=1000: rota peak RSS {}", mib(rss)));
                }
            }
        }
        if let Some(c) = &self.cold
            && let Some(v) = c.rows.get(2)
            && v.wall() >= 20.0
        {
            out.push(format!("rota validate {}", fmt_ms(v.wall())));
        }
        out
    }
}

fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|t| t.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "unknown".into())
}

// ---------------------------------------------------------------- files

fn write(path: &Path, text: &str) -> Result<()> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    }
    fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// A file only its owner can read, created that way (never widened later).
fn write_secret_file(path: &Path, text: &str) -> Result<()> {
    let _ = fs::remove_file(path);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    f.write_all(text.as_bytes())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Copies a directory tree, keeping permissions (the state dir's 0600/0700).
fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    fs::create_dir_all(to).map_err(|e| format!("cannot create {}: {e}", to.display()))?;
    let meta = fs::metadata(from).map_err(|e| format!("{}: {e}", from.display()))?;
    fs::set_permissions(to, meta.permissions()).map_err(|e| e.to_string())?;
    for entry in fs::read_dir(from).map_err(|e| format!("{}: {e}", from.display()))? {
        let entry = entry.map_err(|e| e.to_string())?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        if entry.file_type().map_err(|e| e.to_string())?.is_dir() {
            copy_dir(&src, &dst)?;
        } else {
            fs::copy(&src, &dst).map_err(|e| format!("copy {}: {e}", src.display()))?;
        }
    }
    Ok(())
}
