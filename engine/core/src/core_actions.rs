//! The built-in `core.*` actions, described exactly like plugin actions.
//!
//! Design decision: core actions have [`ActionSpec`]s with JSON Schemas, so
//! validation, `rota show` and input checking treat `core.log` and
//! `plex.add_secret` the same way; only execution differs (here, in-process).

use serde_json::{Value, json};

use crate::action::{ActionSpec, Basis, ResumePolicy};

fn spec(action: &str, description: &str, input: Value, read_only: bool) -> ActionSpec {
    ActionSpec {
        plugin: "core".to_owned(),
        action: action.to_owned(),
        description: description.to_owned(),
        input_schema: std::sync::Arc::new(input),
        output_schema: std::sync::Arc::new(
            json!({"type": "object", "properties": {}, "additionalProperties": false}),
        ),
        read_only,
        basis: Basis::Documented,
        captures: Vec::new(),
        resume: ResumePolicy::Refuse,
        revoke: None,
        key_id: None,
    }
}

/// Every built-in action.
pub fn specs() -> Vec<ActionSpec> {
    SPECS.clone()
}

static SPECS: std::sync::LazyLock<Vec<ActionSpec>> = std::sync::LazyLock::new(build_specs);

fn build_specs() -> Vec<ActionSpec> {
    vec![
        spec(
            "assert",
            "Fails the step unless `that` is true; `message` says what was expected.",
            json!({
                "type": "object",
                "properties": {
                    "that": {"type": "boolean"},
                    "message": {"type": "string"}
                },
                "required": ["that"],
                "additionalProperties": false
            }),
            true,
        ),
        spec(
            "log",
            "Shows a message to the operator and records it in the run.",
            json!({
                "type": "object",
                "properties": {
                    "message": {"type": "string"},
                    "level": {"type": "string", "enum": ["info", "warn"]}
                },
                "required": ["message"],
                "additionalProperties": false
            }),
            true,
        ),
        spec(
            "sleep",
            "Waits, e.g. for a vendor to propagate a change.",
            json!({
                "type": "object",
                "properties": {"for": {"type": "string", "format": "duration"}},
                "required": ["for"],
                "additionalProperties": false
            }),
            true,
        ),
        spec(
            "secret.promote",
            "Makes a pending secret version current (the old current becomes previous).",
            json!({
                "type": "object",
                "properties": {"secret": {"x-rota-secret": true}},
                "required": ["secret"],
                "additionalProperties": false
            }),
            false,
        ),
        spec(
            "inventory.record",
            "Records a credential in the inventory: vendor, account, key ID, created, expires, consumers.",
            json!({
                "type": "object",
                "properties": {
                    "vendor": {"type": "string"},
                    "account": {"type": "string"},
                    "key_id": {"type": "string"},
                    "created": {"type": "string", "format": "date-time"},
                    "expires": {"type": ["string", "null"], "format": "date-time"},
                    "consumers": {"type": "array", "items": {"type": "string"}},
                    "status": {"type": "string", "enum": ["active", "pending", "revoked", "expired"]},
                    "secret": {"type": "string"}
                },
                "required": ["vendor", "account", "key_id"],
                "additionalProperties": false
            }),
            false,
        ),
        spec(
            "secret.discard",
            "Drops a pending secret version that will not be used.",
            json!({
                "type": "object",
                "properties": {"secret": {"x-rota-secret": true}},
                "required": ["secret"],
                "additionalProperties": false
            }),
            false,
        ),
    ]
}

pub fn lookup(action: &str) -> Option<ActionSpec> {
    SPECS.iter().find(|s| s.action == action).cloned()
}

/// Splits `plugin.action` (the action part may itself contain dots: `core.secret.promote`).
pub fn split_uses(uses: &str) -> Option<(&str, &str)> {
    let (plugin, action) = uses.split_once('.')?;
    if plugin.is_empty() || action.is_empty() {
        return None;
    }
    Some((plugin, action))
}

/// The property schemas of an object schema, if it lists them.
pub fn properties(schema: &Value) -> Option<&serde_json::Map<String, Value>> {
    schema.get("properties")?.as_object()
}

/// Whether an object schema refuses properties it does not list.
pub fn is_closed(schema: &Value) -> bool {
    schema.get("additionalProperties") == Some(&Value::Bool(false))
}

pub fn required(schema: &Value) -> Vec<String> {
    schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

/// Whether a property schema marks a field that takes a secret handle.
pub fn takes_secret(prop: &Value) -> bool {
    prop.get("x-rota-secret") == Some(&Value::Bool(true))
}

/// The JSON type a property schema names, if exactly one.
pub fn json_type(prop: &Value) -> Option<&str> {
    prop.get("type")?.as_str()
}
