//! A person at a terminal: the real binary under a pseudo-terminal, answering
//! confirmations and typing a secret that must never be echoed.

use crate::pty::Pty;
use crate::test::Test;

const CONFIRM: &str = "name: t\ndescription: t\nsteps:\n  - id: delete\n    confirm: \"Delete secret 8a1f (created 2024-01-01, valid until 2025-01-01)?\"\n    uses: core.log\n    with: {message: deleted 8a1f}\n";

#[test]
fn confirm_answered_yes_at_the_terminal_runs_the_step() {
    let t = Test::new().file("playbook.yaml", CONFIRM);
    let mut pty = Pty::spawn(&t, &["run", "playbook.yaml", "--run-id", "t1"]);
    pty.expect("Delete secret 8a1f (created 2024-01-01, valid until 2025-01-01)? [y/N]");
    pty.type_line("y");
    let (code, seen) = pty.finish();
    assert_eq!(code, 0, "code {code}: {seen}");
    assert!(seen.contains("deleted 8a1f"), "{seen}");
    assert!(seen.contains("run t1 succeeded"), "{seen}");
}

#[test]
fn confirm_answered_no_stops_the_run_with_exit_3() {
    let t = Test::new().file("playbook.yaml", CONFIRM);
    let mut pty = Pty::spawn(&t, &["run", "playbook.yaml", "--run-id", "t1"]);
    pty.expect("[y/N]");
    pty.type_line("n");
    let (code, seen) = pty.finish();
    assert_eq!(code, 3, "{seen}");
    assert!(!seen.contains("deleted 8a1f"), "{seen}");
    assert!(seen.contains("run t1 stopped: the operator declined"), "{seen}");
}

#[test]
fn yes_flag_skips_the_question_at_a_terminal() {
    let t = Test::new().file("playbook.yaml", CONFIRM);
    let pty = Pty::spawn(&t, &["run", "playbook.yaml", "--run-id", "t1", "--yes"]);
    let (code, seen) = pty.finish();
    assert_eq!(code, 0, "{seen}");
    assert!(!seen.contains("[y/N]"), "{seen}");
    assert!(seen.contains("confirmed by --yes"), "{seen}");
}

#[test]
fn manual_step_shows_instructions_and_reads_the_secret_without_echo() {
    const SECRET: &str = "pty-typed-secret-4f9a";
    let t = Test::new().file(
        "playbook.yaml",
        "name: t\ndescription: t\nsecrets:\n  new: {name: demo/new}\nsteps:\n  - id: add\n    manual:\n      instructions: |\n        Click Add.\n        Copy the New Secret: it is shown only once.\n      outputs:\n        id: {prompt: Secret ID, pattern: \"[0-9a-f]{4}\"}\n        secret: {prompt: New secret, type: secret, secret: new}\n  - id: done\n    uses: core.log\n    with: {message: \"stored {{steps.add.outputs.id}}\"}\n",
    );
    let mut pty = Pty::spawn(&t, &["run", "playbook.yaml", "--run-id", "t1"]);
    pty.expect("Copy the New Secret: it is shown only once.");
    pty.expect("Secret ID:");
    pty.type_line("zz");
    pty.expect("does not match");
    pty.type_line("c93e");
    pty.expect("New secret (input hidden):");
    pty.type_line(SECRET);
    let (code, seen) = pty.finish();
    assert_eq!(code, 0, "{seen}");
    assert!(seen.contains("stored c93e"), "{seen}");
    assert!(!seen.contains(SECRET), "the typed secret was echoed:\n{seen}");
}
