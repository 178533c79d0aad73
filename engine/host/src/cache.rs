//! The precompiled-component cache.
//!
//! Design decision: an entry is trusted only if it carries a keyed BLAKE3
//! MAC of its name and bytes (in `<entry>.mac` beside it), made with a random
//! key that only this cache holds (`<dir>/mac-key`, 0600, in the 0700
//! directory). Entries are keyed by
//! the component's SHA-256 and wasmtime's compatibility hash; one that fails
//! the MAC (corrupt, written by another installation, renamed from another
//! plugin's entry) or that wasmtime refuses is recompiled and overwritten,
//! never deserialized.
//!
//! Why a MAC and not a plain checksum: `Component::deserialize` runs
//! whatever machine code it is given, so "valid" has to mean "written by a
//! rota process that compiled it", which a checksum anyone can recompute does
//! not say. Why BLAKE3: it is a MAC in keyed mode and hashes the ~0.5 MB
//! artifact in about a fifth of SHA-256's time.
//!
//! Design decision: a file checked once is not hashed again while it is
//! provably the same file. After a full check, the MAC file also records the
//! artifact's device, inode, size, mtime and ctime (the stamp, itself under
//! the MAC key); a later load whose `stat` matches the stamp skips the hash,
//! a third of a cached load. No process can set a file's ctime: any write,
//! truncation, rename over it or `utimes` sets it to the current time. A
//! stamp is only recorded when the artifact's ctime is at least
//! [`SETTLED`] in the past when it is checked (git's "racily clean" rule),
//! so a change made after the check, even within the same timestamp tick,
//! always gets a later ctime and a full check. What the stamp cannot see is a
//! change below the file system (a raw write to the block device, which needs
//! root, or silent disk corruption), which would equally go unseen in the
//! `rota` binary itself.
//!
//! Why the MAC sits beside the artifact: wasmtime maps an artifact file
//! straight into memory (`Component::deserialize_file`), where handing it
//! bytes means copying them into fresh executable pages, half of a cached
//! load. The check streams the file through a small buffer, then wasmtime
//! maps the same file. Between the two, only a process of the same user can
//! change it (the directory is 0700), and such a process can already change
//! `rota` itself, its config or its memory: the MAC is there for corruption,
//! half-written entries, and entries copied or renamed from elsewhere.

use std::hash::{Hash, Hasher};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// Bytes of the MAC stored in front of each artifact.
const TAG_LEN: usize = blake3::OUT_LEN;
const KEY_FILE: &str = "mac-key";
/// Keeps these MACs apart from any other use of the same key.
const DOMAIN: &[u8] = b"rota plugin-cache entry v1\0";
const STAMP_DOMAIN: &[u8] = b"rota plugin-cache stamp v1\0";
/// dev, ino, size, mtime (s, ns), ctime (s, ns): 8 bytes each.
const STAMP_LEN: usize = 7 * 8;
/// How long ago an artifact must have last changed for its check to be
/// remembered (see the module's design decision).
pub const SETTLED: std::time::Duration = std::time::Duration::from_secs(2);

#[derive(Clone)]
pub struct ArtifactCache {
    dir: PathBuf,
    key: [u8; blake3::KEY_LEN],
    settled: std::time::Duration,
    /// Full checks made (hashes of an artifact), for tests.
    hashed: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl std::fmt::Debug for ArtifactCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArtifactCache")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// How a component was obtained, for logs and benchmarks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loaded {
    Cached,
    Compiled,
}

