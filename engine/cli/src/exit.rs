//! Exit codes, documented in `rota --help` and docs/playbooks.md.
//!
//! Design decision: an error carries its exit code as an [`Exit`] value in
//! its anyhow chain; anything without one is an environment problem (4).

use std::fmt;

/// The run finished and every step succeeded (or was skipped/recovered).
pub const OK: i32 = 0;
/// The run failed: a step failed (compensation and `finally` ran).
pub const RUN_FAILED: i32 = 1;
/// Bad usage: invalid playbook, unknown playbook, bad inputs or flags.
pub const USAGE: i32 = 2;
/// The operator answered no to a confirmation; the run stopped.
pub const DECLINED: i32 = 3;
/// rota could not do its work: I/O, state, configuration.
pub const ENVIRONMENT: i32 = 4;
/// Another run holds a credential lock this run needs (with --no-wait).
pub const LOCKED: i32 = 5;

pub const HELP: &str = "Exit codes: 0 ok, 1 run failed, 2 usage or validation error, 3 declined by the operator, 4 environment error (I/O, state, config), 5 a credential is locked by another run.";

/// An error with an exit code. Its message is already complete.
#[derive(Debug)]
pub struct Exit {
    pub code: i32,
    pub message: String,
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Exit {}

pub fn usage(message: impl Into<String>) -> anyhow::Error {
    Exit {
        code: USAGE,
        message: message.into(),
    }
    .into()
}

/// An environment error (exit 4): I/O, state, configuration.
pub fn environment(message: impl Into<String>) -> anyhow::Error {
    Exit {
        code: ENVIRONMENT,
        message: message.into(),
    }
    .into()
}

pub fn code_of(e: &anyhow::Error) -> i32 {
    e.chain()
        .find_map(|c| c.downcast_ref::<Exit>().map(|x| x.code))
        .unwrap_or(ENVIRONMENT)
}

/// The error chain, printed once. Diagnostics are already formatted with
/// their source line and caret.
pub fn render(e: &anyhow::Error) -> String {
    if let Some(exit) = e.downcast_ref::<Exit>() {
        let msg = exit.message.trim_end();
        return if msg.starts_with("error") {
            msg.to_owned()
        } else {
            format!("error: {msg}")
        };
    }
    let mut out = format!("error: {e}");
    for cause in e.chain().skip(1) {
        out.push_str(&format!("\n  caused by: {cause}"));
    }
    out
}
