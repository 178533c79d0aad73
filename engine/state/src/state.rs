//! [`State`]: one open state directory (database, identity, audit key).
//!
//! Design decision: a `State` is cheap to share (`Arc<State>`) and owns one
//! SQLite connection; each process opens its own. Encryption needs only the
//! public recipient, recorded in the database when the identity is first
//! used, so capturing a secret never waits for a passphrase; decrypting loads
//! the identity and checks it is the one the secrets were encrypted to.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, OnceLock};

use age::x25519;
use rusqlite::Connection;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::config::StateConfig;
use crate::db::{self, Db};
use crate::process::{Actor, ProcessId};
use crate::{StateError, fsutil, identity};

const META_RECIPIENT: &str = "recipient";
const META_AUDIT_KEY_ID: &str = "audit_key_id";

pub struct State {
    config: StateConfig,
    pub(crate) db: Db,
    pub(crate) actor: Actor,
    pub(crate) process: ProcessId,
    audit_key: OnceLock<Arc<Zeroizing<Vec<u8>>>>,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("dir", &self.config.dir)
            .finish_non_exhaustive()
    }
}

/// What [`State::check`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct CheckReport {
    /// Problems `PRAGMA integrity_check` reported (empty when sound).
    pub database: Vec<String>,
    /// Secret versions that do not decrypt, with the reason.
    pub secrets: Vec<(String, String)>,
    /// Audit chain problems.
    pub audit: Vec<String>,
    pub versions_checked: usize,
}

impl CheckReport {
    pub fn is_ok(&self) -> bool {
        self.database.is_empty() && self.secrets.is_empty() && self.audit.is_empty()
    }
}

impl State {
    /// Opens (creating when missing) the state directory described by the
    /// environment: see [`StateConfig::from_env`].
    pub fn open_default() -> Result<Arc<Self>, StateError> {
        Self::open_with(StateConfig::from_env()?)
    }

