//! The one seam between the executor and whatever runs actions.
//!
//! Design decision: the executor knows actions only through [`ActionCatalog`]
//! (static descriptions, read without running anything: this is what
//! `rota validate` and `rota plan` use) and [`ActionRunner`] (the call). The
//! WebAssembly plugin host implements both; the executor never changes when it
//! does.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use serde::Serialize;
use serde_json::Value;

use crate::scope::SecretScope;

/// Whether a vendor documents the API an action calls (VENDORS.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Basis {
    Documented,
    Modeled,
}

/// What the host knows about an action without running it.
#[derive(Clone, Debug, Serialize)]
pub struct ActionSpec {
    pub plugin: String,
    pub action: String,
    pub description: String,
    /// JSON Schema of the input. Fields that take a secret handle carry
    /// `"x-rota-secret": true`.
    pub input_schema: std::sync::Arc<Value>,
    /// JSON Schema of the output.
    pub output_schema: std::sync::Arc<Value>,
    /// Changes nothing at the vendor and writes no vendor audit entry.
    pub read_only: bool,
    pub basis: Basis,
    /// Names of the secrets this action may capture from a vendor response;
    /// the step maps each to a playbook `secrets` entry with `captures:`.
    pub captures: Vec<String>,
    /// What `rota runs resume` may do with a call of this action that was in
    /// flight when the run stopped.
    pub resume: ResumePolicy,
    /// An action of the same plugin that deletes, by its vendor key ID, what
    /// this action creates: run for an orphan a resume finds, and at once when
    /// a captured secret cannot be stored.
    pub revoke: Option<String>,
    /// RFC 6901 pointer to the vendor's key ID in the response a capture is
    /// taken from; stored in the same transaction as the captured secret.
    pub key_id: Option<String>,
}

/// What a resume does with an interrupted call (no vendor documents
/// idempotency keys, so a call in flight is never repeated blindly).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum ResumePolicy {
    /// The resume refuses and names the call to check: the default for an
    /// action that changes something and declares nothing.
    #[default]
    Refuse,
    /// Repeating the call is harmless (it sets a value, e.g. a PUT).
    Repeat,
    /// Read-only actions of the same plugin read the vendor's state: the
    /// optional `snapshot` runs just before the call (its output journaled
    /// with the intent), `reconcile` after an interruption decides whether
    /// the call was applied (adopt its result), not applied (redo it) or left
    /// an orphan (revoke it by key ID, then redo).
    Reconcile {
        snapshot: Option<String>,
        reconcile: String,
    },
}

impl ActionSpec {
    pub fn qualified_name(&self) -> String {
        format!("{}.{}", self.plugin, self.action)
    }
}

/// Static knowledge of the available plugin actions.
pub trait ActionCatalog: Send + Sync {
    /// Every plugin the catalog knows.
    fn plugins(&self) -> Vec<String>;

    fn lookup(&self, plugin: &str, action: &str) -> Option<ActionSpec>;

    /// Whether the action may run against the configured target. A `modeled`
    /// action that the operator has not enabled is unavailable, and its step
    /// runs its `manual:` fallback instead.
    fn is_enabled(&self, spec: &ActionSpec) -> bool {
        spec.basis == Basis::Documented
    }
}

/// Where a captured secret goes: decided by the playbook, never the plugin.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CaptureTarget {
    /// The rendered secret name, e.g. `plex/123456/7f0c/client-secret`.
    pub name: String,
    /// Plugins the captured secret may be injected into (the capturing plugin
    /// is always allowed).
    pub send_to: Vec<String>,
    /// Lives for the run only, never stored (e.g. a 15-minute token).
    pub ephemeral: bool,
}

/// One action call.
#[derive(Clone)]
pub struct ActionCall {
    pub run_id: String,
    pub step_id: String,
    pub attempt: u32,
    /// Stable across attempts and resumes of the same step iteration.
    pub idempotency_key: String,
    pub plugin: String,
    pub action: String,
    pub input: Value,
    /// capture name (from [`ActionSpec::captures`]) -> where to store it.
    pub captures: BTreeMap<String, CaptureTarget>,
    pub secrets: Arc<SecretScope>,
}

