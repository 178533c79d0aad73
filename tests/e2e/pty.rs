//! A person at a terminal for e2e tests: the real binary under a
//! pseudo-terminal (`TERM=dumb`), reading what it shows and typing answers.

use std::process::Command;
use std::time::Duration;

use expectrl::{Eof, Session, WaitStatus};

use crate::test::{ROTA, Test};

pub struct Pty {
    session: Session,
    seen: String,
}

impl Pty {
    pub fn spawn(test: &Test, args: &[&str]) -> Self {
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

    /// Waits for `text` (30 s at most), keeping what was shown.
    pub fn expect(&mut self, text: &str) {
        let found = self
            .session
            .expect(text)
            .unwrap_or_else(|e| panic!("waiting for {text:?}: {e}\nseen so far:\n{}", self.seen));
        self.seen.push_str(&String::from_utf8_lossy(found.before()));
        for m in found.matches() {
            self.seen.push_str(&String::from_utf8_lossy(m));
        }
    }

    pub fn type_line(&mut self, line: &str) {
        self.session.send_line(line).expect("type into the pty");
    }

    /// Reads to the end and returns the exit code.
    pub fn finish(mut self) -> (i32, String) {
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
