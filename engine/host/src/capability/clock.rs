//! `rota:plugin/clock`: the host's wall clock, so plugins need no WASI clock
//! semantics of their own.
//!
//! Design decision: the state holds only who is calling, for the span; the
//! clock itself is the host's and cannot be set or skewed per plugin.

use std::sync::Arc;

use wasmtime::component::{HasSelf, Linker};

use crate::bindings::v1::rota::plugin::clock;
use crate::host::CallCtx;

/// One call's clock state.
pub(crate) struct ClockState {
    ctx: Arc<CallCtx>,
}

impl ClockState {
    pub(crate) fn new(ctx: Arc<CallCtx>) -> Self {
        Self { ctx }
    }
}

/// Links `rota:plugin/clock`; `get` projects the store's data to its state.
pub(crate) fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> &mut ClockState,
) -> wasmtime::Result<()> {
    clock::add_to_linker::<T, HasSelf<ClockState>>(linker, get)
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl clock::Host for ClockState {
    async fn now_ms(&mut self) -> u64 {
        let _span =
            tracing::trace_span!("plugin.clock.now-ms", plugin = %self.ctx.plugin, action = %self.ctx.action)
                .entered();
        now_ms()
    }
}
