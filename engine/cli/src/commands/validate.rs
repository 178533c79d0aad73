//! `rota validate`: parse and check playbooks; never starts a plugin.

use std::path::PathBuf;

use rota_core::load::load_file;

use crate::cli::{Output, ValidateArgs};
use crate::commands::Env;
use crate::discover;
use crate::exit::{self, Exit};

pub struct Validate {
    pub args: ValidateArgs,
}

impl Validate {
    pub fn execute(self) -> anyhow::Result<i32> {
        let env = Env::load()?;
        let files = self.files()?;
        if files.is_empty() {
            if self.args.paths.is_empty() {
                return Err(exit::usage(
                    "error: no playbooks to validate (none on the search path)",
                ));
            }
            let shown: Vec<String> = self.args.paths.iter().map(|p| p.display().to_string()).collect();
            println!("no playbooks in {}", shown.join(", "));
            return Ok(exit::OK);
        }
        let mut failed = 0;
        let mut results = Vec::new();
        for file in &files {
            match load_file(file, env.catalog.as_ref()) {
                Ok(loaded) => {
                    if self.args.output == Output::Text {
                        println!("ok      {} ({})", file.display(), loaded.playbook.name);
                    }
                    results
                        .push(serde_json::json!({"file": file, "valid": true, "name": loaded.playbook.name}));
                }
                Err(d) => {
                    failed += 1;
                    if self.args.output == Output::Text {
                        println!("invalid {}", file.display());
                        eprintln!("{}", d.render());
                    }
                    results.push(serde_json::json!({"file": file, "valid": false, "errors": d.items}));
                }
            }
        }
        if self.args.output == Output::Json {
            println!("{}", serde_json::to_string_pretty(&results)?);
        }
        if failed > 0 {
            return Err(Exit {
                code: exit::USAGE,
                message: format!("error: {failed} of {} playbooks are invalid", files.len()),
            }
            .into());
        }
        if self.args.output == Output::Text {
            println!(
                "{} playbook{} valid",
                files.len(),
                if files.len() == 1 { "" } else { "s" }
            );
        }
        Ok(exit::OK)
    }

    fn files(&self) -> anyhow::Result<Vec<PathBuf>> {
        if self.args.paths.is_empty() {
            return Ok(discover::all_files());
        }
        let mut out = Vec::new();
        for p in &self.args.paths {
            if p.is_dir() {
                out.extend(
                    discover::files_in(p)
                        .map_err(|e| exit::usage(format!("error: cannot read {}: {e}", p.display())))?,
                );
            } else if p.exists() {
                out.push(p.clone());
            } else {
                return Err(exit::usage(format!(
                    "error: {}: no such file or directory",
                    p.display()
                )));
            }
        }
        Ok(out)
    }
}
