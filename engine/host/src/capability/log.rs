//! `rota:plugin/log`: structured plugin logs into tracing.
//!
//! Design decision: every message and field is passed through the run's
//! `SecretScope::redact` first, a backstop for values a plugin should never
//! hold in the first place.

use std::sync::Arc;

use wasmtime::component::{HasSelf, Linker};

use crate::bindings::v1::rota::plugin::log;
use crate::host::CallCtx;

/// One call's log state: who is logging, and the run's secrets to redact.
pub(crate) struct LogState {
    ctx: Arc<CallCtx>,
}

impl LogState {
    pub(crate) fn new(ctx: Arc<CallCtx>) -> Self {
        Self { ctx }
    }
}

/// Links `rota:plugin/log`; `get` projects the store's data to its state.
pub(crate) fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> &mut LogState,
) -> wasmtime::Result<()> {
    log::add_to_linker::<T, HasSelf<LogState>>(linker, get)
}

impl log::Host for LogState {
    async fn log(&mut self, level: log::Level, message: String, fields: Vec<(String, String)>) {
        let scope = &self.ctx.call.secrets;
        let message = scope.redact(&message);
        let fields = fields
            .iter()
            .map(|(k, v)| format!("{}={}", scope.redact(k), scope.redact(v)))
            .collect::<Vec<_>>()
            .join(" ");
        let (plugin, action) = (&self.ctx.plugin, &self.ctx.action);
        let _span = tracing::info_span!("plugin.log.log", plugin = %plugin, action = %action).entered();
        match level {
            log::Level::Trace => {
                tracing::trace!(target: "rota::plugin", plugin = %plugin, action = %action, fields = %fields, "{message}")
            }
            log::Level::Debug => {
                tracing::debug!(target: "rota::plugin", plugin = %plugin, action = %action, fields = %fields, "{message}")
            }
            log::Level::Info => {
                tracing::info!(target: "rota::plugin", plugin = %plugin, action = %action, fields = %fields, "{message}")
            }
            log::Level::Warn => {
                tracing::warn!(target: "rota::plugin", plugin = %plugin, action = %action, fields = %fields, "{message}")
            }
            log::Level::Error => {
                tracing::error!(target: "rota::plugin", plugin = %plugin, action = %action, fields = %fields, "{message}")
            }
        }
    }
}
