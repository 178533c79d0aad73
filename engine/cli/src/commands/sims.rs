//! `rota sims serve`: the vendor simulators, standalone.

use anyhow::Context;
use rota_sims::SimsConfig;

use crate::cli::SimsCmd;
use crate::exit;

pub struct Sims {
    pub cmd: SimsCmd,
}

impl Sims {
    pub fn execute(self) -> anyhow::Result<i32> {
        let SimsCmd::Serve { seed, settings } = self.cmd;
        let mut config = match settings {
            Some(path) => {
                let source = rota_core::yaml::Source::read(&path)
                    .map_err(|d| exit::usage(format!("error: {}", d.render(None))))?;
                rota_core::yaml::parse::<SimsConfig>(&source)
                    .map_err(|d| {
                        exit::usage(format!(
                            "error: simulator settings: {}",
                            d.render(Some(&source.text))
                        ))
                    })?
                    .0
            }
            None => SimsConfig::default(),
        };
        if let Some(seed) = seed {
            config.seed = seed;
            config.fault_seed = Some(seed);
        }
        crate::commands::run::runtime()?
            .block_on(rota_sims::serve(config, std::io::stdout()))
            .context("the simulators stopped")?;
        Ok(exit::OK)
    }
}