impl fmt::Debug for ActionCall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ActionCall")
            .field("run_id", &self.run_id)
            .field("step_id", &self.step_id)
            .field("attempt", &self.attempt)
            .field("plugin", &self.plugin)
            .field("action", &self.action)
            .finish_non_exhaustive()
    }
}

/// Runs plugin actions.
pub trait ActionRunner: Send + Sync {
    fn invoke(&self, call: ActionCall) -> BoxFuture<'static, Result<Value, ActionError>>;
}

/// The typed errors of the plugin ABI, plus what the host adds around a call.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ActionError {
    #[error("invalid input: {0}")]
    InvalidInput(String),
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    #[error("forbidden: {0}")]
    Forbidden(String),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("rate limited{}", retry_after.map(|d| format!(" (retry after {}s)", d.as_secs_f64())).unwrap_or_default())]
    RateLimited { retry_after: Option<Duration> },
    #[error("upstream error {status}: {body}")]
    Upstream { status: u16, body: String },
    #[error("denied by the sandbox: {0}")]
    Denied(String),
    #[error("plugin internal error: {0}")]
    Internal(String),
    /// The request never got an answer (connection refused or dropped).
    #[error("transport error: {0}")]
    Transport(String),
    /// A host limit (CPU, memory, wall time, response size) stopped the call.
    #[error("{0}")]
    Limit(String),
    #[error("output does not match the action's schema: {0}")]
    BadOutput(String),
    /// The vendor answered with a secret that could not be stored: the key it
    /// belongs to exists at the vendor but rota does not hold its value. The
    /// message names the plugin, action, secret and key ID; the executor
    /// revokes the key by `key_id` (when known) with the action's `revoke`.
    #[error("{message}")]
    CaptureFailed { message: String, key_id: Option<String> },
}

impl ActionError {
    /// Transient errors may succeed when retried; nothing else is retried.
    pub fn is_transient(&self) -> bool {
        match self {
            ActionError::RateLimited { .. } | ActionError::Transport(_) => true,
            ActionError::Upstream { status, .. } => matches!(status, 500 | 502 | 503 | 504 | 408),
            _ => false,
        }
    }

    /// A server-imposed wait before the next attempt.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ActionError::RateLimited { retry_after } => *retry_after,
            _ => None,
        }
    }

    /// A short machine-readable kind, used in JSON output and the journal.
    pub fn kind(&self) -> &'static str {
        match self {
            ActionError::InvalidInput(_) => "invalid-input",
            ActionError::Unauthorized(_) => "unauthorized",
            ActionError::Forbidden(_) => "forbidden",
            ActionError::NotFound(_) => "not-found",
            ActionError::Conflict(_) => "conflict",
            ActionError::RateLimited { .. } => "rate-limited",
            ActionError::Upstream { .. } => "upstream",
            ActionError::Denied(_) => "denied",
            ActionError::Internal(_) => "internal",
            ActionError::Transport(_) => "transport",
            ActionError::Limit(_) => "limit",
            ActionError::BadOutput(_) => "bad-output",
            ActionError::CaptureFailed { .. } => "capture-failed",
        }
    }
}

/// A catalog with no plugins: `core.*` only.
#[derive(Debug, Default)]
pub struct NoPlugins;

impl ActionCatalog for NoPlugins {
    fn plugins(&self) -> Vec<String> {
        Vec::new()
    }
    fn lookup(&self, _plugin: &str, _action: &str) -> Option<ActionSpec> {
        None
    }
}

impl ActionRunner for NoPlugins {
    fn invoke(&self, call: ActionCall) -> BoxFuture<'static, Result<Value, ActionError>> {
        Box::pin(async move {
            Err(ActionError::Internal(format!(
                "no plugin host is configured to run {}.{}",
                call.plugin, call.action
            )))
        })
    }
}
