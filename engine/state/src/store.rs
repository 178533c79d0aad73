//! [`SqliteStore`]: the durable, encrypted [`SecretStore`].
//!
//! Design decision: `put` is the capture commit. In ONE `BEGIN IMMEDIATE`
//! transaction, synced before it returns, it writes the age-encrypted value
//! as `pending`, its provenance (vendor key ID, run, step), a journal
//! `capture` record when a run is named, and an audit entry. A crash at any
//! instant therefore leaves either all of them or none. Labels behave exactly
//! like `rota_core::MemoryStore`; version numbers are never reused for a
//! name (even after `discard` or `remove`), so a journaled handle can never
//! come to mean a different value.

use std::io::Write;
use std::sync::Arc;

use age::x25519;
use rota_core::secret::validate_secret_name;
use rota_core::{Provenance, Secret, SecretRef, SecretStore, SecretSummary, Stage, StoreError, VersionInfo};
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::json;
use zeroize::Zeroizing;

use crate::audit::{self, AuditEvent};
use crate::db::{self, fmt_time, now, parse_time};
use crate::journal::{self, StepKey};
use crate::{State, StateError};

/// The durable secret store over a [`State`].
#[derive(Clone, Debug)]
pub struct SqliteStore {
    state: Arc<State>,
}

/// Which secrets [`SqliteStore::export`] writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExportSelection {
    /// Every version of one secret.
    Name(String),
    /// Every version of every secret.
    All,
}

/// One version and whether it decrypts.
pub type VersionCheck = (SecretRef, Result<(), StateError>);

/// The plaintext format of an export, inside the age file.
pub const EXPORT_FORMAT: &str = "rota-secrets-export/1";

impl SqliteStore {
    pub fn new(state: Arc<State>) -> Self {
        Self { state }
    }

    pub fn state(&self) -> &Arc<State> {
        &self.state
    }

    /// `rota secrets get --reveal`: the value, with an audit entry recording
    /// who revealed which version (never the value).
    pub fn reveal(&self, handle: &SecretRef) -> Result<Secret, StateError> {
        let value = self.decrypt(handle)?;
        let key_id = self.key_id_of(handle)?;
        audit::append_standalone(
            &self.state,
            &AuditEvent::new("secret.reveal")
                .secret(handle.to_string())
                .key_id(key_id),
        )?;
        Ok(value)
    }

    /// `rota secrets export`: an ASCII-armored age file that
    /// `age -d -i <identity>` decrypts, encrypted to the store's identity and
    /// to `extra_recipients` (`age1...` strings). Its plaintext is JSON:
    /// `{"format": "rota-secrets-export/1", "secrets": [{"name", "version",
    /// "stages", "created_at", "key_id", "value"}]}`. Writes an audit entry.
    pub fn export(
        &self,
        selection: &ExportSelection,
        extra_recipients: &[String],
    ) -> Result<String, StateError> {
        let mut recipients: Vec<x25519::Recipient> = vec![self.state.recipient()?];
        for r in extra_recipients {
            recipients.push(r.parse().map_err(|e| {
                StateError::Invalid(format!("recipient {r:?} is not an age X25519 key: {e}"))
            })?);
        }
        let names: Vec<String> = match selection {
            ExportSelection::Name(name) => {
                if self.versions(name)?.is_empty() {
                    return Err(StoreError::NotFound(name.clone()).into());
                }
                vec![name.clone()]
            }
            ExportSelection::All => self.list()?.into_iter().map(|s| s.name).collect(),
        };
        let mut secrets = Vec::new();
        for name in &names {
            for info in self.versions(name)? {
                let value = self.decrypt(&info.handle)?;
                secrets.push(json!({
                    "name": name,
                    "version": info.handle.version,
                    "stages": info.stages,
                    "created_at": fmt_time(info.created_at),
                    "key_id": info.provenance.key_id,
                    "value": value.expose(),
                }));
            }
        }
        let doc = Zeroizing::new(serde_json::to_vec_pretty(&json!({
            "format": EXPORT_FORMAT,
            "secrets": secrets,
        }))?);
        drop(secrets);
        let armored = encrypt_armored(&recipients, &doc)?;
        let what = match selection {
            ExportSelection::Name(n) => n.clone(),
            ExportSelection::All => "*".to_owned(),
        };
        audit::append_standalone(
            &self.state,
            &AuditEvent::new("secret.export")
                .secret(what)
                .detail(json!({"secrets": names.len(), "extra_recipients": extra_recipients.len()})),
        )?;
        Ok(armored)
    }

