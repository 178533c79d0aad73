//! The `Secret` value type and the handle that stands for it everywhere else.
//!
//! Design decision: a secret value is only ever held in a [`Secret`], which has
//! no `Display`, a redacting `Debug`, no `Serialize`, and zeroizes its buffer on
//! drop. Everything that flows through templates, step outputs, plugin inputs
//! and the journal is a [`SecretRef`] (a handle), rendered in JSON as
//! `{"$secret": "<name>@<version>"}`.

use std::fmt;

use serde_json::{Map, Value};
use zeroize::Zeroizing;

/// The JSON key that marks a secret handle: `{"$secret": "name@3"}`.
pub const HANDLE_KEY: &str = "$secret";

/// A secret value. Never printed, never serialized, wiped on drop.
#[derive(Clone)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(Zeroizing::new(value.into()))
    }

    /// The plaintext. Call sites are the few places that must hand the value
    /// to a cipher, an HTTP request or an HMAC; grep for `expose` to audit them.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl PartialEq for Secret {
    /// Constant-time in the length of the shorter value, so comparisons in
    /// tests and checks do not leak a prefix through timing.
    fn eq(&self, other: &Self) -> bool {
        let (a, b) = (self.0.as_bytes(), other.0.as_bytes());
        if a.len() != b.len() {
            return false;
        }
        a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

impl Eq for Secret {}

/// A handle to one version of a named secret (or to an ephemeral, run-only
/// secret, whose version is 0). Safe to print, journal and pass to plugins.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SecretRef {
    pub name: String,
    pub version: u64,
}

impl SecretRef {
    pub fn new(name: impl Into<String>, version: u64) -> Self {
        Self {
            name: name.into(),
            version,
        }
    }

    /// `{"$secret": "name@version"}`
    pub fn to_json(&self) -> Value {
        let mut map = Map::new();
        map.insert(HANDLE_KEY.to_owned(), Value::String(self.to_string()));
        Value::Object(map)
    }

    /// Reads a handle object. Returns `None` for anything that is not exactly
    /// `{"$secret": "<name>@<version>"}`.
    pub fn from_json(value: &Value) -> Option<Self> {
        let map = value.as_object()?;
        if map.len() != 1 {
            return None;
        }
        map.get(HANDLE_KEY)?.as_str()?.parse().ok()
    }
}

impl serde::Serialize for SecretRef {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_json().serialize(serializer)
    }
}

impl fmt::Display for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.name, self.version)
    }
}

impl std::str::FromStr for SecretRef {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (name, version) = s
            .rsplit_once('@')
            .ok_or_else(|| format!("secret handle {s:?} has no @version"))?;
        validate_secret_name(name)?;
        let version = version
            .parse()
            .map_err(|_| format!("secret handle {s:?} has a non-numeric version"))?;
        Ok(Self::new(name, version))
    }
}

/// Secret names are hierarchical paths: `plex/acme/client-secret`.
/// Segments are non-empty and use `[A-Za-z0-9._-]`.
pub fn validate_secret_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("a secret name cannot be empty".to_owned());
    }
    if name.len() > 256 {
        return Err(format!(
            "secret name is {} bytes long, at most 256 allowed",
            name.len()
        ));
    }
    for segment in name.split('/') {
        if segment.is_empty() {
            return Err(format!("secret name {name:?} has an empty path segment"));
        }
        if segment == "." || segment == ".." {
            return Err(format!("secret name {name:?} has a relative segment {segment:?}"));
        }
        if let Some(bad) = segment
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        {
            return Err(format!(
                "secret name {name:?} contains {bad:?}; use letters, digits, '.', '_', '-' and '/' between segments"
            ));
        }
    }
    Ok(())
}

/// Every handle found anywhere inside `value`.
pub fn handles_in(value: &Value) -> Vec<SecretRef> {
    let mut out = Vec::new();
    collect_handles(value, &mut out);
    out
}

fn collect_handles(value: &Value, out: &mut Vec<SecretRef>) {
    if let Some(handle) = SecretRef::from_json(value) {
        out.push(handle);
        return;
    }
    match value {
        Value::Array(items) => items.iter().for_each(|v| collect_handles(v, out)),
        Value::Object(map) => map.values().for_each(|v| collect_handles(v, out)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "Secret(<redacted>)");
    }

    #[test]
    fn handle_round_trips_through_json() {
        let h = SecretRef::new("plex/acme/client-secret", 3);
        assert_eq!(
            h.to_json(),
            serde_json::json!({"$secret": "plex/acme/client-secret@3"})
        );
        assert_eq!(SecretRef::from_json(&h.to_json()), Some(h));
    }

    #[test]
    fn handle_with_extra_keys_is_not_a_handle() {
        let v = serde_json::json!({"$secret": "a@1", "x": 1});
        assert_eq!(SecretRef::from_json(&v), None);
    }

    #[test]
    fn names_are_checked() {
        assert!(validate_secret_name("plex/acme/client-secret").is_ok());
        assert!(validate_secret_name("plex//x").is_err());
        assert!(validate_secret_name("../etc").is_err());
        assert!(validate_secret_name("a b").is_err());
    }

    #[test]
    fn handles_are_found_when_nested() {
        let v = serde_json::json!({"a": [{"$secret": "x@1"}], "b": {"c": {"$secret": "y/z@2"}}});
        assert_eq!(
            handles_in(&v),
            vec![SecretRef::new("x", 1), SecretRef::new("y/z", 2)]
        );
    }
}