impl ArtifactCache {
    /// Creates (or tightens to 0700) `dir` and reads or creates its MAC key.
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
        let key = mac_key(dir)?;
        Ok(Self {
            dir: dir.to_owned(),
            key,
            settled: SETTLED,
            hashed: Default::default(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn entry_path(&self, engine: &Engine, digest: &str) -> PathBuf {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        self.dir.join(format!("{digest}-{:016x}.cwasm", h.finish()))
    }

    /// Where the MAC of the entry at `entry` is kept.
    pub fn mac_path(entry: &Path) -> PathBuf {
        let mut name = entry.file_name().unwrap_or_default().to_owned();
        name.push(".mac");
        entry.with_file_name(name)
    }

    /// The component for `bytes` (whose SHA-256 is `digest`), from the cache
    /// or compiled and stored.
    pub fn load(&self, engine: &Engine, digest: &str, bytes: &[u8]) -> wasmtime::Result<(Component, Loaded)> {
        let path = self.entry_path(engine, digest);
        match self.deserialize_checked(engine, &path) {
            Checked::Loaded(c) => return Ok((c, Loaded::Cached)),
            Checked::Missing => {}
            Checked::Refused => {
                tracing::warn!(path = %path.display(), "corrupt or foreign precompiled plugin artifact, recompiling")
            }
        }
        let component = Component::new(engine, bytes)?;
        if let Err(e) = self.store(&path, &component) {
            tracing::warn!(path = %path.display(), error = %e, "cannot cache the compiled plugin");
        }
        Ok((component, Loaded::Compiled))
    }

    /// The MAC of an entry: its file name (so an entry cannot be passed off
    /// as another plugin's) and its artifact bytes.
    fn hasher(&self, path: &Path) -> blake3::Hasher {
        self.keyed(DOMAIN, path)
    }

    /// A MAC in `domain`, bound to the entry's file name.
    fn keyed(&self, domain: &[u8], path: &Path) -> blake3::Hasher {
        let name = path.file_name().map(|n| n.as_encoded_bytes()).unwrap_or_default();
        let mut h = blake3::Hasher::new_keyed(&self.key);
        h.update(domain);
        h.update(name);
        h.update(b"\0");
        h
    }

    /// The MAC of the file at `path` (streamed through a small buffer).
    fn tag_of_file(&self, path: &Path) -> std::io::Result<blake3::Hash> {
        let mut h = self.hasher(path);
        let mut f = std::fs::File::open(path)?;
        let mut buf = vec![0u8; 64 << 10];
        loop {
            match f.read(&mut buf) {
                Ok(0) => return Ok(h.finalize()),
                Ok(n) => {
                    h.update(&buf[..n]);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Writes the artifact, then its MAC (each to a temporary file, synced,
    /// renamed): an artifact without its matching MAC is never loaded.
    fn store(&self, path: &Path, component: &Component) -> wasmtime::Result<()> {
        let artifact = component.serialize()?;
        let mut h = self.hasher(path);
        h.update(&artifact);
        let tag = h.finalize();
        write_atomically(path, &artifact)?;
        write_atomically(&Self::mac_path(path), tag.as_bytes())?;
        Ok(())
    }

    /// The stamp of the file `meta` describes.
    fn stamp(meta: &std::fs::Metadata) -> [u8; STAMP_LEN] {
        use std::os::unix::fs::MetadataExt;
        let fields = [
            meta.dev(),
            meta.ino(),
            meta.size(),
            meta.mtime() as u64,
            meta.mtime_nsec() as u64,
            meta.ctime() as u64,
            meta.ctime_nsec() as u64,
        ];
        let mut out = [0u8; STAMP_LEN];
        for (chunk, v) in out.chunks_exact_mut(8).zip(fields) {
            chunk.copy_from_slice(&v.to_le_bytes());
        }
        out
    }

    /// The MAC of a stamp, bound to the entry's name and tag.
    fn stamp_mac(&self, path: &Path, tag: &[u8; TAG_LEN], stamp: &[u8; STAMP_LEN]) -> blake3::Hash {
        let mut h = self.keyed(STAMP_DOMAIN, path);
        h.update(tag);
        h.update(stamp);
        h.finalize()
    }

    /// Whether `mac`'s stamp vouches for the file as it is now.
    fn stamp_holds(&self, path: &Path, mac: &MacFile, meta: &std::fs::Metadata) -> bool {
        // Constant-time comparison (blake3::Hash's equality).
        mac.stamp.is_some_and(|(stamp, stamp_mac)| {
            stamp == Self::stamp(meta)
                && self.stamp_mac(path, &mac.tag, &stamp) == blake3::Hash::from_bytes(stamp_mac)
        })
    }

    /// After a full check: remembers the file's stamp when it last changed
    /// long enough ago. Best effort: without it the next load hashes again.
    fn remember(&self, path: &Path, tag: &[u8; TAG_LEN], meta: &std::fs::Metadata) {
        use std::os::unix::fs::MetadataExt;
        let changed = std::time::UNIX_EPOCH
            + std::time::Duration::new(
                meta.ctime().max(0) as u64,
                meta.ctime_nsec().clamp(0, 999_999_999) as u32,
            );
        let settled = std::time::SystemTime::now()
            .duration_since(changed)
            .is_ok_and(|age| age >= self.settled);
        if !settled {
            return;
        }
        let stamp = Self::stamp(meta);
        let mut data = Vec::with_capacity(TAG_LEN + STAMP_LEN + blake3::OUT_LEN);
        data.extend_from_slice(tag);
        data.extend_from_slice(&stamp);
        data.extend_from_slice(self.stamp_mac(path, tag, &stamp).as_bytes());
        if let Err(e) = write_atomically(&Self::mac_path(path), &data) {
            tracing::debug!(path = %path.display(), error = %e, "cannot record the artifact's stamp");
        }
    }

    /// Deserializes an entry whose MAC prefix matches its name and body.
    #[allow(
        unsafe_code,
        reason = "Component::deserialize_file trusts the file to be wasmtime's own compiled code. Safe \
                  here because the file must match a MAC, keyed by a secret only this cache directory \
                  (0700, files 0600) holds, over its entry name and bytes (or be provably the file \
                  that matched it: the keyed stamp, see the module's design decision): only a rota \
                  process that compiled the component wrote it. Only the same user can change the file between the \
                  check and the mapping (see the module's design decision), and anything that fails the \
                  check or that wasmtime rejects is recompiled, never used"
    )]
    fn deserialize_checked(&self, engine: &Engine, path: &Path) -> Checked {
        let mac = match std::fs::read(Self::mac_path(path)) {
            Ok(data) => match MacFile::parse(&data) {
                Some(mac) => mac,
                None => return Checked::Refused,
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !path.exists() => return Checked::Missing,
            Err(_) => return Checked::Refused,
        };
        let Ok(meta) = std::fs::metadata(path) else {
            return Checked::Refused;
        };
        if !self.stamp_holds(path, &mac, &meta) {
            self.hashed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            // blake3::Hash's equality is constant-time.
            match self.tag_of_file(path) {
                Ok(found) if found == blake3::Hash::from_bytes(mac.tag) => {
                    self.remember(path, &mac.tag, &meta)
                }
                _ => return Checked::Refused,
            }
        }
        // SAFETY: see the function's allow reason above.
        match unsafe { Component::deserialize_file(engine, path) } {
            Ok(c) => Checked::Loaded(c),
            Err(_) => Checked::Refused,
        }
    }
}

/// An entry's `.mac` file: its MAC alone, or its MAC and a stamp with the
/// stamp's own MAC. Any other length is refused.
struct MacFile {
    tag: [u8; TAG_LEN],
    stamp: Option<([u8; STAMP_LEN], [u8; blake3::OUT_LEN])>,
}

impl MacFile {
    fn parse(data: &[u8]) -> Option<Self> {
        let (tag, rest) = data.split_first_chunk::<TAG_LEN>()?;
        let stamp = match rest.len() {
            0 => None,
            n if n == STAMP_LEN + blake3::OUT_LEN => {
                let (stamp, mac) = rest.split_first_chunk::<STAMP_LEN>()?;
                Some((*stamp, <[u8; blake3::OUT_LEN]>::try_from(mac).ok()?))
            }
            _ => return None,
        };
        Some(Self { tag: *tag, stamp })
    }
}

enum Checked {
    Loaded(Component),
    Missing,
    Refused,
}

/// Writes `data` to `path` through a synced temporary file and a rename.
fn write_atomically(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(format!(".tmp{}", std::process::id()));
    let tmp = path.with_file_name(name);
    let mut f = private_file(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Opens `path` for writing, created 0600.
fn private_file(path: &Path) -> std::io::Result<std::fs::File> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    opts.open(path)
}

/// The cache's MAC key, created on first use. Concurrent first uses agree:
/// the key is published with a hard link, which fails if one exists.
fn mac_key(dir: &Path) -> std::io::Result<[u8; blake3::KEY_LEN]> {
    let path = dir.join(KEY_FILE);
    for _ in 0..2 {
        match std::fs::read(&path) {
            Ok(data) => match <[u8; blake3::KEY_LEN]>::try_from(data.as_slice()) {
                Ok(key) => return Ok(key),
                Err(_) => {
                    // A damaged key only costs a recompile of every entry.
                    tracing::warn!(path = %path.display(), "plugin cache key is damaged, replacing it");
                    std::fs::remove_file(&path)?;
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let key: [u8; blake3::KEY_LEN] = rand::random();
        let tmp = dir.join(format!("{KEY_FILE}.tmp{}", std::process::id()));
        let mut f = private_file(&tmp)?;
        f.write_all(&key)?;
        f.sync_all()?;
        let linked = std::fs::hard_link(&tmp, &path);
        std::fs::remove_file(&tmp)?;
        match linked {
            Ok(()) => return Ok(key),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other(format!(
        "cannot create the plugin cache key {}",
        path.display()
    )))
}

/// The plugin's identity: SHA-256 of the component, as shown by
/// `rota plugins inspect` and recorded in the run journal.
pub fn digest(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    fn component() -> Result<(Engine, Vec<u8>), Box<dyn std::error::Error>> {
        let engine = crate::shared_engine()?;
        Ok((engine, wat::parse_str("(component)")?))
    }

    #[test]
    fn the_key_is_private_and_kept_across_opens() -> TestResult {
        let dir = tempfile::tempdir()?;
        let a = ArtifactCache::open(dir.path())?;
        let b = ArtifactCache::open(dir.path())?;
        assert_eq!(a.key, b.key);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(KEY_FILE))?.permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        Ok(())
    }

    /// Regression: an entry copied from another cache (another key) must be
    /// recompiled, even though it is a well-formed artifact.
    #[test]
    fn entries_from_another_cache_are_recompiled() -> TestResult {
        let (engine, bytes) = component()?;
        let (one, two) = (tempfile::tempdir()?, tempfile::tempdir()?);
        let (a, b) = (ArtifactCache::open(one.path())?, ArtifactCache::open(two.path())?);
        let digest = digest(&bytes);
        assert_eq!(a.load(&engine, &digest, &bytes)?.1, Loaded::Compiled);
        let (from, to) = (a.entry_path(&engine, &digest), b.entry_path(&engine, &digest));
        std::fs::copy(&from, &to)?;
        std::fs::copy(ArtifactCache::mac_path(&from), ArtifactCache::mac_path(&to))?;
        assert_eq!(b.load(&engine, &digest, &bytes)?.1, Loaded::Compiled);
        assert_eq!(b.load(&engine, &digest, &bytes)?.1, Loaded::Cached);
        Ok(())
    }

    /// Regression: a valid entry renamed to another plugin's digest must not
    /// be loaded as that plugin.
    #[test]
    fn an_entry_renamed_to_another_digest_is_refused() -> TestResult {
        let (engine, bytes) = component()?;
        let dir = tempfile::tempdir()?;
        let cache = ArtifactCache::open(dir.path())?;
        let digest = digest(&bytes);
        cache.load(&engine, &digest, &bytes)?;
        let other = "0".repeat(64);
        let (from, to) = (
            cache.entry_path(&engine, &digest),
            cache.entry_path(&engine, &other),
        );
        std::fs::rename(&from, &to)?;
        std::fs::rename(ArtifactCache::mac_path(&from), ArtifactCache::mac_path(&to))?;
        assert_eq!(cache.load(&engine, &other, &bytes)?.1, Loaded::Compiled);
        Ok(())
    }

    /// An entry whose bytes changed (one flipped bit, or cut short as by a
    /// crash mid-write) or whose MAC is missing is recompiled, then cached
    /// again.
    #[test]
    fn a_changed_truncated_or_unsigned_entry_is_recompiled() -> TestResult {
        let (engine, bytes) = component()?;
        let dir = tempfile::tempdir()?;
        let cache = ArtifactCache::open(dir.path())?;
        let digest = digest(&bytes);
        assert_eq!(cache.load(&engine, &digest, &bytes)?.1, Loaded::Compiled);
        let path = cache.entry_path(&engine, &digest);
        let damage: [&dyn Fn() -> std::io::Result<()>; 3] = [
            &|| {
                let mut data = std::fs::read(&path)?;
                let mid = data.len() / 2;
                data[mid] ^= 1;
                std::fs::write(&path, data)
            },
            &|| {
                let data = std::fs::read(&path)?;
                std::fs::write(&path, &data[..data.len() / 2])
            },
            &|| std::fs::remove_file(ArtifactCache::mac_path(&path)),
        ];
        for d in damage {
            assert_eq!(cache.load(&engine, &digest, &bytes)?.1, Loaded::Cached);
            d()?;
            assert_eq!(cache.load(&engine, &digest, &bytes)?.1, Loaded::Compiled);
        }
        assert_eq!(cache.load(&engine, &digest, &bytes)?.1, Loaded::Cached);
        Ok(())
    }

    impl ArtifactCache {
        /// Remembers every check at once (no settling time), so a test can
        /// see the stamp at work without waiting.
        fn remembering_at_once(mut self) -> Self {
            self.settled = std::time::Duration::ZERO;
            self
        }

        fn hashes(&self) -> u64 {
            self.hashed.load(std::sync::atomic::Ordering::Relaxed)
        }
    }

    /// Replaces the file at `path` by `data` (a new inode, as a rename does).
    fn replace(path: &Path, data: &[u8]) -> std::io::Result<()> {
        let tmp = path.with_extension("replacing");
        std::fs::write(&tmp, data)?;
        std::fs::rename(&tmp, path)
    }

    /// A checked entry is not hashed again while its stamp holds; a changed
    /// file, or a stamp whose MAC does not hold, means a full check.
    #[test]
    fn a_checked_entry_is_not_hashed_again_until_its_file_changes() -> TestResult {
        let (engine, bytes) = component()?;
        let dir = tempfile::tempdir()?;
        let cache = ArtifactCache::open(dir.path())?.remembering_at_once();
        let digest = digest(&bytes);
        let path = cache.entry_path(&engine, &digest);
        let mac = ArtifactCache::mac_path(&path);
        assert_eq!(cache.load(&engine, &digest, &bytes)?.1, Loaded::Compiled);
        assert_eq!(std::fs::read(&mac)?.len(), TAG_LEN, "no stamp before a check");
        assert_eq!(cache.load(&engine, &digest, &bytes)?.1, Loaded::Cached);
        assert_eq!(cache.hashes(), 1);
        assert_eq!(std::fs::read(&mac)?.len(), TAG_LEN + STAMP_LEN + blake3::OUT_LEN);
        assert_eq!(cache.load(&engine, &digest, &bytes)?.1, Loaded::Cached);
        assert_eq!(cache.hashes(), 1, "the stamp vouched for the unchanged file");

        // One bit flipped in a file put in its place: checked, refused, recompiled.
        let mut data = std::fs::read(&path)?;
        let mid = data.len() / 2;
        data[mid] ^= 1;
        replace(&path, &data)?;
        assert_eq!(cache.load(&engine, &digest, &bytes)?.1, Loaded::Compiled);
        assert_eq!(cache.hashes(), 2);

        // Checked again (stamp recorded), then the stamp's own MAC broken.
        assert_eq!(cache.load(&engine, &digest, &bytes)?.1, Loaded::Cached);
        assert_eq!(cache.hashes(), 3);
        let mut forged = std::fs::read(&mac)?;
        if let Some(last) = forged.last_mut() {
            *last ^= 1;
        }
        std::fs::write(&mac, &forged)?;
        assert_eq!(cache.load(&engine, &digest, &bytes)?.1, Loaded::Cached);
        assert_eq!(cache.hashes(), 4, "a stamp that fails its MAC is ignored");

        // A MAC file of any other length is refused outright.
        std::fs::write(&mac, [0u8; TAG_LEN + 1])?;
        assert_eq!(cache.load(&engine, &digest, &bytes)?.1, Loaded::Compiled);
        Ok(())
    }

    /// A file that changed moments ago is not vouched for by a stamp (a later
    /// change in the same timestamp tick could not be told apart): it is
    /// checked in full at every load until it has settled.
    #[test]
    fn a_fresh_artifact_is_checked_in_full_every_time() -> TestResult {
        let (engine, bytes) = component()?;
        let dir = tempfile::tempdir()?;
        let cache = ArtifactCache::open(dir.path())?;
        let digest = digest(&bytes);
        assert_eq!(cache.load(&engine, &digest, &bytes)?.1, Loaded::Compiled);
        for n in 1..=2 {
            assert_eq!(cache.load(&engine, &digest, &bytes)?.1, Loaded::Cached);
            assert_eq!(cache.hashes(), n);
        }
        let mac = ArtifactCache::mac_path(&cache.entry_path(&engine, &digest));
        assert_eq!(std::fs::read(mac)?.len(), TAG_LEN);
        Ok(())
    }

    #[test]
    fn a_damaged_key_is_replaced() -> TestResult {
        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join(KEY_FILE), b"short")?;
        let cache = ArtifactCache::open(dir.path())?;
        assert_eq!(std::fs::read(dir.path().join(KEY_FILE))?, cache.key);
        Ok(())
    }
}