    /// Opens `dir` with the default layout and no passphrase prompt.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Arc<Self>, StateError> {
        Self::open_with(StateConfig::in_dir(dir))
    }

    pub fn open_with(config: StateConfig) -> Result<Arc<Self>, StateError> {
        let db = Db::open(&config.dir, &config.db_path())?;
        Ok(Arc::new(Self {
            actor: Actor::current(config.operator.clone()),
            process: ProcessId::current(),
            config,
            db,
            audit_key: OnceLock::new(),
        }))
    }

    /// The secret store over this state.
    pub fn store(self: &Arc<Self>) -> crate::SqliteStore {
        crate::SqliteStore::new(self.clone())
    }

    pub fn config(&self) -> &StateConfig {
        &self.config
    }

    pub fn dir(&self) -> &Path {
        &self.config.dir
    }

    pub fn db_path(&self) -> &Path {
        self.db.path()
    }

    pub fn actor(&self) -> &Actor {
        &self.actor
    }

    /// The public key every stored version is encrypted to. Loads (or, on a
    /// fresh state, creates) the identity only the first time.
    pub fn recipient(&self) -> Result<x25519::Recipient, StateError> {
        if let Some(r) = self.db.with(|c| db::meta_get(c, META_RECIPIENT))? {
            return parse_recipient(&r);
        }
        let fresh = self.db.with(|c| Ok(count_versions(c)? == 0))?;
        let identity = identity::load(&self.config.identity, fresh)?;
        let recipient = identity.to_public();
        self.db.write(|tx| {
            if db::meta_get(tx, META_RECIPIENT)?.is_none() {
                db::meta_set(tx, META_RECIPIENT, &recipient.to_string())?;
            }
            Ok(())
        })?;
        self.recipient()
    }

    /// The identity, checked against the recorded recipient.
    pub(crate) fn identity(&self) -> Result<Arc<x25519::Identity>, StateError> {
        let recorded = self.db.with(|c| db::meta_get(c, META_RECIPIENT))?;
        let Some(recorded) = recorded else {
            self.recipient()?;
            return self.identity();
        };
        let identity = identity::load(&self.config.identity, false)?;
        if identity.to_public().to_string() != recorded {
            return Err(StateError::Identity {
                path: self.config.identity.path.clone(),
                reason: format!(
                    "is not the identity this state's secrets are encrypted to ({recorded}); restore the \
                     right identity file from your backup"
                ),
            });
        }
        Ok(identity)
    }

    /// The HMAC key of the audit chain (`<state dir>/audit.key`), created
    /// with the first audit entry.
    pub(crate) fn audit_key(&self, conn: &Connection) -> Result<Arc<Zeroizing<Vec<u8>>>, StateError> {
        if let Some(k) = self.audit_key.get() {
            return Ok(k.clone());
        }
        let path = self.config.audit_key_path();
        let recorded = db::meta_get(conn, META_AUDIT_KEY_ID)?;
        let has_entries: i64 = db::row(conn, "SELECT COUNT(*) FROM audit", [], |r| r.get(0))?;
        let key_err = |reason: String| StateError::AuditKey {
            path: path.clone(),
            reason,
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => Zeroizing::new(t),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if recorded.is_some() || has_entries > 0 {
                    return Err(key_err(
                        "does not exist but the audit log was written with it; restore it from your backup \
                         (see docs/security.md)"
                            .to_owned(),
                    ));
                }
                let mut raw = Zeroizing::new([0u8; 32]);
                rand::fill(&mut raw[..]);
                let hex = Zeroizing::new(format!("{}\n", hex::encode(&raw[..])));
                fsutil::create_private_file(&path, hex.as_bytes())?;
                Zeroizing::new(
                    std::fs::read_to_string(&path)
                        .map_err(|e| StateError::io("cannot read audit key", &path, e))?,
                )
            }
            Err(e) => return Err(StateError::io("cannot read audit key", &path, e)),
        };
        let key = Zeroizing::new(
            hex::decode(text.trim())
                .ok()
                .filter(|k| k.len() == 32)
                .ok_or_else(|| key_err("is damaged: expected 64 hex digits".to_owned()))?,
        );
        let id = key_id(&key);
        match recorded {
            Some(r) if r != id => {
                return Err(key_err(
                    "is not the key this audit log was written with; restore the right one".to_owned(),
                ));
            }
            Some(_) => {}
            None => db::meta_set(conn, META_AUDIT_KEY_ID, &id)?,
        }
        let key = Arc::new(key);
        let _ = self.audit_key.set(key.clone());
        Ok(key)
    }

    /// A consistent online copy of the database to `dest` (0600), taken with
    /// `VACUUM INTO` while other connections may be writing. `dest` must not
    /// exist. The copy holds ciphertext only: back up the identity too.
    pub fn backup(&self, dest: &Path) -> Result<(), StateError> {
        if dest.exists() {
            return Err(StateError::Invalid(format!(
                "backup destination {} already exists; choose a new file",
                dest.display()
            )));
        }
        fsutil::touch_private(dest)?;
        let dest_str = dest
            .to_str()
            .ok_or_else(|| StateError::Invalid(format!("backup path {} is not UTF-8", dest.display())))?;
        let result = self.db.with(|c| {
            db::exec(c, "VACUUM INTO ?1", [dest_str])?;
            Ok(())
        });
        if result.is_err() {
            let _ = std::fs::remove_file(dest);
        }
        result?;
        crate::audit::append_standalone(
            self,
            &crate::audit::AuditEvent::new("state.backup").detail(serde_json::json!({"to": dest_str})),
        )?;
        Ok(())
    }

    /// Checks everything: the database pages, that every secret version
    /// decrypts, and the audit chain. Reports each damaged item by name.
    pub fn check(self: &Arc<Self>) -> Result<CheckReport, StateError> {
        let mut report = CheckReport {
            database: self.db.integrity_check()?,
            ..CheckReport::default()
        };
        let store = crate::store::SqliteStore::new(self.clone());
        for (handle, result) in store.check_all()? {
            report.versions_checked += 1;
            if let Err(e) = result {
                report.secrets.push((handle.to_string(), e.to_string()));
            }
        }
        report.audit = crate::audit::verify(self)?
            .problems
            .iter()
            .map(|p| p.to_string())
            .collect();
        Ok(report)
    }
}

fn key_id(key: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(b"rota-audit-key-id\n");
    h.update(key);
    hex::encode(&h.finalize()[..8])
}

fn parse_recipient(s: &str) -> Result<x25519::Recipient, StateError> {
    x25519::Recipient::from_str(s)
        .map_err(|e| StateError::Invalid(format!("recorded recipient {s:?} is unreadable: {e}")))
}

pub(crate) fn count_versions(c: &Connection) -> Result<i64, StateError> {
    Ok(db::row(c, "SELECT COUNT(*) FROM secret_versions", [], |r| {
        r.get(0)
    })?)
}
