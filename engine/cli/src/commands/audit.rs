//! `rota audit verify|export`.

use rota_state::render;

use crate::cli::AuditCmd;
use crate::commands::{open_state, state_error};
use crate::exit::{self, Exit};

pub struct Audit {
    pub cmd: AuditCmd,
}

impl Audit {
    pub fn execute(self) -> anyhow::Result<i32> {
        let state = open_state()?;
        match self.cmd {
            AuditCmd::Verify => {
                let report = state
                    .audit_verify()
                    .map_err(|e| state_error("cannot verify the audit log", e))?;
                print!("{}", render::audit_report(&report));
                if !report.is_ok() {
                    return Err(Exit {
                        code: exit::RUN_FAILED,
                        message: "error: the audit log has been tampered with (see above)".to_owned(),
                    }
                    .into());
                }
            }
            AuditCmd::Export { out } => {
                let n = match out {
                    Some(path) => {
                        let mut file = std::fs::File::create(&path)?;
                        state.audit_export_jsonl(&mut file)
                    }
                    None => state.audit_export_jsonl(&mut std::io::stdout().lock()),
                }
                .map_err(|e| state_error("cannot export the audit log", e))?;
                eprintln!("{n} audit entries");
            }
        }
        Ok(exit::OK)
    }
}
