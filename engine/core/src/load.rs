//! Loading a playbook: read -> parse -> validate, in one call.
//!
//! Design decision: a [`Loaded`] playbook has passed every static check, so
//! the planner and executor can rely on ids being unique, references being in
//! order and actions existing; they still check values at run time.

use std::path::Path;

use sha2::{Digest, Sha256};

use crate::action::ActionCatalog;
use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::playbook::Playbook;
use crate::validate::validate;
use crate::yaml::{self, Source, SpanMap};

/// A parsed and validated playbook.
#[derive(Clone, Debug)]
pub struct Loaded {
    pub source: Source,
    pub playbook: Playbook,
    pub spans: SpanMap,
    /// `sha256:<hex>` of the file's bytes: recorded with every run.
    pub digest: String,
}

/// Parses `source` and validates it against `catalog`.
pub fn load_source(source: Source, catalog: &dyn ActionCatalog) -> Result<Loaded, Diagnostics> {
    let (playbook, spans) = match yaml::parse::<Playbook>(&source) {
        Ok(ok) => ok,
        Err(d) => return Err(one(d, Some(source.text))),
    };
    let problems = validate(&source.name, &playbook, &spans, catalog);
    if !problems.is_empty() {
        return Err(Diagnostics {
            items: problems,
            source: Some(source.text),
        });
    }
    let digest = format!("sha256:{}", hex::encode(Sha256::digest(source.text.as_bytes())));
    Ok(Loaded {
        source,
        playbook,
        spans,
        digest,
    })
}

/// Reads, parses and validates the file at `path`.
pub fn load_file(path: &Path, catalog: &dyn ActionCatalog) -> Result<Loaded, Diagnostics> {
    let source = Source::read(path).map_err(|d| {
        // Show the offending line even when the file is not valid UTF-8.
        let lossy = (d.kind == crate::diagnostic::ErrorKind::Encoding)
            .then(|| {
                std::fs::read(path)
                    .ok()
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
            })
            .flatten();
        one(d, lossy)
    })?;
    load_source(source, catalog)
}

fn one(d: Diagnostic, source: Option<String>) -> Diagnostics {
    Diagnostics {
        items: vec![d],
        source,
    }
}
