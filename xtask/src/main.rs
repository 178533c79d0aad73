//! `cargo xtask <command>`: the single entry point for the set-up commands
//! and CI. Every command installs the `wasm32-wasip2` target first when it is
//! missing, so a fresh machine with only rustup and cargo needs nothing else.
//!
//! - `demo`: rehearses the Plex secret reset end to end against the bundled
//!   simulators (the README's first command)
//! - `test`: the whole test suite (the README's second command; `.ci/run`)
//! - `lint`: rustfmt and clippy `-D warnings`, host and plugins
//! - `plugins`: builds the plugins workspace for wasm32-wasip2
//! - `bench`: the criterion benchmarks; `bench e2e`: rota side by side with
//!   Ansible and a raw Rust floor, whole processes against the simulators
//!   (`bench.rs`)
//! - `crash-matrix`: every crash point of every playbook, resumed; a table

mod bench;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

const WASM_TARGET: &str = "wasm32-wasip2";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let shown = format!("{cmd:?}");
    eprintln!("xtask: {shown}");
    let status = cmd
        .current_dir(root())
        .status()
        .map_err(|e| format!("cannot start {shown}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{shown} failed ({status})"))
    }
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned()))
}

/// Installs the plugin target with rustup when it is missing.
fn ensure_wasm_target() -> Result<(), String> {
    let out = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map_err(|e| format!("rustup is needed to install the {WASM_TARGET} target: {e}"))?;
    if String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|l| l.trim() == WASM_TARGET)
    {
        return Ok(());
    }
    run(Command::new("rustup").args(["target", "add", WASM_TARGET]))
}

fn plugins_manifest() -> Option<PathBuf> {
    let p = root().join("plugins/Cargo.toml");
    p.is_file().then_some(p)
}

fn demo(extra: &[String]) -> Result<(), String> {
    ensure_wasm_target()?;
    let mut cmd = cargo();
    cmd.args([
        "run",
        "--quiet",
        "--package",
        "rota",
        "--",
        "run",
        "plex-api-key-reset",
        "--rehearse",
        "--yes",
    ])
    .args(extra);
    run(&mut cmd)
}

fn test(extra: &[String]) -> Result<(), String> {
    ensure_wasm_target()?;
    // crash-points compiles in the deterministic aborts the resume tests use.
    run(cargo()
        .args([
            "test",
            "--workspace",
            "--locked",
            "--features",
            "rota/crash-points",
        ])
        .args(extra))?;
    if let Some(manifest) = plugins_manifest() {
        // The SDK's own unit tests run on the host.
        let m = manifest.to_string_lossy().into_owned();
        if root().join("plugins/sdk/Cargo.toml").is_file() {
            run(cargo().args([
                "test",
                "--manifest-path",
                &m,
                "--package",
                "rota-plugin-sdk",
                "--locked",
            ]))?;
        }
    }
    Ok(())
}

fn lint() -> Result<(), String> {
    ensure_wasm_target()?;
    run(cargo().args(["fmt", "--all", "--check"]))?;
    run(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--locked",
        "--",
        "-D",
        "warnings",
    ]))?;
    if let Some(manifest) = plugins_manifest() {
        let m = manifest.to_string_lossy().into_owned();
        run(cargo().args(["fmt", "--manifest-path", &m, "--all", "--check"]))?;
        run(cargo()
            .args([
                "clippy",
                "--manifest-path",
                &m,
                "--workspace",
                "--target",
                WASM_TARGET,
                "--locked",
            ])
            .args(["--", "-D", "warnings"]))?;
    }
    Ok(())
}

fn plugins() -> Result<(), String> {
    ensure_wasm_target()?;
    let manifest = plugins_manifest().ok_or("there is no plugins/Cargo.toml yet")?;
    let m = manifest.to_string_lossy().into_owned();
    run(cargo().args([
        "build",
        "--manifest-path",
        &m,
        "--workspace",
        "--target",
        WASM_TARGET,
        "--release",
    ]))
}

fn bench(extra: &[String]) -> Result<(), String> {
    ensure_wasm_target()?;
    run(cargo().args(["bench", "--workspace"]).args(extra))
}

/// Runs the e2e crash tests with `ROTA_CRASH_MATRIX=full` (every step
/// boundary and every phase of every playbook, where CI runs a subset) and
/// prints their `crash-matrix:` lines as one table.
fn crash_matrix(extra: &[String]) -> Result<(), String> {
    ensure_wasm_target()?;
    let mut cmd = cargo();
    cmd.args([
        "test",
        "--locked",
        "--package",
        "rota",
        "--features",
        "rota/crash-points",
        "--test",
        "e2e",
        "crash",
    ])
    .args(extra)
    .args(["--", "--nocapture", "--test-threads", "1"])
    .env("ROTA_CRASH_MATRIX", "full")
    .current_dir(root())
    .stderr(std::process::Stdio::inherit());
    eprintln!("xtask: {cmd:?}");
    let out = cmd.output().map_err(|e| format!("cannot run cargo test: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let rows: Vec<(String, String, String)> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("crash-matrix: "))
        .map(|l| {
            let field = |k: &str| {
                l.split_once(&format!("{k}="))
                    .map(|(_, rest)| {
                        if k == "result" {
                            rest.to_owned()
                        } else {
                            rest.split_whitespace().next().unwrap_or_default().to_owned()
                        }
                    })
                    .unwrap_or_default()
            };
            (field("playbook"), field("point"), field("result"))
        })
        .collect();
    let w0 = rows.iter().map(|r| r.0.len()).max().unwrap_or(8).max(8);
    let w1 = rows.iter().map(|r| r.1.len()).max().unwrap_or(5).max(5);
    println!("{:<w0$}  {:<w1$}  result", "playbook", "point");
    for (p, point, result) in &rows {
        println!("{p:<w0$}  {point:<w1$}  {result}");
    }
    let failed = rows.iter().filter(|r| r.2 != "ok").count();
    println!(
        "{} points, {} ok, {failed} failed",
        rows.len(),
        rows.len() - failed
    );
    if !out.status.success() {
        return Err(format!("the crash tests failed ({})", out.status));
    }
    if rows.is_empty() {
        return Err("no crash-matrix lines were printed: no crash tests ran".to_owned());
    }
    if failed > 0 {
        return Err(format!("{failed} crash points failed"));
    }
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (cmd, rest) = match args.split_first() {
        Some((c, r)) => (c.as_str(), r),
        None => ("help", &[][..]),
    };
    let result = match cmd {
        "demo" => demo(rest),
        "test" => test(rest),
        "lint" => lint(),
        "ci" => test(rest).and_then(|()| lint()),
        "plugins" => plugins(),
        "bench" => match rest.split_first() {
            Some((e2e, more)) if e2e == "e2e" => bench::e2e(&root(), more),
            _ => bench(rest),
        },
        "crash-matrix" => crash_matrix(rest),
        _ => {
            eprintln!("usage: cargo xtask <demo|test|lint|ci|plugins|bench|crash-matrix> [args]");
            return if cmd == "help" {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            };
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}
