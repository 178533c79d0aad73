//! The secret-store contract and the in-memory store.
//!
//! Design decision: the store is a trait so the executor, the plugin host and
//! the CLI never know where versions live. `rota-state` provides the durable,
//! encrypted SQLite store behind the same trait; [`MemoryStore`] serves tests
//! and runs that ask for no persistence. Staging labels follow AWS Secrets
//! Manager: a new version is `pending`; promoting it makes it `current` and
//! moves the old `current` to `previous`.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde::Serialize;
use time::OffsetDateTime;

use crate::secret::{Secret, SecretRef, validate_secret_name};

/// A staging label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    Current,
    Pending,
    Previous,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Current => "current",
            Stage::Pending => "pending",
            Stage::Previous => "previous",
        }
    }
}

impl std::str::FromStr for Stage {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "current" => Ok(Stage::Current),
            "pending" => Ok(Stage::Pending),
            "previous" => Ok(Stage::Previous),
            other => Err(format!(
                "unknown stage {other:?}, expected current, pending or previous"
            )),
        }
    }
}

/// Where a stored version came from. Written in the same transaction as the
/// value, so a capture and its vendor key ID are never separated.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Provenance {
    pub run_id: Option<String>,
    pub step_id: Option<String>,
    /// The plugin that captured it, or `prompt` / `cli`.
    pub source: Option<String>,
    /// The vendor's ID for the credential this value belongs to.
    pub key_id: Option<String>,
    /// The call that captured it (`run/step` or `run/step/<item>`), so a
    /// capture inside a `for_each` attaches to its exact item. Journaled with
    /// the capture record; a store's version list need not keep it.
    pub idempotency_key: Option<String>,
}

/// One stored version, without its value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VersionInfo {
    pub handle: SecretRef,
    pub stages: Vec<Stage>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    pub provenance: Provenance,
}

/// One named secret, without values.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SecretSummary {
    pub name: String,
    pub versions: usize,
    pub current: Option<u64>,
    pub pending: Option<u64>,
    pub previous: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("no secret named {0:?}")]
    NotFound(String),
    #[error("secret {0} does not exist (no such version)")]
    NoSuchVersion(SecretRef),
    #[error("invalid secret name: {0}")]
    InvalidName(String),
    #[error("secret {handle} cannot be {action}: {reason}")]
    InvalidTransition {
        handle: SecretRef,
        action: &'static str,
        reason: String,
    },
    #[error("secret {handle} could not be decrypted: {reason}")]
    Corrupt { handle: SecretRef, reason: String },
    #[error("secret store: {0}")]
    Backend(String),
}

/// The contract every secret store keeps.
pub trait SecretStore: Send + Sync {
    /// Stores `value` as a new version of `name`, labelled `pending` (the label
    /// moves off any older pending version). Returns only once the version is
    /// durable, so a caller may hand the handle on.
    fn put(&self, name: &str, value: &Secret, provenance: &Provenance) -> Result<SecretRef, StoreError>;

    /// The value of one version.
    fn get(&self, handle: &SecretRef) -> Result<Secret, StoreError>;

    /// The version carrying `stage`, if any.
    fn resolve(&self, name: &str, stage: Stage) -> Result<Option<SecretRef>, StoreError>;

    /// Makes `handle` current; the old current becomes previous.
    fn promote(&self, handle: &SecretRef) -> Result<(), StoreError>;

    /// Drops a version that never became current (a pending one that was not
    /// used, e.g. after compensation revoked the vendor key).
    fn discard(&self, handle: &SecretRef) -> Result<(), StoreError>;

    fn list(&self) -> Result<Vec<SecretSummary>, StoreError>;

    fn versions(&self, name: &str) -> Result<Vec<VersionInfo>, StoreError>;

    /// Removes a secret and all its versions. Returns whether it existed.
    fn remove(&self, name: &str) -> Result<bool, StoreError>;
}

struct StoredVersion {
    value: Secret,
    info: VersionInfo,
}

/// A store that lives as long as the process: for tests and `--ephemeral` runs.
#[derive(Default)]
pub struct MemoryStore {
    secrets: Mutex<BTreeMap<String, Vec<StoredVersion>>>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn with<T>(&self, f: impl FnOnce(&mut BTreeMap<String, Vec<StoredVersion>>) -> T) -> T {
        // A poisoned lock only means another thread panicked mid-update of an
        // in-memory map; its data is still structurally valid.
        let mut guard = self.secrets.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut guard)
    }
}

fn find_version<'a>(
    map: &'a mut BTreeMap<String, Vec<StoredVersion>>,
    handle: &SecretRef,
) -> Result<&'a mut StoredVersion, StoreError> {
    map.get_mut(&handle.name)
        .ok_or_else(|| StoreError::NotFound(handle.name.clone()))?
        .iter_mut()
        .find(|v| v.info.handle.version == handle.version)
        .ok_or_else(|| StoreError::NoSuchVersion(handle.clone()))
}

fn strip(versions: &mut [StoredVersion], stage: Stage) {
    for v in versions {
        v.info.stages.retain(|s| *s != stage);
    }
}

