//! rota's core: the playbook language (parse -> validate -> plan -> execute),
//! templating, the secret value type and the contracts the plugin host and the
//! state store implement.
//!
//! Design decision: this crate never links wasmtime or SQLite; it defines the
//! seams ([`ActionCatalog`], [`ActionRunner`], [`SecretStore`]) that those
//! crates fill, so `rota validate` never starts a plugin.

pub mod action;
pub mod core_actions;
pub mod diagnostic;
pub mod duration;
pub mod event;
pub mod executor;
pub mod inputs;
pub mod journal;
pub mod load;
pub mod operator;
pub mod playbook;
pub mod reconcile;
pub mod schema;
pub mod scope;
pub mod secret;
pub mod store;
pub mod template;
pub mod validate;
pub mod yaml;

pub use action::{
    ActionCall, ActionCatalog, ActionError, ActionRunner, ActionSpec, Basis, CaptureTarget, NoPlugins,
    ResumePolicy,
};
pub use diagnostic::{Diagnostic, Diagnostics, ErrorKind, Pos};
pub use playbook::Playbook;
pub use scope::{Binding, SecretAccessError, SecretScope};
pub use secret::{Secret, SecretRef};
pub use store::{MemoryStore, Provenance, SecretStore, SecretSummary, Stage, StoreError, VersionInfo};
