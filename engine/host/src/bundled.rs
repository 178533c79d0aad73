//! The first-party vendor plugins embedded in this build.
//!
//! Design decision: `build.rs` compiles `plugins/<vendor>` for wasm32-wasip2
//! and embeds each component here, so a fresh `rota` binary can rehearse
//! and run every shipped playbook without installing anything; a plugin of
//! the same name in an operator's `plugin_dirs` replaces the bundled one.
//! A build with `ROTA_SKIP_PLUGIN_BUILD=1` bundles none.

include!(concat!(env!("OUT_DIR"), "/bundled.rs"));

/// The names of the bundled plugin files, e.g. `rota_plugin_plex.wasm`.
pub fn files() -> impl Iterator<Item = &'static str> {
    BUNDLED.iter().map(|(file, _)| *file)
}
