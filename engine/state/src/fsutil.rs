//! Private files: created 0600 (directories 0700), written atomically.
//!
//! Design decision: a key file is created by writing a temporary file and
//! hard-linking it into place, so two processes racing to create the same
//! identity never see a half-written file and exactly one wins.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

use crate::StateError;

/// Creates `dir` (and parents) with mode 0700 when missing. An existing
/// directory is left as it is: `ROTA_STATE_DIR` may point anywhere.
pub(crate) fn ensure_private_dir(dir: &Path) -> Result<(), StateError> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| StateError::io("cannot create state directory", dir, e))
}

/// Creates an empty 0600 file when missing.
pub(crate) fn touch_private(path: &Path) -> Result<(), StateError> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map(drop)
        .map_err(|e| StateError::io("cannot create", path, e))
}

/// Writes `contents` to `path` (0600) unless it already exists. Returns
/// whether this call created it.
pub(crate) fn create_private_file(path: &Path, contents: &[u8]) -> Result<bool, StateError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp-{}-{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    ));
    let write = || -> std::io::Result<()> {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(contents)?;
        f.sync_all()
    };
    if let Err(e) = write() {
        let _ = fs::remove_file(&tmp);
        return Err(StateError::io("cannot write", &tmp, e));
    }
    let linked = fs::hard_link(&tmp, path);
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => {
            if let Ok(d) = fs::File::open(dir) {
                let _ = d.sync_all();
            }
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(StateError::io("cannot create", path, e)),
    }
}
