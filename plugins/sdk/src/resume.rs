//! The envelopes rota hands to the actions that make a changing action safe
//! to resume, and the answer a reconcile action gives. An action declares
//! them in the manifest (`resume`, `revoke`, `key_id`); see
//! `docs/plugins.md`, "Resume: snapshot, reconcile, revoke".
//!
//! `I` is the original action's input type; `S` is what the snapshot action
//! returns.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::secrets::Handle;

/// The snapshot action's input: the original call's input, just before the
/// call is made. Its output is journaled with the call's intent.
#[derive(Clone, Debug, Deserialize)]
pub struct Snapshot<I> {
    pub input: I,
}

/// The reconcile action's input, after a run was interrupted during a call.
#[derive(Clone, Debug, Deserialize)]
pub struct Reconcile<I, S> {
    /// The interrupted call's input.
    pub input: I,
    /// The snapshot taken just before that call (`None` if the action
    /// declares no snapshot action).
    pub snapshot: Option<S>,
    /// Secrets rota committed for the call, by capture name.
    #[serde(default)]
    pub captured: BTreeMap<String, Handle>,
    /// The vendor's key ID recorded with those secrets.
    pub key_id: Option<String>,
}

/// The revoke action's input: delete `key_id`, an orphan of the call that
/// took `input`. Answering not-found means "already gone" and is fine.
#[derive(Clone, Debug, Deserialize)]
pub struct Revoke<I> {
    pub input: I,
    pub key_id: String,
}

/// A reconcile action's answer. `O` is the original action's output type.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome<O> {
    /// The call took effect and this is its result (as the action would have
    /// returned it; secrets as the handles in `captured`). rota adopts it
    /// and does not call the vendor again.
    Applied { output: O },
    /// Nothing happened at the vendor: rota makes the call again.
    NotApplied,
    /// The call created keys rota cannot adopt (their secret was shown once
    /// and never stored): rota revokes each by ID, then makes the call again.
    Orphaned { key_ids: Vec<String> },
}
