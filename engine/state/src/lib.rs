//! rota's embedded state: the encrypted secret store, the run journal, credential
//! locks, the HMAC-chained audit log and the credential inventory, in one SQLite
//! database under the state directory.
//!
//! Design decision: one [`State`] (one connection per process, shared as
//! `Arc<State>`) owns the database; every feature is a set of methods on it,
//! and [`SqliteStore`] wraps it behind `rota_core::SecretStore`. Writes that
//! belong together (a captured secret, its provenance, its journal record and
//! its audit entry) commit in one synced transaction.
//!
//! Layout of the state directory (mode 0700 when rota creates it):
//! `state.db` (+ `-wal`, `-shm`; 0600), `identity.txt` (age X25519 identity,
//! 0600, created on first use unless `ROTA_IDENTITY_FILE` names another),
//! `audit.key` (HMAC key of the audit chain, 0600).

mod audit;
mod config;
mod db;
mod error;
mod fsutil;
mod identity;
mod input;
mod inventory;
mod journal;
mod lock;
mod process;
pub mod render;
mod state;
mod store;

pub use audit::{AuditEntry, AuditEvent, AuditProblem, AuditReport};
pub use config::{
    AUDIT_KEY_FILE, DB_FILE, ENV_IDENTITY_FILE, ENV_OPERATOR, ENV_PASSPHRASE_FILE, ENV_STATE_DIR,
    IDENTITY_FILE, IdentityConfig, StateConfig, default_state_dir, resolve_state_dir,
};
pub use db::{BUSY_TIMEOUT, SCHEMA_VERSION};
pub use error::StateError;
pub use identity::{create_identity_file, passphrase_unlocks};
pub use input::{prompt_secret_value, read_secret_value};
pub use inventory::{Credential, CredentialReport, CredentialStatus, parse_due};
pub use journal::{
    Capture, EventData, Intent, Iteration, JournalEvent, ResumeBlocker, RunOutcome, RunRecord, RunStart,
    RunStatus, RunSummary, StepEnd, StepError, StepKey, StepOutcome, StepRecord,
};
pub use lock::{LOCK_POLL, LockHolder, LockWait};
pub use process::{Actor, Liveness, ProcessId};
pub use state::{CheckReport, State};
pub use store::{EXPORT_FORMAT, ExportSelection, SqliteStore, VersionCheck};
