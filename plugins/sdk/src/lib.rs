//! The rota plugin SDK.
//!
//! A vendor writes each action as a plain function
//! `fn(&Context, Input) -> Result<Output, Error>` over serde types and
//! registers them with [`plugin!`], which also embeds the static manifest
//! (a JSON file in the crate) and the ABI version this SDK targets as custom
//! sections of the component, where the host reads them without running any
//! plugin code. See `docs/plugins.md`.

pub mod http;
pub mod resume;

use serde::Serialize;
use serde::de::DeserializeOwned;

#[doc(hidden)]
#[allow(
    unsafe_code,
    clippy::too_many_arguments,
    reason = "wit-bindgen's generated canonical-ABI glue"
)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit/rota-plugin-1.0.0",
        world: "plugin",
        pub_export_macro: true,
        export_macro_name: "__export_plugin",
        default_bindings_module: "rota_plugin_sdk::bindings",
    });
}

pub use serde_json::{Value, json};

/// The ABI (WIT package version) this SDK was built against.
pub const ABI_VERSION: &str = "1.0.0";

/// The name of the custom section holding the manifest JSON.
pub const MANIFEST_SECTION: &str = "rota-plugin-manifest";
/// The name of the custom section holding the ABI version.
pub const ABI_SECTION: &str = "rota-plugin-abi";

/// Who is calling.
#[derive(Clone, Debug)]
pub struct Context {
    pub run_id: String,
    pub step_id: String,
    /// Stable across attempts and resumes of the same step iteration: send it
    /// as the vendor's idempotency key where there is one.
    pub idempotency_key: String,
    pub attempt: u32,
    /// The target's base URL from the operator's config (the simulator's in
    /// a rehearsal): build vendor URLs from it.
    pub base_url: Option<String>,
}

impl Context {
    /// `base_url` + `path`, or an error if the operator configured no base URL.
    pub fn url(&self, path: &str) -> Result<String, Error> {
        let base = self
            .base_url
            .as_deref()
            .ok_or_else(|| Error::InvalidInput("the target has no base_url configured".to_owned()))?;
        Ok(format!("{}{}", base.trim_end_matches('/'), path))
    }
}

/// The typed errors of an action (the ABI's `error` variant).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Error {
    InvalidInput(String),
    Unauthorized(String),
    Forbidden(String),
    NotFound(String),
    Conflict(String),
    RateLimited { retry_after_ms: Option<u64> },
    Upstream { status: u16, body_excerpt: String },
    Denied(String),
    Internal(String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?}")
    }
}

impl std::error::Error for Error {}

impl Error {
    /// Maps an unexpected HTTP status to the typed error the executor
    /// understands: 400/422 invalid input, 401, 403, 404, 409, 429 with its
    /// `Retry-After`, anything else upstream with a body excerpt.
    pub fn from_status(status: u16, retry_after_ms: Option<u64>, body: &[u8]) -> Self {
        let excerpt = excerpt(body);
        match status {
            400 | 422 => Error::InvalidInput(format!("vendor rejected the request ({status}): {excerpt}")),
            401 => Error::Unauthorized(excerpt),
            403 => Error::Forbidden(excerpt),
            404 => Error::NotFound(excerpt),
            409 => Error::Conflict(excerpt),
            429 => Error::RateLimited { retry_after_ms },
            _ => Error::Upstream {
                status,
                body_excerpt: excerpt,
            },
        }
    }
}

fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut end = text.len().min(300);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

impl From<Error> for bindings::rota::plugin::types::Error {
    fn from(e: Error) -> Self {
        use bindings::rota::plugin::types::{Error as E, UpstreamError};
        match e {
            Error::InvalidInput(m) => E::InvalidInput(m),
            Error::Unauthorized(m) => E::Unauthorized(m),
            Error::Forbidden(m) => E::Forbidden(m),
            Error::NotFound(m) => E::NotFound(m),
            Error::Conflict(m) => E::Conflict(m),
            Error::RateLimited { retry_after_ms } => E::RateLimited(retry_after_ms),
            Error::Upstream { status, body_excerpt } => E::Upstream(UpstreamError { status, body_excerpt }),
            Error::Denied(m) => E::Denied(m),
            Error::Internal(m) => E::Internal(m),
        }
    }
}

/// Structured logging into the host's tracing. Secret values are redacted
/// by the host, but plugins never hold them anyway.
pub mod log {
    use crate::bindings::rota::plugin::log::{Level, log};

    pub fn info(message: &str, fields: &[(&str, &str)]) {
        emit(Level::Info, message, fields);
    }
    pub fn warn(message: &str, fields: &[(&str, &str)]) {
        emit(Level::Warn, message, fields);
    }
    pub fn debug(message: &str, fields: &[(&str, &str)]) {
        emit(Level::Debug, message, fields);
    }
    pub fn error(message: &str, fields: &[(&str, &str)]) {
        emit(Level::Error, message, fields);
    }

