//! The envelopes rota hands the actions that make a changing action safe to
//! resume (snapshot, reconcile, revoke) and the answer a reconcile gives,
//! as `docs/plugins.md` describes them.
//!
//! Design decision: these mirror the SDK's own `resume` types field for
//! field, so this module goes away once that SDK module has landed.

use std::collections::BTreeMap;

use rota_plugin_sdk::Value;
use rota_plugin_sdk::secrets::Handle;
use serde::{Deserialize, Serialize};

/// A snapshot action's input: the original call's input, just before it.
#[derive(Clone, Debug, Deserialize)]
pub struct Snapshot<I> {
    pub input: I,
}

/// A reconcile action's input after an interrupted call.
#[derive(Clone, Debug, Deserialize)]
pub struct Reconcile<I, S> {
    pub input: I,
    /// The snapshot taken just before the call, if any.
    pub snapshot: Option<S>,
    /// Secrets rota committed for the call, by capture name.
    #[serde(default)]
    pub captured: BTreeMap<String, Handle>,
    /// The vendor's key ID recorded with those secrets.
    pub key_id: Option<String>,
}

/// A revoke action's input: delete `key_id`, made by the call that took `input`.
#[derive(Clone, Debug, Deserialize)]
pub struct Revoke<I> {
    pub input: I,
    pub key_id: String,
}

/// A reconcile action's answer.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// The call took effect: this is its result, as the action returns it.
    Applied { output: Value },
    /// Nothing happened at the vendor: rota makes the call again.
    NotApplied,
    /// The call made keys rota cannot adopt: rota revokes each, then calls again.
    Orphaned { key_ids: Vec<String> },
}
