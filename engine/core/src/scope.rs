//! A run's view of secrets: which may be injected into which plugin, captures
//! into the store, and the run-only (ephemeral) ones.
//!
//! Design decision: this is the only place that turns a handle into a value
//! for a plugin call, and it checks the secret's binding (`send_to`) first.
//! The plugin host asks it; it never reads the store directly. Every value it
//! hands out is remembered so log redaction can catch it as a backstop.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use crate::action::CaptureTarget;
use crate::secret::{Secret, SecretRef};
use crate::store::{Provenance, SecretStore, StoreError};

/// Which plugins a named secret may be injected into.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Binding {
    pub send_to: BTreeSet<String>,
    pub ephemeral: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum SecretAccessError {
    #[error("plugin {plugin:?} may not use secret {handle}: it is bound to {allowed}")]
    NotBound {
        plugin: String,
        handle: SecretRef,
        allowed: String,
    },
    #[error("secret {0} is not known to this run")]
    Unknown(SecretRef),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Ephemeral secrets carry version 0: they never reach the store.
pub const EPHEMERAL_VERSION: u64 = 0;

pub struct SecretScope {
    store: Arc<dyn SecretStore>,
    run_id: String,
    bindings: Mutex<BTreeMap<String, Binding>>,
    ephemeral: Mutex<HashMap<String, Secret>>,
    /// Stored versions already decrypted in this run (a version's value
    /// never changes): a run injects the same login secret into many
    /// calls, and each decryption is an X25519 exchange and a database
    /// read. Every value here is also in `seen`, held for the run anyway.
    decrypted: Mutex<HashMap<SecretRef, Secret>>,
    seen: Mutex<Vec<Secret>>,
    /// Durable captures of this run by the call that made them (idempotency
    /// key): handle and vendor key ID, oldest first.
    captured: Mutex<BTreeMap<String, Vec<Captured>>>,
}

/// A durable capture: its handle and the vendor key ID recorded with it.
type Captured = (SecretRef, Option<String>);

impl std::fmt::Debug for SecretScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretScope")
            .field("run_id", &self.run_id)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl SecretScope {
    pub fn new(store: Arc<dyn SecretStore>, run_id: impl Into<String>) -> Self {
        Self {
            store,
            run_id: run_id.into(),
            bindings: Mutex::new(BTreeMap::new()),
            ephemeral: Mutex::new(HashMap::new()),
            decrypted: Mutex::new(HashMap::new()),
            seen: Mutex::new(Vec::new()),
            captured: Mutex::new(BTreeMap::new()),
        }
    }

    /// What the call named by `idempotency_key` captured durably in this run:
    /// the handles, oldest first, and the latest vendor key ID recorded.
    pub fn captured_for(&self, idempotency_key: &str) -> (Vec<SecretRef>, Option<String>) {
        let captured = lock(&self.captured);
        let list = captured
            .get(idempotency_key)
            .map(Vec::as_slice)
            .unwrap_or_default();
        (
            list.iter().map(|(h, _)| h.clone()).collect(),
            list.iter().rev().find_map(|(_, k)| k.clone()),
        )
    }

    pub fn store(&self) -> &Arc<dyn SecretStore> {
        &self.store
    }

    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// Declares (or narrows, if already declared) the plugins a secret may
    /// reach. A later binding can never widen an earlier one.
    pub fn bind(&self, name: &str, binding: Binding) {
        let mut bindings = lock(&self.bindings);
        match bindings.get_mut(name) {
            Some(existing) => {
                existing.send_to = existing.send_to.intersection(&binding.send_to).cloned().collect();
            }
            None => {
                bindings.insert(name.to_owned(), binding);
            }
        }
    }

    pub fn binding(&self, name: &str) -> Option<Binding> {
        lock(&self.bindings).get(name).cloned()
    }

    /// The value behind `handle`, for injection by `plugin`. Refused unless
    /// the secret's binding names the plugin.
    pub fn value_for(&self, plugin: &str, handle: &SecretRef) -> Result<Secret, SecretAccessError> {
        let binding = self
            .binding(&handle.name)
            .ok_or_else(|| SecretAccessError::Unknown(handle.clone()))?;
        if !binding.send_to.contains(plugin) {
            return Err(SecretAccessError::NotBound {
                plugin: plugin.to_owned(),
                handle: handle.clone(),
                allowed: if binding.send_to.is_empty() {
                    "no plugin".to_owned()
                } else {
                    binding.send_to.iter().cloned().collect::<Vec<_>>().join(", ")
                },
            });
        }
        let value = if handle.version == EPHEMERAL_VERSION {
            lock(&self.ephemeral)
                .get(&handle.name)
                .cloned()
                .ok_or_else(|| SecretAccessError::Unknown(handle.clone()))?
        } else if let Some(v) = lock(&self.decrypted).get(handle) {
            return Ok(v.clone());
        } else {
            let v = self.store.get(handle)?;
            lock(&self.decrypted).insert(handle.clone(), v.clone());
            v
        };
        self.remember(&value);
        Ok(value)
    }

    /// Stores a value a plugin captured (or an operator typed). Durable
    /// targets are committed to the store, as `pending`, before this returns.
    /// The capturing plugin is bound to the secret along with `send_to`.
    pub fn capture(
        &self,
        plugin: &str,
        target: &CaptureTarget,
        value: Secret,
        provenance: Provenance,
    ) -> Result<SecretRef, SecretAccessError> {
        let mut send_to: BTreeSet<String> = target.send_to.iter().cloned().collect();
        send_to.insert(plugin.to_owned());
        self.remember(&value);
        let handle = if target.ephemeral {
            lock(&self.ephemeral).insert(target.name.clone(), value);
            SecretRef::new(target.name.clone(), EPHEMERAL_VERSION)
        } else {
            let provenance = Provenance {
                run_id: provenance.run_id.or_else(|| Some(self.run_id.clone())),
                ..provenance
            };
            let step = provenance.step_id.clone();
            if let Some(step) = &step
                && crate::journal::fail_point(step, "capture-commit")
            {
                return Err(StoreError::Backend(format!(
                    "injected failure: ROTA_FAIL_AT={step}:capture-commit refused to commit {}",
                    target.name
                ))
                .into());
            }
            let handle = self.store.put(&target.name, &value, &provenance)?;
            if let Some(key) = &provenance.idempotency_key {
                lock(&self.captured)
                    .entry(key.clone())
                    .or_default()
                    .push((handle.clone(), provenance.key_id.clone()));
            }
            if let Some(step) = step {
                crate::journal::crash_point(&step, "capture");
            }
            handle
        };
        self.bind(
            &target.name,
            Binding {
                send_to,
                ephemeral: target.ephemeral,
            },
        );
        Ok(handle)
    }

    /// Records a value the run has handled, for redaction.
    pub fn remember(&self, value: &Secret) {
        if value.is_empty() {
            return;
        }
        let mut seen = lock(&self.seen);
        if !seen.iter().any(|s| s == value) {
            seen.push(value.clone());
        }
    }

    /// Replaces every occurrence of a value this run has handled.
    pub fn redact(&self, text: &str) -> String {
        let seen = lock(&self.seen);
        let mut out = text.to_owned();
        for s in seen.iter() {
            if out.contains(s.expose()) {
                out = out.replace(s.expose(), "<redacted>");
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    fn target(name: &str, send_to: &[&str]) -> CaptureTarget {
        CaptureTarget {
            name: name.to_owned(),
            send_to: send_to.iter().map(|s| s.to_string()).collect(),
            ephemeral: false,
        }
    }

    #[test]
    fn captured_secret_reaches_only_bound_plugins() -> Result<(), SecretAccessError> {
        let scope = SecretScope::new(Arc::new(MemoryStore::new()), "r1");
        let h = scope.capture(
            "plex",
            &target("plex/s", &["demandcaster"]),
            Secret::new("v"),
            Provenance::default(),
        )?;
        assert_eq!(scope.value_for("plex", &h)?, Secret::new("v"));
        assert_eq!(scope.value_for("demandcaster", &h)?, Secret::new("v"));
        assert!(matches!(
            scope.value_for("soar", &h),
            Err(SecretAccessError::NotBound { .. })
        ));
        Ok(())
    }

    #[test]
    fn a_binding_can_be_narrowed_never_widened() {
        let scope = SecretScope::new(Arc::new(MemoryStore::new()), "r1");
        let b = |p: &[&str]| Binding {
            send_to: p.iter().map(|s| s.to_string()).collect(),
            ephemeral: false,
        };
        scope.bind("x", b(&["a", "b"]));
        scope.bind("x", b(&["b", "c"]));
        assert_eq!(scope.binding("x"), Some(b(&["b"])));
    }

    #[test]
    fn ephemeral_secrets_never_reach_the_store() -> Result<(), SecretAccessError> {
        let store = Arc::new(MemoryStore::new());
        let scope = SecretScope::new(store.clone(), "r1");
        let mut t = target("plytix/token", &[]);
        t.ephemeral = true;
        let h = scope.capture("plytix", &t, Secret::new("jwt"), Provenance::default())?;
        assert_eq!(h.version, EPHEMERAL_VERSION);
        assert!(store.list()?.is_empty());
        assert_eq!(scope.value_for("plytix", &h)?, Secret::new("jwt"));
        Ok(())
    }

    #[test]
    fn redaction_replaces_handled_values() -> Result<(), SecretAccessError> {
        let scope = SecretScope::new(Arc::new(MemoryStore::new()), "r1");
        scope.capture(
            "p",
            &target("a", &[]),
            Secret::new("s3cr3t"),
            Provenance::default(),
        )?;
        assert_eq!(scope.redact("token=s3cr3t;"), "token=<redacted>;");
        Ok(())
    }
}
