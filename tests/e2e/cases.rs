//! Case folders: `tests/cases/<group>/<name>/` hold a playbook (and any
//! other files), an optional `cmd` (arguments; default `validate
//! playbook.yaml`), and the golden `stdout`, `stderr` and `status`.
//! `BLESS=1 cargo test` rewrites the golden files from what rota printed.

use std::path::{Path, PathBuf};

use crate::test::{Test, repo};

fn case_dirs(group: &str) -> Vec<PathBuf> {
    let root = repo().join("tests/cases").join(group);
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .expect("tests/cases group exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}

fn read(p: &Path) -> Option<String> {
    std::fs::read_to_string(p).ok()
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).expect("read case dir").flatten() {
        let p = entry.path();
        let name = entry.file_name();
        let n = name.to_string_lossy();
        if p.is_file() && !matches!(n.as_ref(), "cmd" | "stdout" | "stderr" | "status") {
            std::fs::copy(&p, to.join(&name)).expect("copy case file");
        }
    }
}

/// Runs every case of a group; returns the failures (all of them, so one run
/// shows every broken case).
fn run_group(group: &str) -> usize {
    let bless = std::env::var_os("BLESS").is_some();
    let mut failures = Vec::new();
    let dirs = case_dirs(group);
    // Durations vary from run to run; the golden files keep their place.
    let durations = regex::Regex::new(r#""duration":[0-9.]+"#).expect("a valid regex");
    for dir in &dirs {
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let cmd = read(&dir.join("cmd")).unwrap_or_else(|| "validate playbook.yaml".to_owned());
        let args: Vec<&str> = cmd.split_whitespace().collect();
        let test = Test::new().args(&args);
        copy_dir(dir, test.path());
        let mut out = test.run();
        out.stdout = durations
            .replace_all(&out.stdout, r#""duration":"<d>""#)
            .into_owned();
        let status = out.status.to_string();
        if bless {
            std::fs::write(dir.join("stdout"), &out.stdout).expect("bless stdout");
            std::fs::write(dir.join("stderr"), &out.stderr).expect("bless stderr");
            std::fs::write(dir.join("status"), format!("{status}\n")).expect("bless status");
            continue;
        }
        let want_status = read(&dir.join("status")).unwrap_or_default();
        let want_stdout = read(&dir.join("stdout")).unwrap_or_default();
        let want_stderr = read(&dir.join("stderr")).unwrap_or_default();
        if want_status.trim() != status || want_stdout != out.stdout || want_stderr != out.stderr {
            failures.push(format!(
                "case {group}/{name}: rota {cmd}\n  status: want {} got {status}\n--- want stdout ---\n{want_stdout}--- got stdout ---\n{}--- want stderr ---\n{want_stderr}--- got stderr ---\n{}",
                want_status.trim(),
                out.stdout,
                out.stderr
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} case(s) differ (BLESS=1 rewrites):\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    dirs.len()
}

#[test]
fn invalid_playbooks_report_file_line_column_and_what_was_expected() {
    let n = run_group("invalid");
    assert!(n >= 30, "the issue asks for at least 30 invalid cases, found {n}");
}

#[test]
fn run_cases_print_exactly_their_golden_output() {
    run_group("run");
}

#[test]
fn every_invalid_case_exits_2_and_names_its_position() {
    for dir in case_dirs("invalid") {
        let status = read(&dir.join("status")).unwrap_or_default();
        assert_eq!(status.trim(), "2", "{}", dir.display());
        let stderr = read(&dir.join("stderr")).unwrap_or_default();
        assert!(
            stderr.starts_with("error: playbook.yaml:")
                || stderr.starts_with("error: playbook.yaml: file is"),
            "{}: {stderr}",
            dir.display()
        );
    }
}