    /// Tries to decrypt every stored version: `(handle, Ok(()) | Err)`.
    pub fn check_all(&self) -> Result<Vec<VersionCheck>, StateError> {
        let handles: Vec<SecretRef> = self.state.db.with(|c| {
            let mut stmt =
                c.prepare_cached("SELECT name, version FROM secret_versions ORDER BY name, version")?;
            let rows = stmt.query_map([], |r| {
                Ok(SecretRef::new(r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })?;
        if handles.is_empty() {
            return Ok(Vec::new());
        }
        let identity = self.state.identity()?;
        Ok(handles
            .into_iter()
            .map(|h| {
                let r = self.decrypt_with(&identity, &h).map(drop);
                (h, r)
            })
            .collect())
    }

    fn key_id_of(&self, handle: &SecretRef) -> Result<Option<String>, StateError> {
        self.state.db.with(|c| {
            Ok(db::row(
                c,
                "SELECT key_id FROM secret_versions WHERE name = ?1 AND version = ?2",
                params![handle.name, handle.version as i64],
                |r| r.get(0),
            )
            .optional()?
            .flatten())
        })
    }

    fn decrypt(&self, handle: &SecretRef) -> Result<Secret, StateError> {
        // Look the version up first, so a missing one is NotFound, not an identity error.
        self.state.db.with(|c| ensure_version(c, handle))?;
        let identity = self.state.identity()?;
        self.decrypt_with(&identity, handle)
    }

    fn decrypt_with(&self, identity: &x25519::Identity, handle: &SecretRef) -> Result<Secret, StateError> {
        let ciphertext: Vec<u8> = self.state.db.with(|c| {
            ensure_version(c, handle)?;
            Ok(db::row(
                c,
                "SELECT ciphertext FROM secret_versions WHERE name = ?1 AND version = ?2",
                params![handle.name, handle.version as i64],
                |r| r.get(0),
            )?)
        })?;
        let corrupt = |reason: String| StateError::SecretCorrupt {
            handle: handle.clone(),
            reason,
        };
        let plain = Zeroizing::new(age::decrypt(identity, &ciphertext).map_err(|e| {
            corrupt(match e {
                age::DecryptError::NoMatchingKeys => {
                    "it is not encrypted to this state's identity".to_owned()
                }
                age::DecryptError::InvalidHeader | age::DecryptError::UnknownFormat => {
                    "its stored ciphertext is damaged (the age header is unreadable)".to_owned()
                }
                age::DecryptError::InvalidMac => {
                    "its stored ciphertext is damaged (the age header MAC does not match)".to_owned()
                }
                other => format!("its stored ciphertext is damaged ({other})"),
            })
        })?);
        let text = String::from_utf8(plain.to_vec())
            .map_err(|_| corrupt("it decrypted to bytes that are not UTF-8".to_owned()))?;
        Ok(Secret::new(text))
    }

    /// The capture commit, for the executor when it knows the exact step
    /// (and iteration) capturing: like `SecretStore::put`, but the journal's
    /// capture record attaches to `step` rather than to the latest started
    /// attempt of `provenance.step_id`. Needs `provenance.run_id` to journal.
    pub fn put_captured(
        &self,
        name: &str,
        value: &Secret,
        provenance: &Provenance,
        step: &StepKey,
    ) -> Result<SecretRef, StateError> {
        self.put_inner(name, value, provenance, Some(step))
    }

    fn put_inner(
        &self,
        name: &str,
        value: &Secret,
        provenance: &Provenance,
        step: Option<&StepKey>,
    ) -> Result<SecretRef, StateError> {
        validate_secret_name(name).map_err(StoreError::InvalidName)?;
        let recipient = self.state.recipient()?;
        let ciphertext = age::encrypt(&recipient, value.expose().as_bytes())
            .map_err(|e| StateError::Invalid(format!("cannot encrypt {name}: {e}")))?;
        let state = &self.state;
        state.db.write(|tx| {
            let last: Option<i64> = tx
                .query_row("SELECT last_version FROM secret_counters WHERE name = ?1", [name], |r| r.get(0))
                .optional()?;
            let version = last.unwrap_or(0) + 1;
            db::exec(tx,
                "INSERT INTO secret_counters(name, last_version) VALUES (?1, ?2)
                 ON CONFLICT(name) DO UPDATE SET last_version = excluded.last_version",
                params![name, version],
            )?;
            db::exec(tx, "UPDATE secret_versions SET is_pending = 0 WHERE name = ?1", [name])?;
            db::exec(tx,
                "INSERT INTO secret_versions
                   (name, version, created_at, is_pending, run_id, step_id, source, key_id, recipient, ciphertext)
                 VALUES (?1, ?2, ?3, 1, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    name,
                    version,
                    fmt_time(now()),
                    provenance.run_id,
                    provenance.step_id,
                    provenance.source,
                    provenance.key_id,
                    recipient.to_string(),
                    ciphertext
                ],
            )?;
            let handle = SecretRef::new(name, version as u64);
            if let Some(run_id) = &provenance.run_id {
                journal::record_capture(tx, run_id, &handle, provenance, step)?;
            }
            audit::append(
                state,
                tx,
                &AuditEvent::new("secret.put")
                    .secret(handle.to_string())
                    .key_id(provenance.key_id.clone())
                    .run_id(provenance.run_id.clone())
                    .detail(json!({"step": provenance.step_id, "source": provenance.source})),
            )?;
            Ok(handle)
        })
    }

    fn promote_inner(&self, handle: &SecretRef) -> Result<(), StateError> {
        let state = &self.state;
        state.db.write(|tx| {
            ensure_version(tx, handle)?;
            let is_current: bool = db::row(tx,
                "SELECT is_current FROM secret_versions WHERE name = ?1 AND version = ?2",
                params![handle.name, handle.version as i64],
                |r| r.get(0),
            )?;
            if is_current {
                return Ok(());
            }
            db::exec(tx, "UPDATE secret_versions SET is_previous = 0 WHERE name = ?1", [&handle.name])?;
            db::exec(tx,
                "UPDATE secret_versions SET is_current = 0, is_previous = 1 WHERE name = ?1 AND is_current = 1",
                [&handle.name],
            )?;
            db::exec(tx,
                "UPDATE secret_versions SET is_pending = 0, is_current = 1 WHERE name = ?1 AND version = ?2",
                params![handle.name, handle.version as i64],
            )?;
            audit::append(state, tx, &AuditEvent::new("secret.promote").secret(handle.to_string()))?;
            Ok(())
        })
    }

    fn discard_inner(&self, handle: &SecretRef) -> Result<(), StateError> {
        let state = &self.state;
        state.db.write(|tx| {
            ensure_version(tx, handle)?;
            let (is_current, key_id): (bool, Option<String>) = db::row(
                tx,
                "SELECT is_current, key_id FROM secret_versions WHERE name = ?1 AND version = ?2",
                params![handle.name, handle.version as i64],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            if is_current {
                return Err(StoreError::InvalidTransition {
                    handle: handle.clone(),
                    action: "discarded",
                    reason: "it is the current version".to_owned(),
                }
                .into());
            }
            db::exec(
                tx,
                "DELETE FROM secret_versions WHERE name = ?1 AND version = ?2",
                params![handle.name, handle.version as i64],
            )?;
            audit::append(
                state,
                tx,
                &AuditEvent::new("secret.discard")
                    .secret(handle.to_string())
                    .key_id(key_id),
            )?;
            Ok(())
        })
    }

    fn remove_inner(&self, name: &str) -> Result<bool, StateError> {
        let state = &self.state;
        state.db.write(|tx| {
            let n = db::exec(tx, "DELETE FROM secret_versions WHERE name = ?1", [name])?;
            if n > 0 {
                audit::append(
                    state,
                    tx,
                    &AuditEvent::new("secret.rm")
                        .secret(name)
                        .detail(json!({"versions": n})),
                )?;
            }
            Ok(n > 0)
        })
    }

    fn list_inner(&self) -> Result<Vec<SecretSummary>, StateError> {
        self.state.db.with(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT name, COUNT(*),
                        MAX(CASE WHEN is_current THEN version END),
                        MAX(CASE WHEN is_pending THEN version END),
                        MAX(CASE WHEN is_previous THEN version END)
                 FROM secret_versions GROUP BY name ORDER BY name",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok(SecretSummary {
                    name: r.get(0)?,
                    versions: r.get::<_, i64>(1)? as usize,
                    current: r.get::<_, Option<i64>>(2)?.map(|v| v as u64),
                    pending: r.get::<_, Option<i64>>(3)?.map(|v| v as u64),
                    previous: r.get::<_, Option<i64>>(4)?.map(|v| v as u64),
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
    }

    fn versions_inner(&self, name: &str) -> Result<Vec<VersionInfo>, StateError> {
        let rows = self.state.db.with(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT version, created_at, is_current, is_pending, is_previous, run_id, step_id, source, key_id
                 FROM secret_versions WHERE name = ?1 ORDER BY version",
            )?;
            let rows = stmt.query_map([name], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    [r.get::<_, bool>(2)?, r.get::<_, bool>(3)?, r.get::<_, bool>(4)?],
                    Provenance {
                        run_id: r.get(5)?,
                        step_id: r.get(6)?,
                        source: r.get(7)?,
                        key_id: r.get(8)?,
                        // Journaled with the capture record only.
                        idempotency_key: None,
                    },
                ))
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })?;
        if rows.is_empty() {
            return Err(StoreError::NotFound(name.to_owned()).into());
        }
        rows.into_iter()
            .map(|(version, created, flags, provenance)| {
                let stages = [Stage::Current, Stage::Pending, Stage::Previous]
                    .into_iter()
                    .zip(flags)
                    .filter_map(|(s, on)| on.then_some(s))
                    .collect();
                Ok(VersionInfo {
                    handle: SecretRef::new(name, version as u64),
                    stages,
                    created_at: parse_time(&created)?,
                    provenance,
                })
            })
            .collect()
    }

    fn resolve_inner(&self, name: &str, stage: Stage) -> Result<Option<SecretRef>, StateError> {
        let column = match stage {
            Stage::Current => "is_current",
            Stage::Pending => "is_pending",
            Stage::Previous => "is_previous",
        };
        self.state.db.with(|c| {
            let v: Option<i64> = c
                .query_row(
                    &format!("SELECT version FROM secret_versions WHERE name = ?1 AND {column} = 1"),
                    [name],
                    |r| r.get(0),
                )
                .optional()?;
            Ok(v.map(|v| SecretRef::new(name, v as u64)))
        })
    }
}

fn ensure_version(c: &Connection, handle: &SecretRef) -> Result<(), StateError> {
    let versions: i64 = db::row(
        c,
        "SELECT COUNT(*) FROM secret_versions WHERE name = ?1",
        [&handle.name],
        |r| r.get(0),
    )?;
    if versions == 0 {
        return Err(StoreError::NotFound(handle.name.clone()).into());
    }
    let found: i64 = db::row(
        c,
        "SELECT COUNT(*) FROM secret_versions WHERE name = ?1 AND version = ?2",
        params![handle.name, handle.version as i64],
        |r| r.get(0),
    )?;
    if found == 0 {
        return Err(StoreError::NoSuchVersion(handle.clone()).into());
    }
    Ok(())
}

fn encrypt_armored(recipients: &[x25519::Recipient], plain: &[u8]) -> Result<String, StateError> {
    let fail = |e: &dyn std::fmt::Display| StateError::Invalid(format!("cannot encrypt the export: {e}"));
    let encryptor = age::Encryptor::with_recipients(recipients.iter().map(|r| r as &dyn age::Recipient))
        .map_err(|e| fail(&e))?;
    let mut out = Vec::new();
    let armor = age::armor::ArmoredWriter::wrap_output(&mut out, age::armor::Format::AsciiArmor)
        .map_err(|e| fail(&e))?;
    let mut writer = encryptor.wrap_output(armor).map_err(|e| fail(&e))?;
    writer.write_all(plain).map_err(|e| fail(&e))?;
    writer.finish().and_then(|a| a.finish()).map_err(|e| fail(&e))?;
    String::from_utf8(out).map_err(|e| fail(&e))
}

impl SecretStore for SqliteStore {
    fn put(&self, name: &str, value: &Secret, provenance: &Provenance) -> Result<SecretRef, StoreError> {
        Ok(self.put_inner(name, value, provenance, None)?)
    }

    fn get(&self, handle: &SecretRef) -> Result<Secret, StoreError> {
        Ok(self.decrypt(handle)?)
    }

    fn resolve(&self, name: &str, stage: Stage) -> Result<Option<SecretRef>, StoreError> {
        Ok(self.resolve_inner(name, stage)?)
    }

    fn promote(&self, handle: &SecretRef) -> Result<(), StoreError> {
        Ok(self.promote_inner(handle)?)
    }

    fn discard(&self, handle: &SecretRef) -> Result<(), StoreError> {
        Ok(self.discard_inner(handle)?)
    }

    fn list(&self) -> Result<Vec<SecretSummary>, StoreError> {
        Ok(self.list_inner()?)
    }

    fn versions(&self, name: &str) -> Result<Vec<VersionInfo>, StoreError> {
        Ok(self.versions_inner(name)?)
    }

    fn remove(&self, name: &str) -> Result<bool, StoreError> {
        Ok(self.remove_inner(name)?)
    }
}
