//! The host interfaces plugins import, one module per capability (http,
//! secrets, log, clock). Each owns its per-call state struct, its host trait
//! impl and an `add_to_linker` that takes a projection from the store's data
//! to that state. Every host call runs in a `plugin.<iface>.<fn>` span with
//! plugin and action fields and never records a secret value.
//!
//! Design decision: adding a capability touches no other capability; the
//! host's per-call store data composes the capability states, and the
//! capability decisions themselves live in `caps`, not here.

pub(crate) mod clock;
pub(crate) mod http;
pub(crate) mod log;
pub(crate) mod secrets;

use wasmtime::component::{HasData, Linker};

use crate::bindings::v1::rota::plugin::types;

/// `rota:plugin/types` declares types only, so it needs no state.
struct Types;

impl HasData for Types {
    type Data<'a> = Types;
}

impl types::Host for Types {}

/// Links `rota:plugin/types`, which every plugin imports.
pub(crate) fn add_types_to_linker<T: Send + 'static>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    types::add_to_linker::<T, Types>(linker, |_| Types)
}
