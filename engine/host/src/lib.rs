//! rota's WebAssembly plugin host.
//!
//! Plugins are wasm components (`rota:plugin@1.0.0`, see `wit/`) run on one
//! wasmtime engine with a fresh store per call, memory/CPU/wall limits, and
//! deny-by-default capabilities decided by [`caps::HttpPolicy`]. The
//! executor sees the host only through [`rota_core::ActionCatalog`] and
//! [`rota_core::ActionRunner`], both implemented by [`PluginHost`].
//!
//! Entry points for the CLI: [`config::load`] (or [`config::user_sources`] +
//! [`config::load_config`]) to read `rota.yaml`, [`PluginHost::new`] (or
//! [`PluginHost::rehearsal`]) which is both the `ActionCatalog` and the
//! `ActionRunner`, and [`render::list_text`] / [`render::list_json`] /
//! [`render::inspect_text`] / [`render::inspect_json`] for `rota plugins`.

pub mod bindings;
pub mod bundled;
pub mod cache;
mod capability;
pub mod caps;
pub mod config;
mod host;
pub mod manifest;
pub mod net;
mod output;
pub mod render;

pub use cache::Loaded;
pub use config::{
    Config, ConfigError, Limits, Modeled, PluginConfig, Source, TargetConfig, load, load_config, user_sources,
};
pub use host::{BrokenPlugin, HostError, HostOptions, PluginEntry, PluginHost, shared_engine};
pub use net::{Resolver, StaticResolver, SystemResolver};

/// Paths of the test plugins `build.rs` builds from `plugins/testing/*`
/// (release, wasm32-wasip2, into `plugins/target`). For tests and benches.
pub mod test_plugins {
    /// Well-behaved: echo, noop, HTTP with secret injection and capture.
    pub const ECHO: &str = env!("ROTA_TEST_PLUGIN_ECHO");
    /// Misbehaves on purpose: loops, bombs, recursion, panics, bad HTTP.
    pub const HOSTILE: &str = env!("ROTA_TEST_PLUGIN_HOSTILE");
    /// Claims plugin ABI 9.0.0.
    pub const FUTURE_ABI: &str = env!("ROTA_TEST_PLUGIN_FUTURE_ABI");
    /// Imports `rota:evil/backdoor`, which no host provides.
    pub const MISSING_IMPORT: &str = env!("ROTA_TEST_PLUGIN_MISSING_IMPORT");
    /// A key vendor's plugin with snapshot, reconcile and revoke actions (and
    /// two `resume: repeat` ones), for resume tests against `rota_testkit::KeysVendor`.
    pub const KEYS: &str = env!("ROTA_TEST_PLUGIN_KEYS");
}
