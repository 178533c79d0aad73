//! `rota:plugin/clock`: the host's wall clock, so plugins need no WASI clock
//! semantics of their own.

use wasmtime::component::{HasSelf, Linker};

use crate::bindings::v1::rota::plugin::clock;
use crate::host::State;

/// Links `rota:plugin/clock` into a plugin linker.
pub(crate) fn add_to_linker(linker: &mut Linker<State>) -> wasmtime::Result<()> {
    clock::add_to_linker::<State, HasSelf<State>>(linker, |s| s)
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl clock::Host for State {
    async fn now_ms(&mut self) -> u64 {
        let _span =
            tracing::trace_span!("plugin.clock.now-ms", plugin = %self.ctx.plugin, action = %self.ctx.action)
                .entered();
        now_ms()
    }
}
