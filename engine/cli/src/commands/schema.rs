//! `rota schema`: the JSON Schema of the playbook format, from the same types
//! the parser uses.

use crate::exit;

pub struct Schema;

impl Schema {
    pub fn execute(self) -> anyhow::Result<i32> {
        println!(
            "{}",
            serde_json::to_string_pretty(&rota_core::playbook::json_schema())?
        );
        Ok(exit::OK)
    }
}
