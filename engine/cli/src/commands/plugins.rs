//! `rota plugins list|inspect`: what the host knows from the manifests,
//! without running plugin code.

use crate::cli::{Output, PluginsCmd};
use crate::commands::Env;
use crate::exit;

pub struct Plugins {
    pub cmd: PluginsCmd,
}

impl Plugins {
    pub fn execute(self) -> anyhow::Result<i32> {
        let env = Env::load()?;
        match self.cmd {
            PluginsCmd::List(args) => {
                if args.output == Output::Json {
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&rota_host::render::list_json(&env.host))?
                    );
                } else {
                    print!("{}", rota_host::render::list_text(&env.host));
                }
            }
            PluginsCmd::Inspect { name, output } => {
                let shown = if output == Output::Json {
                    rota_host::render::inspect_json(&env.host, &name)
                        .map(|v| serde_json::to_string_pretty(&v).unwrap_or_default())
                } else {
                    rota_host::render::inspect_text(&env.host, &name)
                };
                match shown {
                    Some(text) => println!("{}", text.trim_end()),
                    None => {
                        return Err(exit::usage(format!(
                            "error: no plugin named {name:?} is installed; `rota plugins list` shows them"
                        )));
                    }
                }
            }
        }
        Ok(exit::OK)
    }
}
