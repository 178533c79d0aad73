//! `rota inventory [--due 30d]`: keys rota created or saw, and their expiry.

use rota_state::{parse_due, render};

use crate::cli::{InventoryArgs, Output};
use crate::commands::{open_state, state_error};
use crate::exit;

pub struct Inventory {
    pub args: InventoryArgs,
}

impl Inventory {
    pub fn execute(self) -> anyhow::Result<i32> {
        let state = open_state()?;
        let creds = match &self.args.due {
            Some(d) => {
                let within = parse_due(d).map_err(|e| exit::usage(format!("error: --due: {e}")))?;
                state.inventory_due(within)
            }
            None => state.inventory_list(),
        }
        .map_err(|e| state_error("cannot read the inventory", e))?;
        if self.args.output == Output::Json {
            println!("{}", serde_json::to_string_pretty(&creds)?);
        } else if creds.is_empty() {
            println!(
                "no credentials{}",
                if self.args.due.is_some() { " due" } else { "" }
            );
        } else {
            print!("{}", render::inventory(&creds, time::OffsetDateTime::now_utc()));
        }
        Ok(exit::OK)
    }
}
