//! The host interfaces plugins import, one module per capability (http,
//! secrets, log, clock), each with its host trait impl and its own
//! `add_to_linker`. Every host call runs in a `plugin.<iface>.<fn>` span with
//! plugin and action fields and never records a secret value.
//!
//! Design decision: adding a capability touches no other capability; the
//! capability decisions themselves live in `caps`, not here.

mod clock;
mod http;
mod log;
mod secrets;

use wasmtime::component::{HasSelf, Linker};

use crate::bindings::v1::rota::plugin::types;
use crate::host::State;

impl types::Host for State {}

/// Links every `rota:plugin@1.0.0` interface.
pub(crate) fn add_to_linker(linker: &mut Linker<State>) -> wasmtime::Result<()> {
    types::add_to_linker::<State, HasSelf<State>>(linker, |s| s)?;
    http::add_to_linker(linker)?;
    secrets::add_to_linker(linker)?;
    log::add_to_linker(linker)?;
    clock::add_to_linker(linker)
}
