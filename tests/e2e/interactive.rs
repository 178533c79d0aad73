//! A person at a terminal: the real binary under a pseudo-terminal, answering
//! confirmations and typing a secret that must never be echoed.

use std::process::Command;
use std::time::Duration;

use expectrl::{Eof, Session, WaitStatus};

use crate::test::{ROTA, Test};

struct Pty {
    session: Session,
    seen: String,
}

impl Pty {
    fn spawn(test: &Test, args: &[&str]) -> Self {
        let mut cmd = Command::new(ROTA);
        cmd.args(args)
            .current_dir(test.path())
            .env("RUST_BACKTRACE", "0")
            .env_remove("RUST_LOG")
            .env("TERM", "dumb")
            .env("ROTA_STATE_DIR", test.state_dir())
            .env_remove("ROTA_CONFIG")
            .env("XDG_CONFIG_HOME", test.path().join(".config"));
        let mut session = Session::spawn(cmd).expect("spawn rota in a pty");
        session.set_expect_timeout(Some(Duration::from_secs(30)));
        Self {
            session,
            seen: String::new(),
        }
    }

    fn expect(&mut self, text: &str) {
        let found = self
            .session
            .expect(text)
            .unwrap_or_else(|e| panic!("waiting for {text:?}: {e}\nseen so far:\n{}", self.seen));
        self.seen.push_str(&String::from_utf8_lossy(found.before()));
        for m in found.matches() {
            self.seen.push_str(&String::from_utf8_lossy(m));
        }
    }

    fn type_line(&mut self, line: &str) {
        self.session.send_line(line).expect("type into the pty");
    }

    /// Reads to the end and returns the exit code.
    fn finish(mut self) -> (i32, String) {
        match self.session.expect(Eof) {
            Ok(rest) => {
                self.seen.push_str(&String::from_utf8_lossy(rest.before()));
                for m in rest.matches() {
                    self.seen.push_str(&String::from_utf8_lossy(m));
                }
            }
            Err(e) => self.seen.push_str(&format!("\n<pty read ended: {e}>")),
        }
        let code = match self.session.get_process().wait() {
            Ok(WaitStatus::Exited(_, code)) => code,
            other => panic!("rota did not exit normally: {other:?}"),
        };
        (code, self.seen)
    }
}

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
