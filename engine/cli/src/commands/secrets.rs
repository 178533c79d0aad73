//! `rota secrets`: the encrypted store, by name. Values come in on stdin or a
//! no-echo prompt and go out only with `get --reveal` (audited) or as an
//! age-encrypted export.

use std::io::{IsTerminal, Write};

use rota_core::{SecretRef, SecretStore, Stage};
use rota_state::{ExportSelection, prompt_secret_value, read_secret_value, render};

use crate::cli::{Output, SecretsCmd};
use crate::commands::{open_state, state_error};
use crate::exit;

pub struct Secrets {
    pub cmd: SecretsCmd,
}

fn store_error(e: rota_core::StoreError) -> anyhow::Error {
    match e {
        rota_core::StoreError::NotFound(_)
        | rota_core::StoreError::NoSuchVersion(_)
        | rota_core::StoreError::InvalidName(_) => exit::usage(format!("error: {e}")),
        other => exit::environment(format!("error: {other}")),
    }
}

impl Secrets {
    pub fn execute(self) -> anyhow::Result<i32> {
        let state = open_state()?;
        let store = state.store();
        match self.cmd {
            SecretsCmd::List(args) => {
                let list = store.list().map_err(store_error)?;
                if args.output == Output::Json {
                    println!("{}", serde_json::to_string_pretty(&list)?);
                } else if list.is_empty() {
                    println!("no secrets stored");
                } else {
                    print!("{}", render::secrets_list(&list));
                }
            }
            SecretsCmd::Versions { name, output } => {
                let versions = store.versions(&name).map_err(store_error)?;
                if output == Output::Json {
                    println!("{}", serde_json::to_string_pretty(&versions)?);
                } else {
                    print!("{}", render::versions(&versions));
                }
            }
            SecretsCmd::Put { name, pending } => {
                let value = if std::io::stdin().is_terminal() {
                    prompt_secret_value(&name)
                } else {
                    read_secret_value(&mut std::io::stdin().lock())
                }
                .map_err(|e| exit::usage(format!("error: {e}")))?;
                let provenance = rota_core::Provenance {
                    source: Some("cli".to_owned()),
                    ..Default::default()
                };
                let handle = store.put(&name, &value, &provenance).map_err(store_error)?;
                if !pending {
                    store.promote(&handle).map_err(store_error)?;
                }
                println!(
                    "stored {handle} ({})",
                    if pending { "pending" } else { "current" }
                );
            }
            SecretsCmd::Promote { name, version } => {
                let handle = match version {
                    Some(v) => SecretRef::new(&name, v),
                    None => store
                        .resolve(&name, Stage::Pending)
                        .map_err(store_error)?
                        .ok_or_else(|| exit::usage(format!("error: {name} has no pending version")))?,
                };
                store.promote(&handle).map_err(store_error)?;
                println!("{handle} is current");
            }
            SecretsCmd::Rm { name, yes } => {
                if !yes {
                    if !std::io::stdin().is_terminal() {
                        return Err(exit::usage(format!(
                            "error: removing {name} deletes every version; pass --yes to confirm"
                        )));
                    }
                    eprint!("? Remove {name} and all its versions? [y/N] ");
                    std::io::stderr().flush()?;
                    let mut answer = String::new();
                    std::io::stdin().read_line(&mut answer)?;
                    if !matches!(answer.trim(), "y" | "yes") {
                        return Ok(exit::DECLINED);
                    }
                }
                if store.remove(&name).map_err(store_error)? {
                    println!("removed {name}");
                } else {
                    return Err(exit::usage(format!("error: no secret named {name:?}")));
                }
            }
            SecretsCmd::Get {
                name,
                version,
                reveal,
            } => {
                if !reveal {
                    return Err(exit::usage(
                        "error: printing a secret value needs --reveal (the reveal is written to the audit log)",
                    ));
                }
                let handle = match version {
                    Some(v) => SecretRef::new(&name, v),
                    None => store
                        .resolve(&name, Stage::Current)
                        .map_err(store_error)?
                        .ok_or_else(|| exit::usage(format!("error: {name} has no current version")))?,
                };
                let value = store
                    .reveal(&handle)
                    .map_err(|e| state_error("cannot reveal", e))?;
                let mut out = std::io::stdout().lock();
                out.write_all(value.expose().as_bytes())?;
                out.write_all(b"\n")?;
            }
            SecretsCmd::Export {
                name,
                recipients,
                out,
            } => {
                let selection = match name {
                    Some(n) => ExportSelection::Name(n),
                    None => ExportSelection::All,
                };
                let armored = store
                    .export(&selection, &recipients)
                    .map_err(|e| state_error("cannot export", e))?;
                match out {
                    Some(path) => {
                        std::fs::write(&path, armored)?;
                        eprintln!(
                            "wrote {} (decrypt with: age -d -i <identity> {})",
                            path.display(),
                            path.display()
                        );
                    }
                    None => print!("{armored}"),
                }
            }
        }
        Ok(exit::OK)
    }
}
