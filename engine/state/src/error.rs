//! The one error type of the state layer.
//!
//! Design decision: every error names the thing that is damaged or missing
//! (the database file, the identity file, the secret version, the run), so an
//! operator can act on it without reading code. SQLite's "malformed" and "not a
//! database" errors become [`StateError::DatabaseCorrupt`], never a generic
//! failure, and nothing is ever silently recreated over damaged state.

use std::path::PathBuf;

use rota_core::{SecretRef, StoreError};

use crate::lock::LockHolder;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "state database {path} is damaged ({detail}); the database cannot be trusted: restore it from a \
         backup (see docs/security.md)"
    )]
    DatabaseCorrupt { path: PathBuf, detail: String },
    #[error("state database {path}: {detail}")]
    Database { path: PathBuf, detail: String },
    #[error(
        "state database {path} has schema version {found}, newer than this rota understands ({known}); \
         use a newer rota"
    )]
    SchemaTooNew { path: PathBuf, found: i64, known: i64 },
    #[error("identity {path}: {reason}")]
    Identity { path: PathBuf, reason: String },
    #[error("audit key {path}: {reason}")]
    AuditKey { path: PathBuf, reason: String },
    #[error("secret {handle} could not be decrypted: {reason}")]
    SecretCorrupt { handle: SecretRef, reason: String },
    #[error("run {0} is not in the journal")]
    UnknownRun(String),
    #[error("run {0} is already in the journal")]
    DuplicateRun(String),
    #[error("run {run_id}: {reason}")]
    Journal { run_id: String, reason: String },
    #[error(
        "lock {:?} is held by run {} (pid {} on {}, since {})",
        .0.name, .0.run_id, .0.pid, .0.host, .0.acquired_at
    )]
    LockHeld(Box<LockHolder>),
    #[error(
        "gave up waiting for lock {:?}, still held by run {} (pid {} on {})",
        .0.name, .0.run_id, .0.pid, .0.host
    )]
    LockTimeout(Box<LockHolder>),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Invalid(String),
}

impl StateError {
    pub(crate) fn io(what: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            what,
            path: path.into(),
            source,
        }
    }
}

/// A rusqlite error before the database path is attached (see `Db::classify`).
impl From<rusqlite::Error> for StateError {
    fn from(e: rusqlite::Error) -> Self {
        let corrupt = matches!(
            e.sqlite_error_code(),
            Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase)
        );
        if corrupt {
            StateError::DatabaseCorrupt {
                path: PathBuf::new(),
                detail: e.to_string(),
            }
        } else {
            StateError::Database {
                path: PathBuf::new(),
                detail: e.to_string(),
            }
        }
    }
}

impl From<serde_json::Error> for StateError {
    fn from(e: serde_json::Error) -> Self {
        StateError::Invalid(format!("stored JSON could not be read: {e}"))
    }
}

impl From<StateError> for StoreError {
    fn from(e: StateError) -> Self {
        match e {
            StateError::Store(inner) => inner,
            StateError::SecretCorrupt { handle, reason } => StoreError::Corrupt { handle, reason },
            other => StoreError::Backend(other.to_string()),
        }
    }
}
