//! The static plugin manifest, read from the component's custom sections
//! without running any plugin code.
//!
//! Design decision: the manifest is a JSON custom section
//! (`rota-plugin-manifest`) embedded by the SDK's `plugin!` macro, next to a
//! `rota-plugin-abi` section holding the ABI version the SDK targets. One
//! file is the whole plugin, so the digest that keys the compile cache and
//! that `rota plugins inspect` shows covers the manifest too: a manifest can
//! never drift from, or be swapped beside, the code it describes.

use std::collections::BTreeSet;

use rota_core::{ActionSpec, Basis, ResumePolicy};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::bindings::SUPPORTED_ABIS;
use crate::caps::OriginPattern;

pub const MANIFEST_SECTION: &str = "rota-plugin-manifest";
pub const ABI_SECTION: &str = "rota-plugin-abi";

/// The schema keyword marking an input field that takes a secret handle.
pub const SECRET_KEYWORD: &str = "x-rota-secret";

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub name: String,
    pub version: String,
    #[serde(default)]
    pub description: String,
    /// HTTP origins the plugin needs (patterns, see [`OriginPattern`]).
    #[serde(default)]
    pub origins: Vec<String>,
    pub actions: Vec<ActionManifest>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionManifest {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub read_only: bool,
    pub basis: BasisName,
    #[serde(default)]
    pub captures: Vec<String>,
    /// RFC 6901 pointer to the vendor's key ID in the response a capture is
    /// taken from (e.g. `/id`).
    #[serde(default)]
    pub key_id: Option<String>,
    /// What a resume does with an interrupted call (see [`ResumeManifest`]).
    #[serde(default)]
    pub resume: Option<ResumeManifest>,
    /// The action that deletes what this one creates, by vendor key ID.
    #[serde(default)]
    pub revoke: Option<String>,
    /// Shared with every [`ActionSpec`] made from it (a lookup per step
    /// copies no schema).
    pub input: std::sync::Arc<Value>,
    pub output: std::sync::Arc<Value>,
}

/// `"resume": "repeat"` or `"resume": {"reconcile": "<read-only action>",
/// "snapshot": "<read-only action>"}`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum ResumeManifest {
    Keyword(ResumeKeyword),
    Reconcile(ReconcileManifest),
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ResumeKeyword {
    /// Repeating the call is harmless.
    Repeat,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ReconcileManifest {
    pub reconcile: String,
    #[serde(default)]
    pub snapshot: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BasisName {
    Documented,
    Modeled,
}

impl From<BasisName> for Basis {
    fn from(b: BasisName) -> Self {
        match b {
            BasisName::Documented => Basis::Documented,
            BasisName::Modeled => Basis::Modeled,
        }
    }
}

/// Why a file is not a loadable plugin.
#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    #[error("{path}: not a WebAssembly file (corrupt or truncated?)")]
    NotWasm { path: String },
    #[error(
        "{path}: a plain core WebAssembly module, not a component; build plugins with the rota plugin SDK for wasm32-wasip2"
    )]
    CoreModule { path: String },
    #[error("{path}: the component cannot be parsed: {reason}")]
    Corrupt { path: String, reason: String },
    #[error(
        "{path}: no `{MANIFEST_SECTION}` custom section; was it built with rota-plugin-sdk's plugin! macro?"
    )]
    NoManifest { path: String },
    #[error("{path}: no `{ABI_SECTION}` custom section; was it built with rota-plugin-sdk's plugin! macro?")]
    NoAbi { path: String },
    #[error("{path}: invalid manifest: {reason}")]
    BadManifest { path: String, reason: String },
    #[error(
        "{path}: plugin {plugin:?} imports `{import}`, which this host does not provide (it provides rota:plugin@{} and WASI p2 without files, environment or network)",
        SUPPORTED_ABIS.join(", ")
    )]
    UnknownImport {
        path: String,
        plugin: String,
        import: String,
    },
    #[error(
        "{path}: plugin {plugin:?} was built for plugin ABI {abi}, which this host does not support (supported: {})",
        SUPPORTED_ABIS.join(", ")
    )]
    UnsupportedAbi {
        path: String,
        plugin: String,
        abi: String,
    },
}

/// The custom sections found anywhere in a component (including its nested
/// core modules, where the linker put them).
#[derive(Debug, Default)]
pub struct Sections {
    pub manifest: Option<Vec<u8>>,
    pub abi: Option<Vec<u8>>,
    /// The component's own (top-level) imports, types excepted.
    pub imports: Vec<String>,
}

