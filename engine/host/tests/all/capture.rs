//! Captures with the vendor's key ID, and a capture the store refuses: the
//! `keys` test plugin against `rota_testkit::KeysVendor` on loopback.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use rota_core::{
    ActionCall, ActionError, ActionRunner, CaptureTarget, MemoryStore, Provenance, Secret, SecretRef,
    SecretScope, SecretStore, SecretSummary, Stage, StoreError, VersionInfo,
};
use rota_host::{Config, HostOptions, PluginHost, config::PluginConfig};
use rota_testkit::KeysVendor;
use serde_json::json;

use crate::support::{TestResult, state_dir, target};

const TOKEN: &str = "keys-admin-token-51aa";

/// A store whose disk is full for names under `keys/new/`.
struct FullDisk(MemoryStore);

impl SecretStore for FullDisk {
    fn put(&self, name: &str, value: &Secret, p: &Provenance) -> Result<SecretRef, StoreError> {
        if name.starts_with("keys/new/") {
            return Err(StoreError::Backend("disk full".into()));
        }
        self.0.put(name, value, p)
    }
    fn get(&self, h: &SecretRef) -> Result<Secret, StoreError> {
        self.0.get(h)
    }
    fn resolve(&self, name: &str, stage: Stage) -> Result<Option<SecretRef>, StoreError> {
        self.0.resolve(name, stage)
    }
    fn promote(&self, h: &SecretRef) -> Result<(), StoreError> {
        self.0.promote(h)
    }
    fn discard(&self, h: &SecretRef) -> Result<(), StoreError> {
        self.0.discard(h)
    }
    fn list(&self) -> Result<Vec<SecretSummary>, StoreError> {
        self.0.list()
    }
    fn versions(&self, name: &str) -> Result<Vec<VersionInfo>, StoreError> {
        self.0.versions(name)
    }
    fn remove(&self, name: &str) -> Result<bool, StoreError> {
        self.0.remove(name)
    }
}

struct Keys {
    vendor: KeysVendor,
    host: PluginHost,
    scope: Arc<SecretScope>,
    token: SecretRef,
    _state: tempfile::TempDir,
}

fn keys(store: Arc<dyn SecretStore>) -> Keys {
    let vendor = KeysVendor::start(TOKEN).expect("start the key vendor");
    let state = state_dir();
    let config = Config {
        plugins: BTreeMap::from([(
            "keys".to_owned(),
            PluginConfig {
                targets: vec![target(vec![vendor.origin().to_owned()])],
            },
        )]),
        ..Config::default()
    };
    let mut opts = HostOptions::new(state.path());
    opts.extra_plugins = vec![PathBuf::from(rota_host::test_plugins::KEYS)];
    let host = PluginHost::new(&config, opts).expect("host");
    let scope = Arc::new(SecretScope::new(store, "run-1"));
    let token = scope
        .capture(
            "keys",
            &CaptureTarget {
                name: "keys/admin".into(),
                send_to: Vec::new(),
                ephemeral: false,
            },
            Secret::new(TOKEN),
            Provenance::default(),
        )
        .expect("store the token");
    Keys {
        vendor,
        host,
        scope,
        token,
        _state: state,
    }
}

impl Keys {
    fn create(&self, secret: &str) -> ActionCall {
        ActionCall {
            run_id: "run-1".into(),
            step_id: "create".into(),
            attempt: 1,
            idempotency_key: "run-1/create/2".into(),
            plugin: "keys".into(),
            action: "create-key".into(),
            input: json!({"token": self.token.to_json(), "name": "rota"}),
            captures: BTreeMap::from([(
                "secret".to_owned(),
                CaptureTarget {
                    name: secret.into(),
                    send_to: Vec::new(),
                    ephemeral: false,
                },
            )]),
            secrets: self.scope.clone(),
        }
    }
}

#[tokio::test]
async fn the_vendor_key_id_and_the_call_are_stored_with_the_captured_secret() -> TestResult {
    let store = Arc::new(MemoryStore::new());
    let k = keys(store.clone());
    let out = k.host.invoke(k.create("keys/demo/key")).await?;
    assert_eq!(out["key_id"], "k-1");
    let versions = store.versions("keys/demo/key")?;
    let p = &versions.first().ok_or("no version")?.provenance;
    assert_eq!(p.key_id.as_deref(), Some("k-1"), "read from the answer's /id");
    assert_eq!(p.idempotency_key.as_deref(), Some("run-1/create/2"));
    assert_eq!(p.step_id.as_deref(), Some("create"));
    let stored = store.get(&SecretRef::new("keys/demo/key", 1))?;
    assert_eq!(
        rota_testkit::fingerprint(stored.expose()),
        k.vendor.view().keys[0].fingerprint
    );
    Ok(())
}

#[tokio::test]
async fn a_capture_the_store_refuses_fails_the_call_naming_secret_and_key() {
    let k = keys(Arc::new(FullDisk(MemoryStore::new())));
    let e = k.host.invoke(k.create("keys/new/key")).await.err();
    let Some(ActionError::CaptureFailed { message, key_id }) = e else {
        panic!("expected a capture failure, got {e:?}");
    };
    assert_eq!(key_id.as_deref(), Some("k-1"));
    assert_eq!(
        message,
        "keys.create-key: the vendor answered with secret keys/new/key but rota could not store it \
         (secret store: disk full); the key it belongs to (vendor key ID k-1) is live at the vendor and \
         rota does not hold its value"
    );
    let view = k.vendor.view();
    assert_eq!(
        view.keys.len(),
        1,
        "the host reports the orphan; the executor revokes it"
    );
    let minted = k.vendor.minted_secrets();
    assert!(!message.contains(&minted[0]));
}