    fn emit(level: Level, message: &str, fields: &[(&str, &str)]) {
        let fields: Vec<(String, String)> = fields
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        log(level, message, &fields);
    }
}

/// The host's clock.
pub mod clock {
    /// Milliseconds since the Unix epoch.
    pub fn now_ms() -> u64 {
        crate::bindings::rota::plugin::clock::now_ms()
    }
}

/// Secrets: plugins hold handles; `reveal` works only where the operator
/// granted it.
pub mod secrets {
    /// A secret handle from the input JSON, `{"$secret": "name@version"}`.
    #[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
    pub struct Handle {
        #[serde(rename = "$secret")]
        pub handle: String,
    }

    impl Handle {
        pub fn as_str(&self) -> &str {
            &self.handle
        }
    }

    pub fn reveal(handle: &Handle) -> Result<String, crate::Error> {
        crate::bindings::rota::plugin::secrets::reveal(&handle.handle).map_err(crate::Error::Denied)
    }
}

#[doc(hidden)]
pub fn __run<I, O>(
    ctx: bindings::rota::plugin::types::Context,
    input: &str,
    f: fn(&Context, I) -> Result<O, Error>,
) -> Result<String, bindings::rota::plugin::types::Error>
where
    I: DeserializeOwned,
    O: Serialize,
{
    let ctx = Context {
        run_id: ctx.run_id,
        step_id: ctx.step_id,
        idempotency_key: ctx.idempotency_key,
        attempt: ctx.attempt,
        base_url: ctx.base_url,
    };
    let input: I = serde_json::from_str(input).map_err(|e| Error::InvalidInput(e.to_string()))?;
    let out = f(&ctx, input)?;
    serde_json::to_string(&out).map_err(|e| Error::Internal(format!("cannot encode output: {e}")).into())
}

#[doc(hidden)]
pub fn __unknown(action: &str) -> bindings::rota::plugin::types::Error {
    Error::InvalidInput(format!("this plugin has no action {action:?}")).into()
}

/// Registers a plugin's actions and embeds its manifest.
///
/// ```ignore
/// rota_plugin_sdk::plugin! {
///     manifest: "rota-plugin.json",
///     actions: { "get-key" => get_key, "create-key" => create_key },
/// }
/// ```
///
/// `manifest` is a path relative to the crate root. The ABI version embedded
/// is the SDK's [`ABI_VERSION`].
#[macro_export]
macro_rules! plugin {
    (manifest: $manifest:literal, actions: { $($name:literal => $f:path),* $(,)? } $(,)?) => {
        $crate::plugin!(@impl $manifest, "1.0.0", { $($name => $f),* });
    };
    (manifest: $manifest:literal, abi: $abi:literal, actions: { $($name:literal => $f:path),* $(,)? } $(,)?) => {
        $crate::plugin!(@impl $manifest, $abi, { $($name => $f),* });
    };
    (@impl $manifest:literal, $abi:literal, { $($name:literal => $f:path),* }) => {
        #[allow(unsafe_code, reason = "wit-bindgen's export glue and link_section are the ABI's own unsafe; action code stays safe")]
        const _: () = {
            const __MANIFEST: &[u8] = include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/", $manifest));
            #[allow(unsafe_code, reason = "link_section only names the custom section the host reads")]
            #[unsafe(link_section = "rota-plugin-manifest")]
            #[used]
            static __ROTA_MANIFEST: [u8; __MANIFEST.len()] = {
                let mut out = [0u8; __MANIFEST.len()];
                let mut i = 0;
                while i < __MANIFEST.len() {
                    out[i] = __MANIFEST[i];
                    i += 1;
                }
                out
            };
            #[allow(unsafe_code, reason = "link_section only names the custom section the host reads")]
            #[unsafe(link_section = "rota-plugin-abi")]
            #[used]
            static __ROTA_ABI: [u8; $abi.len()] = {
                let src = $abi.as_bytes();
                let mut out = [0u8; $abi.len()];
                let mut i = 0;
                while i < src.len() {
                    out[i] = src[i];
                    i += 1;
                }
                out
            };

            struct __RotaPlugin;

            impl $crate::bindings::Guest for __RotaPlugin {
                fn invoke(
                    action: ::std::string::String,
                    input: ::std::string::String,
                    ctx: $crate::bindings::rota::plugin::types::Context,
                ) -> ::std::result::Result<::std::string::String, $crate::bindings::rota::plugin::types::Error> {
                    match action.as_str() {
                        $($name => $crate::__run(ctx, &input, $f),)*
                        other => ::std::result::Result::Err($crate::__unknown(other)),
                    }
                }
            }

            $crate::bindings::__export_plugin!(__RotaPlugin with_types_in $crate::bindings);
        };
    };
}