/// Checks the file is a component and extracts rota's sections.
pub fn read_sections(path: &str, bytes: &[u8]) -> Result<Sections, PackageError> {
    if wasmparser::Parser::is_core_wasm(bytes) {
        return Err(PackageError::CoreModule {
            path: path.to_owned(),
        });
    }
    if !wasmparser::Parser::is_component(bytes) {
        return Err(PackageError::NotWasm {
            path: path.to_owned(),
        });
    }
    let corrupt = |e: wasmparser::BinaryReaderError| PackageError::Corrupt {
        path: path.to_owned(),
        reason: e.to_string(),
    };
    let mut sections = Sections::default();
    let mut depth = 0usize;
    for payload in wasmparser::Parser::new(0).parse_all(bytes) {
        let payload = payload.map_err(corrupt)?;
        match &payload {
            wasmparser::Payload::ModuleSection { .. } | wasmparser::Payload::ComponentSection { .. } => {
                depth += 1
            }
            wasmparser::Payload::End(_) => depth = depth.saturating_sub(1),
            wasmparser::Payload::ComponentImportSection(reader) if depth == 0 => {
                for import in reader.clone() {
                    let import = import.map_err(corrupt)?;
                    // Type imports (a world's `use`) carry no behaviour.
                    if !matches!(import.ty, wasmparser::ComponentTypeRef::Type(_)) {
                        sections.imports.push(import.name.name.to_owned());
                    }
                }
            }
            _ => {}
        }
        if let wasmparser::Payload::CustomSection(reader) = payload {
            match reader.name() {
                MANIFEST_SECTION if sections.manifest.is_none() => {
                    sections.manifest = Some(reader.data().to_vec())
                }
                ABI_SECTION if sections.abi.is_none() => sections.abi = Some(reader.data().to_vec()),
                _ => {}
            }
        }
    }
    Ok(sections)
}

/// Reads and checks the manifest of a plugin file: a component, with a
/// well-formed manifest, built for an ABI this host supports.
pub fn parse(path: &str, bytes: &[u8]) -> Result<(Manifest, String), PackageError> {
    parse_checked(path, bytes, true)
}

/// [`parse`] for a plugin embedded in this build: everything is checked
/// except that its JSON Schemas compile, the costliest part of reading a
/// manifest and one a test settles for every bundled plugin at build time
/// (an action's schemas are compiled on its first call in any case).
pub fn parse_bundled(path: &str, bytes: &[u8]) -> Result<(Manifest, String), PackageError> {
    parse_checked(path, bytes, false)
}

fn parse_checked(
    path: &str,
    bytes: &[u8],
    compile_schemas: bool,
) -> Result<(Manifest, String), PackageError> {
    let sections = read_sections(path, bytes)?;
    let raw = sections.manifest.ok_or_else(|| PackageError::NoManifest {
        path: path.to_owned(),
    })?;
    let abi_raw = sections.abi.ok_or_else(|| PackageError::NoAbi {
        path: path.to_owned(),
    })?;
    let bad = |reason: String| PackageError::BadManifest {
        path: path.to_owned(),
        reason,
    };
    let manifest: Manifest = serde_json::from_slice(&raw).map_err(|e| bad(e.to_string()))?;
    let abi = String::from_utf8(abi_raw)
        .map_err(|_| bad("the ABI section is not UTF-8".to_owned()))?
        .trim()
        .to_owned();
    if !abi_supported(&abi) {
        return Err(PackageError::UnsupportedAbi {
            path: path.to_owned(),
            plugin: manifest.name,
            abi,
        });
    }
    validate(&manifest, compile_schemas).map_err(bad)?;
    if let Some(import) = sections.imports.iter().find(|i| !import_provided(i)) {
        return Err(PackageError::UnknownImport {
            path: path.to_owned(),
            plugin: manifest.name,
            import: import.clone(),
        });
    }
    Ok((manifest, abi))
}

/// An ABI is supported when a supported version has the same major and is
/// at least as new (the host can serve anything written against an older
/// minor of the same major).
pub fn abi_supported(abi: &str) -> bool {
    let parse = |v: &str| -> Option<(u64, u64)> {
        let mut it = v.split('.');
        let major = it.next()?.parse().ok()?;
        let minor = it.next()?.parse().ok()?;
        it.next()?.parse::<u64>().ok()?;
        Some((major, minor))
    };
    let Some((major, minor)) = parse(abi) else {
        return false;
    };
    SUPPORTED_ABIS
        .iter()
        .filter_map(|s| parse(s))
        .any(|(m, n)| m == major && n >= minor)
}

/// Imports a plugin may have: ours, and the WASI p2 interfaces every guest
/// toolchain links.
pub fn import_provided(name: &str) -> bool {
    if let Some(rest) = name.strip_prefix("rota:plugin/") {
        let Some((iface, version)) = rest.split_once('@') else {
            return false;
        };
        return matches!(iface, "types" | "http" | "secrets" | "log" | "clock") && abi_supported(version);
    }
    [
        "wasi:cli/",
        "wasi:io/",
        "wasi:clocks/",
        "wasi:random/",
        "wasi:filesystem/",
        "wasi:sockets/",
    ]
    .iter()
    .any(|p| name.starts_with(p))
}

