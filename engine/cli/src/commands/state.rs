//! `rota state backup|check`.

use rota_state::render;

use crate::cli::StateCmd as Cmd;
use crate::commands::{open_state, state_error};
use crate::exit;

pub struct StateCmd {
    pub cmd: Cmd,
}

impl StateCmd {
    pub fn execute(self) -> anyhow::Result<i32> {
        let state = open_state()?;
        match self.cmd {
            Cmd::Backup { file } => {
                state.backup(&file).map_err(|e| state_error("backup failed", e))?;
                println!(
                    "backed up {} to {}; keep the identity ({}) safe separately",
                    state.db_path().display(),
                    file.display(),
                    state.config().identity.path.display()
                );
            }
            Cmd::Check => {
                let report = state
                    .check()
                    .map_err(|e| state_error("cannot check the state", e))?;
                print!("{}", render::check_report(&report));
                if !report.is_ok() {
                    return Err(exit::environment(
                        "error: the state has damage (see above)".to_owned(),
                    ));
                }
            }
        }
        Ok(exit::OK)
    }
}
