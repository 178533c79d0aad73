//! `rota:plugin/secrets`: `reveal`, the one way a plugin sees a value.
//!
//! Design decision: refused unless the operator granted `reveal` for the
//! target, and even then only for secrets bound to the plugin (the
//! `SecretScope` checks `send_to`).

use std::sync::Arc;

use rota_core::SecretRef;
use wasmtime::component::{HasSelf, Linker};

use crate::bindings::v1::rota::plugin::secrets;
use crate::host::CallCtx;

/// One call's secrets state: the grant and the run's scope, via the call.
pub(crate) struct SecretsState {
    ctx: Arc<CallCtx>,
}

impl SecretsState {
    pub(crate) fn new(ctx: Arc<CallCtx>) -> Self {
        Self { ctx }
    }
}

/// Links `rota:plugin/secrets`; `get` projects the store's data to its state.
pub(crate) fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> &mut SecretsState,
) -> wasmtime::Result<()> {
    secrets::add_to_linker::<T, HasSelf<SecretsState>>(linker, get)
}

impl secrets::Host for SecretsState {
    async fn reveal(&mut self, handle: String) -> Result<String, String> {
        let ctx = &self.ctx;
        let _span = tracing::info_span!("plugin.secrets.reveal", plugin = %ctx.plugin, action = %ctx.action)
            .entered();
        if !ctx.reveal {
            let msg = format!(
                "plugin {:?} may not reveal secrets: the operator has not granted `reveal` for target {:?}",
                ctx.plugin, ctx.target
            );
            tracing::warn!(plugin = %ctx.plugin, action = %ctx.action, handle = %handle, "{msg}");
            return Err(msg);
        }
        let h: SecretRef = handle.parse()?;
        ctx.call
            .secrets
            .value_for(&ctx.plugin, &h)
            .map(|s| s.expose().to_owned())
            .map_err(|e| e.to_string())
    }
}
