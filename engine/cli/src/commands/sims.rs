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
        let SimsCmd::Serve { seed } = self.cmd;
        let mut config = SimsConfig::default();
        if let Some(seed) = seed {
            config.seed = seed;
            config.fault_seed = Some(seed);
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        runtime
            .block_on(rota_sims::serve(config, std::io::stdout()))
            .context("the simulators stopped")?;
        Ok(exit::OK)
    }
}
