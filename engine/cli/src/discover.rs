//! Finding playbooks: by path, or by name on the search path
//! (`$ROTA_PLAYBOOK_PATH`, colon-separated, then `./playbooks`).
//!
//! Design decision: a name resolves to `<dir>/<name>.yaml` (or `.yml`) first,
//! and only then to a file whose `name:` matches, so the common case reads
//! one file.

use std::path::{Path, PathBuf};

use rota_core::ActionCatalog;
use rota_core::load::{Loaded, load_file};

use crate::exit;

static CONFIG_DIRS: std::sync::OnceLock<Vec<PathBuf>> = std::sync::OnceLock::new();

/// Playbook directories named by the config (`playbooks:` in rota.yaml).
pub fn add_config_dirs(dirs: &[PathBuf]) {
    let _ = CONFIG_DIRS.set(dirs.to_vec());
}

/// The directories searched for playbooks, in order: `$ROTA_PLAYBOOK_PATH`,
/// the config's `playbooks:`, then `./playbooks`.
pub fn search_path() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("ROTA_PLAYBOOK_PATH")
        .map(|v| {
            std::env::split_paths(&v)
                .filter(|p| !p.as_os_str().is_empty())
                .collect()
        })
        .unwrap_or_default();
    dirs.extend(CONFIG_DIRS.get().into_iter().flatten().cloned());
    dirs.push(PathBuf::from("playbooks"));
    dirs
}

fn is_yaml(p: &Path) -> bool {
    matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"))
}

/// Playbook files in a directory (not recursive, sorted; rehearsal profiles
/// such as `x.rehearse.yaml` are not playbooks).
pub fn files_in(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && is_yaml(p) && !is_companion(p))
        .collect();
    out.sort();
    Ok(out)
}

fn is_companion(p: &Path) -> bool {
    p.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.contains(".rehearse.") || n.contains(".inputs."))
}

/// Every playbook file on the search path.
pub fn all_files() -> Vec<PathBuf> {
    search_path()
        .iter()
        .filter(|d| d.is_dir())
        .filter_map(|d| files_in(d).ok())
        .flatten()
        .collect()
}

/// Resolves `name_or_path` and loads it.
pub fn find(name_or_path: &str, catalog: &dyn ActionCatalog) -> anyhow::Result<Loaded> {
    let path = resolve(name_or_path, catalog)?;
    load_file(&path, catalog).map_err(|d| exit::usage(d.render()))
}

fn resolve(name_or_path: &str, catalog: &dyn ActionCatalog) -> anyhow::Result<PathBuf> {
    let as_path = Path::new(name_or_path);
    if as_path.is_file() {
        return Ok(as_path.to_path_buf());
    }
    if name_or_path.contains('/') || is_yaml(as_path) {
        return Err(exit::usage(format!("no playbook file at {name_or_path}")));
    }
    let dirs = search_path();
    for dir in &dirs {
        for ext in ["yaml", "yml"] {
            let p = dir.join(format!("{name_or_path}.{ext}"));
            if p.is_file() {
                return Ok(p);
            }
        }
    }
    for file in all_files() {
        if let Ok(loaded) = load_file(&file, catalog)
            && loaded.playbook.name == name_or_path
        {
            return Ok(file);
        }
    }
    let shown: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    Err(exit::usage(format!(
        "no playbook named \"{name_or_path}\" in {}; `rota list` shows the playbooks found",
        shown.join(", ")
    )))
}