impl SecretStore for MemoryStore {
    fn put(&self, name: &str, value: &Secret, provenance: &Provenance) -> Result<SecretRef, StoreError> {
        validate_secret_name(name).map_err(StoreError::InvalidName)?;
        Ok(self.with(|map| {
            let versions = map.entry(name.to_owned()).or_default();
            strip(versions, Stage::Pending);
            let version = versions.iter().map(|v| v.info.handle.version).max().unwrap_or(0) + 1;
            let handle = SecretRef::new(name, version);
            versions.push(StoredVersion {
                value: value.clone(),
                info: VersionInfo {
                    handle: handle.clone(),
                    stages: vec![Stage::Pending],
                    created_at: OffsetDateTime::now_utc(),
                    provenance: provenance.clone(),
                },
            });
            handle
        }))
    }

    fn get(&self, handle: &SecretRef) -> Result<Secret, StoreError> {
        self.with(|map| find_version(map, handle).map(|v| v.value.clone()))
    }

    fn resolve(&self, name: &str, stage: Stage) -> Result<Option<SecretRef>, StoreError> {
        self.with(|map| {
            Ok(map.get(name).and_then(|versions| {
                versions
                    .iter()
                    .find(|v| v.info.stages.contains(&stage))
                    .map(|v| v.info.handle.clone())
            }))
        })
    }

    fn promote(&self, handle: &SecretRef) -> Result<(), StoreError> {
        self.with(|map| {
            let target = find_version(map, handle)?;
            if target.info.stages.contains(&Stage::Current) {
                return Ok(());
            }
            let versions = map
                .get_mut(&handle.name)
                .ok_or_else(|| StoreError::NotFound(handle.name.clone()))?;
            strip(versions, Stage::Previous);
            for v in versions.iter_mut() {
                if v.info.stages.contains(&Stage::Current) {
                    v.info.stages.retain(|s| *s != Stage::Current);
                    v.info.stages.push(Stage::Previous);
                }
            }
            for v in versions.iter_mut() {
                if v.info.handle == *handle {
                    v.info.stages.retain(|s| *s != Stage::Pending);
                    v.info.stages.push(Stage::Current);
                }
            }
            Ok(())
        })
    }

    fn discard(&self, handle: &SecretRef) -> Result<(), StoreError> {
        self.with(|map| {
            let target = find_version(map, handle)?;
            if target.info.stages.contains(&Stage::Current) {
                return Err(StoreError::InvalidTransition {
                    handle: handle.clone(),
                    action: "discarded",
                    reason: "it is the current version".to_owned(),
                });
            }
            if let Some(versions) = map.get_mut(&handle.name) {
                versions.retain(|v| v.info.handle != *handle);
            }
            Ok(())
        })
    }

    fn list(&self) -> Result<Vec<SecretSummary>, StoreError> {
        self.with(|map| {
            Ok(map
                .iter()
                .map(|(name, versions)| {
                    let at = |stage| {
                        versions
                            .iter()
                            .find(|v| v.info.stages.contains(&stage))
                            .map(|v| v.info.handle.version)
                    };
                    SecretSummary {
                        name: name.clone(),
                        versions: versions.len(),
                        current: at(Stage::Current),
                        pending: at(Stage::Pending),
                        previous: at(Stage::Previous),
                    }
                })
                .collect())
        })
    }

    fn versions(&self, name: &str) -> Result<Vec<VersionInfo>, StoreError> {
        self.with(|map| {
            map.get(name)
                .map(|versions| versions.iter().map(|v| v.info.clone()).collect())
                .ok_or_else(|| StoreError::NotFound(name.to_owned()))
        })
    }

    fn remove(&self, name: &str) -> Result<bool, StoreError> {
        self.with(|map| Ok(map.remove(name).is_some()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn promote_moves_labels_like_secrets_manager() -> Result<(), StoreError> {
        let store = MemoryStore::new();
        let p = Provenance::default();
        let v1 = store.put("a/b", &Secret::new("one"), &p)?;
        store.promote(&v1)?;
        let v2 = store.put("a/b", &Secret::new("two"), &p)?;
        assert_eq!(store.resolve("a/b", Stage::Pending)?, Some(v2.clone()));
        assert_eq!(store.resolve("a/b", Stage::Current)?, Some(v1.clone()));
        store.promote(&v2)?;
        assert_eq!(store.resolve("a/b", Stage::Current)?, Some(v2.clone()));
        assert_eq!(store.resolve("a/b", Stage::Previous)?, Some(v1));
        assert_eq!(store.resolve("a/b", Stage::Pending)?, None);
        assert_eq!(store.get(&v2)?, Secret::new("two"));
        Ok(())
    }

    #[test]
    fn current_version_cannot_be_discarded() -> Result<(), StoreError> {
        let store = MemoryStore::new();
        let v1 = store.put("x", &Secret::new("one"), &Provenance::default())?;
        store.promote(&v1)?;
        assert!(store.discard(&v1).is_err());
        Ok(())
    }
}