fn validate(m: &Manifest, compile_schemas: bool) -> Result<(), String> {
    let name_ok = |s: &str| {
        !s.is_empty()
            && s.len() <= 64
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    };
    if !name_ok(&m.name) {
        return Err(format!(
            "plugin name {:?} must be 1-64 characters of a-z, 0-9 and '-'",
            m.name
        ));
    }
    for o in &m.origins {
        OriginPattern::parse(o).map_err(|e| format!("origin {o:?}: {e}"))?;
    }
    let mut seen = BTreeSet::new();
    for a in &m.actions {
        if !name_ok(&a.name) {
            return Err(format!(
                "action name {:?} must be 1-64 characters of a-z, 0-9 and '-'",
                a.name
            ));
        }
        if !seen.insert(a.name.as_str()) {
            return Err(format!("action {:?} is declared twice", a.name));
        }
        let schemas = if compile_schemas {
            vec![("input", &a.input), ("output", &a.output)]
        } else {
            Vec::new()
        };
        for (what, schema) in schemas {
            jsonschema::validator_for(schema).map_err(|e| {
                format!(
                    "action {:?}: the {what} schema is not a valid JSON Schema: {e}",
                    a.name
                )
            })?;
        }
    }
    for a in &m.actions {
        validate_recovery(m, a).map_err(|e| format!("action {:?}: {e}", a.name))?;
    }
    Ok(())
}

/// `resume`, `revoke` and `key_id` name actions that exist and fit their role.
fn validate_recovery(m: &Manifest, a: &ActionManifest) -> Result<(), String> {
    let refer = |field: &str, name: &str, read_only: bool| -> Result<(), String> {
        let target = m
            .action(name)
            .ok_or_else(|| format!("{field} names action {name:?}, which the plugin does not declare"))?;
        if target.name == a.name {
            return Err(format!("{field} cannot name the action itself"));
        }
        match (read_only, target.read_only) {
            (true, false) => Err(format!(
                "{field} action {name:?} must be read_only: it runs during resumes and plans"
            )),
            (false, true) => Err(format!(
                "{field} action {name:?} is read_only, but revoking changes something"
            )),
            _ => Ok(()),
        }
    };
    if a.read_only && (a.resume.is_some() || a.revoke.is_some()) {
        return Err(
            "a read_only action is always safe to repeat; `resume` and `revoke` are for actions that change something"
                .to_owned(),
        );
    }
    if let Some(ResumeManifest::Reconcile(r)) = &a.resume {
        refer("resume.reconcile", &r.reconcile, true)?;
        if let Some(s) = &r.snapshot {
            refer("resume.snapshot", s, true)?;
        }
    }
    if let Some(r) = &a.revoke {
        refer("revoke", r, false)?;
    }
    if let Some(k) = &a.key_id {
        if !k.starts_with('/') {
            return Err(format!("key_id {k:?} must be a JSON pointer starting with '/'"));
        }
        if a.captures.is_empty() {
            return Err(
                "key_id locates the vendor's ID beside a captured secret; the action captures nothing"
                    .to_owned(),
            );
        }
    }
    Ok(())
}

impl Manifest {
    pub fn action(&self, name: &str) -> Option<&ActionManifest> {
        self.actions.iter().find(|a| a.name == name)
    }

    pub fn spec(&self, a: &ActionManifest) -> ActionSpec {
        ActionSpec {
            plugin: self.name.clone(),
            action: a.name.clone(),
            description: a.description.clone(),
            input_schema: a.input.clone(),
            output_schema: a.output.clone(),
            read_only: a.read_only,
            basis: a.basis.into(),
            captures: a.captures.clone(),
            resume: match &a.resume {
                None => ResumePolicy::Refuse,
                Some(ResumeManifest::Keyword(ResumeKeyword::Repeat)) => ResumePolicy::Repeat,
                Some(ResumeManifest::Reconcile(r)) => ResumePolicy::Reconcile {
                    snapshot: r.snapshot.clone(),
                    reconcile: r.reconcile.clone(),
                },
            },
            revoke: a.revoke.clone(),
            key_id: a.key_id.clone(),
        }
    }
}

/// JSON pointers (RFC 6901) of the input fields marked `x-rota-secret`.
pub fn secret_fields(schema: &Value) -> Vec<String> {
    let mut out = Vec::new();
    walk_secret_fields(schema, String::new(), &mut out);
    out
}

