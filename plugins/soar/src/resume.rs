//! The envelopes rota hands a reconcile action and the answer it gives
//! (`docs/plugins.md`, resume contract), until the SDK carries them.
//!
//! Design decision: the same shapes as rota's resume contract, field for
//! field, so switching to the SDK's types changes only this module.

use std::collections::BTreeMap;

use rota_plugin_sdk::secrets::Handle;
use serde::{Deserialize, Serialize};

/// A reconcile action's input, after a run was interrupted during a call.
#[derive(Clone, Debug, Deserialize)]
pub struct Reconcile<I, S> {
    pub input: I,
    #[allow(dead_code, reason = "part of the contract; regenerating needs no snapshot")]
    pub snapshot: Option<S>,
    #[serde(default)]
    pub captured: BTreeMap<String, Handle>,
    #[allow(dead_code, reason = "part of the contract; the account id is in the input")]
    pub key_id: Option<String>,
}

/// What the interrupted call did.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome<O> {
    Applied { output: O },
    NotApplied,
}
