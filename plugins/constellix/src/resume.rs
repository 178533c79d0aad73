//! The envelopes rota hands the actions that make generate-key and
//! delete-key safe to resume (`docs/plugins.md`, the resume contract), and
//! the answer a reconcile action gives.
//!
//! Design decision: kept here, shaped exactly as the executor sends and reads
//! them, until the SDK carries its own (`rota_plugin_sdk::resume`, landing
//! with the reconcile work); then this module goes.

use std::collections::BTreeMap;

use rota_plugin_sdk::secrets::Handle;
use serde::{Deserialize, Serialize};

/// The snapshot action's input: the original call's input.
#[derive(Debug, Deserialize)]
pub(crate) struct Snapshot<I> {
    pub(crate) input: I,
}

/// The reconcile action's input, after a run was interrupted during a call.
#[derive(Debug, Deserialize)]
pub(crate) struct Reconcile<I, S> {
    pub(crate) input: I,
    /// The snapshot journaled just before the call (None without one).
    pub(crate) snapshot: Option<S>,
    /// Secrets rota committed for the call, by capture name.
    #[serde(default)]
    pub(crate) captured: BTreeMap<String, Handle>,
    /// The vendor key ID recorded with those secrets.
    pub(crate) key_id: Option<String>,
}

/// The revoke action's input: delete `key_id`, made by the call that took `input`.
#[derive(Debug, Deserialize)]
pub(crate) struct Revoke<I> {
    pub(crate) input: I,
    pub(crate) key_id: String,
}

/// A reconcile action's answer; `O` is the original action's output.
#[derive(Debug, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub(crate) enum Outcome<O> {
    /// The call took effect: rota adopts this output and does not call again.
    Applied { output: O },
    /// Nothing happened at the vendor: rota makes the call again.
    NotApplied,
    /// The call made keys rota cannot use (their secret was never stored):
    /// rota revokes each, then makes the call again.
    Orphaned { key_ids: Vec<String> },
}
