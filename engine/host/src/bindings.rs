//! The host side of each supported ABI version. Exactly one `bindgen!` per
//! released WIT package lives here.

/// `rota:plugin@1.0.0`.
pub mod v1 {
    wasmtime::component::bindgen!({
        path: "../../wit/rota-plugin-1.0.0",
        world: "plugin",
        // http.send may trap: a per-call limit hit inside it stops the
        // plugin instead of returning an error the plugin could ignore.
        imports: {
            "rota:plugin/http.send": async | trappable,
            default: async,
        },
        exports: { default: async },
    });
}

/// ABI versions this host can run, newest first.
pub const SUPPORTED_ABIS: &[&str] = &["1.0.0"];

/// The WIT package every plugin import of ours lives in.
pub const PACKAGE: &str = "rota:plugin";
