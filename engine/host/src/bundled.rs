//! The first-party vendor plugins embedded in this build.
//!
//! Design decision: `build.rs` compiles `plugins/<vendor>` for wasm32-wasip2
//! and embeds each component here, so a fresh `rota` binary can rehearse
//! and run every shipped playbook without installing anything; a plugin of
//! the same name in an operator's `plugin_dirs` replaces the bundled one.
//! A build with `ROTA_SKIP_PLUGIN_BUILD=1` bundles none.

/// A plugin embedded in this build.
#[derive(Debug)]
pub struct Bundled {
    /// The plugin's name, as its manifest declares it.
    pub name: &'static str,
    /// The file name it was built as, e.g. `rota_plugin_plex.wasm`.
    pub file: &'static str,
    /// The component.
    pub bytes: &'static [u8],
    /// Its SHA-256 (hex), computed when `rota` was built.
    pub digest: &'static str,
}

include!(concat!(env!("OUT_DIR"), "/bundled.rs"));

/// The names of the bundled plugin files, e.g. `rota_plugin_plex.wasm`.
pub fn files() -> impl Iterator<Item = &'static str> {
    BUNDLED.iter().map(|b| b.file)
}

#[cfg(test)]
mod tests {
    use super::BUNDLED;

    /// What discovery skips for a bundled plugin is settled here: its
    /// recorded digest is the SHA-256 of its bytes, its recorded name is its
    /// manifest's, and its manifest passes
    /// the full check a plugin file gets (every JSON Schema compiles).
    #[test]
    fn every_bundled_plugin_has_its_digest_and_a_fully_valid_manifest() {
        for b in BUNDLED {
            assert_eq!(crate::cache::digest(b.bytes), b.digest, "{}", b.file);
            match crate::manifest::parse(b.file, b.bytes) {
                Ok((manifest, _)) => assert_eq!(manifest.name, b.name, "{}", b.file),
                Err(e) => panic!("bundled {}: {e}", b.file),
            }
        }
    }

    /// Every schema of every bundled plugin takes the fast path.
    #[test]
    fn every_bundled_schema_is_in_the_subset() {
        for b in BUNDLED {
            let (m, _) = crate::manifest::parse_bundled(b.file, b.bytes).expect("manifest");
            for a in &m.actions {
                for (what, s) in [("input", &a.input), ("output", &a.output)] {
                    let c = rota_core::schema::Schema::compile(s).expect("compiles");
                    assert!(
                        c.is_subset(),
                        "{}.{} {what} schema leaves the subset",
                        m.name,
                        a.name
                    );
                }
            }
        }
    }
}
