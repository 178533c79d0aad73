//! The precompiled-component cache.
//!
//! Design decision: compiled artifacts are keyed by the SHA-256 of the
//! component and wasmtime's compatibility hash, live in a 0700 directory
//! under the state directory, and carry the SHA-256 of their own bytes in a
//! 32-byte prefix. An entry that fails that check, or that wasmtime refuses,
//! is recompiled and overwritten: never trusted.

use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

#[derive(Debug, Clone)]
pub struct ArtifactCache {
    dir: PathBuf,
}

/// How a component was obtained, for logs and benchmarks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loaded {
    Cached,
    Compiled,
}

impl ArtifactCache {
    /// Creates (or tightens to 0700) `dir`.
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir)?.permissions().mode();
            if mode & 0o077 != 0 {
                std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
            }
        }
        Ok(Self { dir: dir.to_owned() })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn entry_path(&self, engine: &Engine, digest: &str) -> PathBuf {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        self.dir.join(format!("{digest}-{:016x}.cwasm", h.finish()))
    }

    /// The component for `bytes` (whose SHA-256 is `digest`), from the cache
    /// or compiled and stored.
    pub fn load(&self, engine: &Engine, digest: &str, bytes: &[u8]) -> wasmtime::Result<(Component, Loaded)> {
        let path = self.entry_path(engine, digest);
        if let Ok(data) = std::fs::read(&path) {
            match deserialize_checked(engine, &data) {
                Some(c) => return Ok((c, Loaded::Cached)),
                None => {
                    tracing::warn!(path = %path.display(), "corrupt precompiled plugin artifact, recompiling")
                }
            }
        }
        let component = Component::new(engine, bytes)?;
        if let Err(e) = self.store(&path, &component) {
            tracing::warn!(path = %path.display(), error = %e, "cannot cache the compiled plugin");
        }
        Ok((component, Loaded::Compiled))
    }

    fn store(&self, path: &Path, component: &Component) -> wasmtime::Result<()> {
        let artifact = component.serialize()?;
        let sum = Sha256::digest(&artifact);
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(&tmp)?;
        f.write_all(&sum)?;
        f.write_all(&artifact)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    }
}

/// Deserializes an artifact whose 32-byte SHA-256 prefix matches its body.
#[allow(
    unsafe_code,
    reason = "Component::deserialize trusts its input to be wasmtime's own compiled code. Safe here because \
              the input comes only from our cache directory, created 0700 (0600 files) under the operator's \
              state dir, is named by the component's SHA-256 and wasmtime's compatibility hash, and must \
              match the SHA-256 stored in its prefix (written by us after compiling); anything that fails \
              these checks or that wasmtime rejects is recompiled, never used"
)]
fn deserialize_checked(engine: &Engine, data: &[u8]) -> Option<Component> {
    if data.len() < 32 {
        return None;
    }
    let (sum, artifact) = data.split_at(32);
    if Sha256::digest(artifact).as_slice() != sum {
        return None;
    }
    // SAFETY: see the function's allow reason above.
    unsafe { Component::deserialize(engine, artifact) }.ok()
}

pub fn digest(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}
