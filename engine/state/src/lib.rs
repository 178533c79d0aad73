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
//!
//! How the executor drives it (each call commits before it returns):
//!
//! ```
//! use rota_core::{Provenance, Secret, SecretStore};
//! use rota_state::{
//!     Intent, LockWait, RunOutcome, RunStart, RunStatus, State, StepEnd, StepKey, StepOutcome,
//! };
//! use serde_json::json;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! let state = State::open(dir.path().join("state"))?; // the CLI: State::open_default()
//! let store = state.store(); // rota_core::SecretStore, for the SecretScope
//!
//! state.begin_run(&RunStart {
//!     run_id: "run-1".into(),
//!     playbook_name: "plex-rotate".into(),
//!     playbook_path: "playbooks/plex.yaml".into(),
//!     playbook_digest: "sha256:...".into(),
//!     inputs: json!({"customer": "acme"}),
//!     plugin_digests: [("plex".to_owned(), "sha256:...".to_owned())].into(),
//!     operator: None,
//! })?;
//! state.acquire_locks(&["plex/acme/c1".into()], "run-1", LockWait::NoWait, &mut |_| {})?;
//!
//! let step = StepKey::new("mint");
//! state.step_started("run-1", &step, 1)?;
//! // Before every call that changes something at a vendor:
//! state.intent("run-1", &step, &Intent {
//!     action: "plex.create_client_secret".into(),
//!     input: json!({"client_id": "c1"}),
//!     idempotency_key: Some("run-1/mint".into()),
//!     ..Intent::default()
//! })?;
//! // The vendor answered: the capture commit (value, key ID, journal, audit).
//! let provenance = Provenance {
//!     run_id: Some("run-1".into()),
//!     step_id: Some("mint".into()),
//!     source: Some("plex".into()),
//!     key_id: Some("kid-1".into()),
//!     idempotency_key: Some("run-1/mint".into()),
//! };
//! let handle = store.put_captured("plex/acme/client-secret", &Secret::new("v"), &provenance, &step)?;
//! state.step_finished("run-1", &step, &StepEnd {
//!     outcome: StepOutcome::Succeeded,
//!     outputs: json!({"secret": handle.to_json(), "key_id": "kid-1"}),
//!     error: None,
//! })?;
//! store.promote(&handle)?;
//! state.run_finished("run-1", RunOutcome::Succeeded)?;
//! state.release_locks("run-1")?;
//!
//! // `rota runs show` / resume read it back:
//! let run = state.load_run("run-1")?;
//! assert_eq!(run.summary.status, RunStatus::Succeeded);
//! assert_eq!(run.completed().count(), 1);
//! assert_eq!(run.in_flight().count(), 0);
//! print!("{}", rota_state::render::run_timeline(&run));
//! # Ok(()) }
//! ```

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
mod sync;

pub use audit::{AuditEntry, AuditEvent, AuditProblem, AuditReport};
pub use config::{
    AUDIT_KEY_FILE, DB_FILE, ENV_IDENTITY_FILE, ENV_OPERATOR, ENV_PASSPHRASE_FILE, ENV_STATE_DIR,
    IDENTITY_FILE, IdentityConfig, StateConfig, default_state_dir, resolve_state_dir,
};
pub use db::{BUSY_TIMEOUT, Durability, SCHEMA_VERSION};
pub use error::StateError;
pub use identity::{create_identity_file, passphrase_unlocks};
pub use input::{prompt_secret_value, read_secret_value};
pub use inventory::{Credential, CredentialReport, CredentialStatus, parse_due};
pub use journal::{
    Capture, EventData, InFlightCalls, Intent, Iteration, JournalEvent, ResumeBlocker, RunOutcome, RunRecord,
    RunStart, RunStatus, RunSummary, StepEnd, StepError, StepKey, StepOutcome, StepRecord,
};
pub use lock::{LOCK_POLL, LockHolder, LockWait};
pub use process::{Actor, Liveness, ProcessId};
pub use state::{CheckReport, State};
pub use store::{EXPORT_FORMAT, ExportSelection, SqliteStore, VersionCheck};
