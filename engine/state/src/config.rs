//! Where the state lives and how the identity is found.
//!
//! Design decision: the environment is read in ONE place,
//! [`StateConfig::from_env`]; everything else takes an explicit config, so
//! tests (and embedders) never mutate process-wide variables. A passphrase
//! is never taken from an environment variable or argv, only from a file
//! named by `ROTA_PASSPHRASE_FILE` or a no-echo prompt.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

/// Names the state directory. Default: `$XDG_DATA_HOME/rota` (`~/.local/share/rota`).
pub const ENV_STATE_DIR: &str = "ROTA_STATE_DIR";
/// Names an identity file to use instead of `<state dir>/identity.txt`. Plain
/// (`age-keygen` output) or passphrase-protected (`age -p` of that output).
/// Never created by rota.
pub const ENV_IDENTITY_FILE: &str = "ROTA_IDENTITY_FILE";
/// Names a FILE holding the passphrase of a protected identity.
pub const ENV_PASSPHRASE_FILE: &str = "ROTA_PASSPHRASE_FILE";
/// The operator's name, recorded in the audit log and on runs.
pub const ENV_OPERATOR: &str = "ROTA_OPERATOR";

/// File names inside the state directory.
pub const DB_FILE: &str = "state.db";
pub const IDENTITY_FILE: &str = "identity.txt";
pub const AUDIT_KEY_FILE: &str = "audit.key";

/// How the age identity is found and unlocked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdentityConfig {
    pub path: PathBuf,
    /// Create a fresh X25519 identity at `path` when it does not exist and the
    /// database has no secrets encrypted to another one. True only for the
    /// default identity inside the state directory.
    pub create_if_missing: bool,
    /// A file holding the passphrase of a protected identity.
    pub passphrase_file: Option<PathBuf>,
    /// Ask for the passphrase on the terminal when no file is given.
    pub allow_prompt: bool,
}

/// Everything [`crate::State::open_with`] needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateConfig {
    pub dir: PathBuf,
    pub identity: IdentityConfig,
    /// Recorded as the operator in audit entries and runs.
    pub operator: Option<String>,
}

impl StateConfig {
    /// The default layout under `dir`: `state.db`, `identity.txt` (created on
    /// first use), `audit.key`. No prompt.
    pub fn in_dir(dir: impl Into<PathBuf>) -> Self {
        let dir = dir.into();
        Self {
            identity: IdentityConfig {
                path: dir.join(IDENTITY_FILE),
                create_if_missing: true,
                passphrase_file: None,
                allow_prompt: false,
            },
            dir,
            operator: None,
        }
    }

    /// Reads `ROTA_STATE_DIR`, `ROTA_IDENTITY_FILE`, `ROTA_PASSPHRASE_FILE`
    /// and `ROTA_OPERATOR`; prompts for a passphrase only when stdin is a
    /// terminal.
    pub fn from_env() -> Result<Self, crate::StateError> {
        let mut config = Self::in_dir(default_state_dir()?);
        if let Some(path) = env_path(ENV_IDENTITY_FILE) {
            config.identity.path = path;
            config.identity.create_if_missing = false;
        }
        config.identity.passphrase_file = env_path(ENV_PASSPHRASE_FILE);
        config.identity.allow_prompt = std::io::stdin().is_terminal();
        config.operator = std::env::var(ENV_OPERATOR).ok().filter(|s| !s.is_empty());
        Ok(config)
    }

    pub fn db_path(&self) -> PathBuf {
        self.dir.join(DB_FILE)
    }

    pub fn audit_key_path(&self) -> PathBuf {
        self.dir.join(AUDIT_KEY_FILE)
    }
}

fn env_path(var: &str) -> Option<PathBuf> {
    std::env::var_os(var).filter(|v| !v.is_empty()).map(PathBuf::from)
}

/// `ROTA_STATE_DIR`, else `<XDG data dir>/rota`.
pub fn default_state_dir() -> Result<PathBuf, crate::StateError> {
    if let Some(dir) = env_path(ENV_STATE_DIR) {
        return Ok(dir);
    }
    resolve_state_dir(None, dirs::data_dir().as_deref())
}

/// The resolution rule, without touching the environment: an explicit dir
/// wins, else `<data dir>/rota`.
pub fn resolve_state_dir(
    explicit: Option<&Path>,
    data_dir: Option<&Path>,
) -> Result<PathBuf, crate::StateError> {
    match (explicit, data_dir) {
        (Some(dir), _) => Ok(dir.to_path_buf()),
        (None, Some(data)) => Ok(data.join("rota")),
        (None, None) => Err(crate::StateError::Invalid(format!(
            "no state directory: set {ENV_STATE_DIR} (no XDG data directory could be found)"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_dir_wins_over_xdg() -> Result<(), crate::StateError> {
        let got = resolve_state_dir(Some(Path::new("/s")), Some(Path::new("/home/u/.local/share")))?;
        assert_eq!(got, PathBuf::from("/s"));
        let got = resolve_state_dir(None, Some(Path::new("/home/u/.local/share")))?;
        assert_eq!(got, PathBuf::from("/home/u/.local/share/rota"));
        assert!(resolve_state_dir(None, None).is_err());
        Ok(())
    }
}