fn walk_secret_fields(schema: &Value, at: String, out: &mut Vec<String>) {
    let Some(obj) = schema.as_object() else { return };
    if obj.get(SECRET_KEYWORD) == Some(&Value::Bool(true)) {
        out.push(if at.is_empty() { "/".to_owned() } else { at.clone() });
    }
    if let Some(Value::Object(props)) = obj.get("properties") {
        for (k, v) in props {
            let esc = k.replace('~', "~0").replace('/', "~1");
            walk_secret_fields(v, format!("{at}/{esc}"), out);
        }
    }
    if let Some(items) = obj.get("items") {
        walk_secret_fields(items, format!("{at}/*"), out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abi_versions() {
        assert!(abi_supported("1.0.0"));
        assert!(!abi_supported("1.1.0"));
        assert!(!abi_supported("2.0.0"));
        assert!(!abi_supported("0.9.0"));
        assert!(!abi_supported("junk"));
    }

    #[test]
    fn core_module_and_garbage_are_told_apart() {
        assert!(matches!(
            read_sections("m.wasm", b"\0asm\x01\0\0\0"),
            Err(PackageError::CoreModule { .. })
        ));
        assert!(matches!(
            read_sections("x.wasm", b"hello"),
            Err(PackageError::NotWasm { .. })
        ));
    }

    fn manifest(actions: Value) -> Result<Manifest, String> {
        let m: Manifest = serde_json::from_value(serde_json::json!({
            "name": "v", "version": "1", "actions": actions
        }))
        .map_err(|e| e.to_string())?;
        validate(&m, true).map(|()| m)
    }

    fn action(name: &str, read_only: bool, extra: Value) -> Value {
        let mut a = serde_json::json!({
            "name": name, "read_only": read_only, "basis": "modeled",
            "input": {"type": "object"}, "output": {"type": "object"}
        });
        if let (Some(a), Value::Object(extra)) = (a.as_object_mut(), extra) {
            a.extend(extra);
        }
        a
    }

    #[test]
    fn resume_policies_are_parsed_into_the_spec() -> Result<(), String> {
        let m = manifest(serde_json::json!([
            action(
                "add",
                false,
                serde_json::json!({
                    "captures": ["secret"], "key_id": "/id", "revoke": "drop",
                    "resume": {"reconcile": "find", "snapshot": "ids"}
                })
            ),
            action("set", false, serde_json::json!({"resume": "repeat"})),
            action("drop", false, serde_json::json!({})),
            action("find", true, serde_json::json!({})),
            action("ids", true, serde_json::json!({})),
        ]))?;
        let spec = |n: &str| m.action(n).map(|a| m.spec(a)).ok_or("missing");
        let add = spec("add")?;
        assert_eq!(
            add.resume,
            ResumePolicy::Reconcile {
                snapshot: Some("ids".into()),
                reconcile: "find".into()
            }
        );
        assert_eq!(add.revoke.as_deref(), Some("drop"));
        assert_eq!(add.key_id.as_deref(), Some("/id"));
        assert_eq!(spec("set")?.resume, ResumePolicy::Repeat);
        assert_eq!(spec("drop")?.resume, ResumePolicy::Refuse);
        Ok(())
    }

    #[test]
    fn resume_references_are_checked() {
        let err = |actions: Value| manifest(actions).err().unwrap_or_default();
        assert!(
            err(serde_json::json!([action(
                "add",
                false,
                serde_json::json!({"resume": {"reconcile": "nope"}})
            )]))
            .contains("does not declare")
        );
        assert!(
            err(serde_json::json!([
                action("add", false, serde_json::json!({"resume": {"reconcile": "w"}})),
                action("w", false, serde_json::json!({}))
            ]))
            .contains("must be read_only")
        );
        assert!(
            err(serde_json::json!([
                action("add", false, serde_json::json!({"revoke": "r"})),
                action("r", true, serde_json::json!({}))
            ]))
            .contains("revoking changes something")
        );
        assert!(
            err(serde_json::json!([action(
                "r",
                true,
                serde_json::json!({"resume": "repeat"})
            )]))
            .contains("always safe to repeat")
        );
        assert!(
            err(serde_json::json!([action(
                "a",
                false,
                serde_json::json!({"key_id": "/id"})
            )]))
            .contains("captures nothing")
        );
        assert!(
            err(serde_json::json!([action(
                "a",
                false,
                serde_json::json!({"resume": "again"})
            )]))
            .contains("did not match")
        );
    }

    #[test]
    fn secret_fields_are_found() {
        let s = serde_json::json!({"type": "object", "properties": {
            "a": {"x-rota-secret": true}, "b": {"type": "object", "properties": {"c": {"x-rota-secret": true}}}
        }});
        assert_eq!(secret_fields(&s), vec!["/a".to_owned(), "/b/c".to_owned()]);
    }
}
