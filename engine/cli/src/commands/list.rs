//! `rota list`: the playbooks on the search path.

use rota_core::load::load_file;

use crate::cli::{Output, OutputArgs};
use crate::commands::Env;
use crate::discover;
use crate::exit;

pub struct List {
    pub args: OutputArgs,
}

impl List {
    pub fn execute(self) -> anyhow::Result<i32> {
        let env = Env::load()?;
        let mut rows = Vec::new();
        for file in discover::all_files() {
            let row = match load_file(&file, env.catalog.as_ref()) {
                Ok(l) => serde_json::json!({
                    "name": l.playbook.name,
                    "description": l.playbook.description.lines().next().unwrap_or_default(),
                    "path": file,
                    "valid": true,
                }),
                Err(d) => serde_json::json!({
                    "name": file.file_stem().map(|s| s.to_string_lossy().into_owned()),
                    "description": d.items.first().map(|x| format!("invalid: {x}")),
                    "path": file,
                    "valid": false,
                }),
            };
            rows.push(row);
        }
        if self.args.output == Output::Json {
            println!("{}", serde_json::to_string_pretty(&rows)?);
            return Ok(exit::OK);
        }
        if rows.is_empty() {
            let dirs: Vec<String> = discover::search_path()
                .iter()
                .map(|d| d.display().to_string())
                .collect();
            println!("no playbooks found in {}", dirs.join(", "));
            return Ok(exit::OK);
        }
        let width = rows
            .iter()
            .filter_map(|r| r["name"].as_str())
            .map(str::len)
            .max()
            .unwrap_or(0);
        for r in &rows {
            println!(
                "{:<width$}  {}",
                r["name"].as_str().unwrap_or_default(),
                r["description"].as_str().unwrap_or_default()
            );
        }
        Ok(exit::OK)
    }
}
