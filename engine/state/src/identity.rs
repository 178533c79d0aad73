//! The age X25519 identity that encrypts every stored secret version.
//!
//! Design decision: a passphrase-protected identity is unlocked at most once
//! per process (cached by path and file digest), so a run that reads many
//! secrets asks once. A plain identity is re-read each time it is needed,
//! which keeps a replaced or damaged file visible at once. A missing identity
//! is only ever created when the database holds nothing encrypted to another
//! one: rota never silently replaces the key that secrets depend on.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use age::secrecy::{ExposeSecret, SecretString};
use age::x25519;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::StateError;
use crate::config::IdentityConfig;
use crate::fsutil;

type Cache = Mutex<HashMap<(PathBuf, [u8; 32]), Arc<x25519::Identity>>>;

static UNLOCKED: OnceLock<Cache> = OnceLock::new();
static UNLOCKS: AtomicUsize = AtomicUsize::new(0);

/// How many passphrase unlocks this process has performed (for tests and
/// diagnostics: it stays at one per protected identity file).
pub fn passphrase_unlocks() -> usize {
    UNLOCKS.load(Ordering::SeqCst)
}

fn identity_err(path: &Path, reason: impl Into<String>) -> StateError {
    StateError::Identity {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// The text `age-keygen` writes, which both rota and the `age` CLI read.
pub fn identity_file_text(identity: &x25519::Identity) -> Zeroizing<String> {
    let created = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    Zeroizing::new(format!(
        "# created: {created}\n# public key: {}\n{}\n",
        identity.to_public(),
        identity.to_string().expose_secret()
    ))
}

/// Writes a new identity to `path` (0600), optionally protected with a
/// passphrase (scrypt, as `age -p` does; the `age` CLI can use it with `-i`).
/// Fails if `path` exists. Returns the public recipient.
pub fn create_identity_file(
    path: &Path,
    passphrase: Option<&SecretString>,
    scrypt_work_factor: Option<u8>,
) -> Result<x25519::Recipient, StateError> {
    let identity = x25519::Identity::generate();
    let text = identity_file_text(&identity);
    let contents: Zeroizing<Vec<u8>> = match passphrase {
        None => Zeroizing::new(text.as_bytes().to_vec()),
        Some(pass) => {
            let mut recipient = age::scrypt::Recipient::new(pass.clone());
            if let Some(factor) = scrypt_work_factor {
                if !(1..64).contains(&factor) {
                    return Err(identity_err(
                        path,
                        format!("scrypt work factor {factor} is not in 1..=63"),
                    ));
                }
                recipient.set_work_factor(factor);
            }
            let armored = age::encrypt_and_armor(&recipient, text.as_bytes())
                .map_err(|e| identity_err(path, format!("cannot encrypt the new identity: {e}")))?;
            Zeroizing::new(armored.into_bytes())
        }
    };
    if !fsutil::create_private_file(path, &contents)? {
        return Err(identity_err(
            path,
            "already exists; rota will not overwrite an identity",
        ));
    }
    Ok(identity.to_public())
}

/// Loads the identity, creating the default one when allowed and
/// `may_create` (the database holds no recipient yet).
pub(crate) fn load(config: &IdentityConfig, may_create: bool) -> Result<Arc<x25519::Identity>, StateError> {
    let path = &config.path;
    let bytes = match std::fs::read(path) {
        Ok(b) => Zeroizing::new(b),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if config.create_if_missing && may_create {
                let identity = x25519::Identity::generate();
                let text = identity_file_text(&identity);
                if fsutil::create_private_file(path, text.as_bytes())? {
                    return Ok(Arc::new(identity));
                }
                // Another process created it first: use theirs.
                Zeroizing::new(
                    std::fs::read(path).map_err(|e| StateError::io("cannot read identity", path, e))?,
                )
            } else {
                return Err(identity_err(
                    path,
                    "does not exist; restore it from your backup (see docs/security.md)",
                ));
            }
        }
        Err(e) => return Err(StateError::io("cannot read identity", path, e)),
    };
    if is_age_file(&bytes) {
        let digest: [u8; 32] = Sha256::digest(&bytes[..]).into();
        let key = (path.clone(), digest);
        let cache = UNLOCKED.get_or_init(Default::default);
        if let Some(found) = cache.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
            return Ok(found.clone());
        }
        let identity = Arc::new(unlock(config, &bytes)?);
        UNLOCKS.fetch_add(1, Ordering::SeqCst);
        cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, identity.clone());
        Ok(identity)
    } else {
        parse(path, &bytes).map(Arc::new)
    }
}

fn is_age_file(bytes: &[u8]) -> bool {
    bytes.starts_with(b"age-encryption.org/") || bytes.starts_with(b"-----BEGIN AGE ENCRYPTED FILE-----")
}

fn unlock(config: &IdentityConfig, bytes: &[u8]) -> Result<x25519::Identity, StateError> {
    let path = &config.path;
    let passphrase = passphrase(config)?;
    let identity = age::scrypt::Identity::new(passphrase);
    let plain = age::decrypt(&identity, bytes).map_err(|e| match e {
        age::DecryptError::DecryptionFailed
        | age::DecryptError::KeyDecryptionFailed
        | age::DecryptError::NoMatchingKeys => identity_err(path, "wrong passphrase"),
        age::DecryptError::InvalidMac | age::DecryptError::InvalidHeader => {
            identity_err(path, format!("passphrase-protected identity is damaged ({e})"))
        }
        other => identity_err(path, format!("cannot unlock: {other}")),
    })?;
    parse(path, &Zeroizing::new(plain))
}

fn passphrase(config: &IdentityConfig) -> Result<SecretString, StateError> {
    let path = &config.path;
    if let Some(file) = &config.passphrase_file {
        let raw = Zeroizing::new(
            std::fs::read_to_string(file)
                .map_err(|e| StateError::io("cannot read passphrase file", file, e))?,
        );
        let trimmed = raw.strip_suffix('\n').unwrap_or(&raw);
        let trimmed = trimmed.strip_suffix('\r').unwrap_or(trimmed);
        if trimmed.is_empty() {
            return Err(identity_err(
                path,
                format!("passphrase file {} is empty", file.display()),
            ));
        }
        return Ok(SecretString::from(trimmed.to_owned()));
    }
    if config.allow_prompt {
        let typed = rpassword::prompt_password(format!("Passphrase for identity {}: ", path.display()))
            .map_err(|e| StateError::io("cannot read passphrase for", path, e))?;
        return Ok(SecretString::from(typed));
    }
    Err(identity_err(
        path,
        format!(
            "is passphrase-protected; name a file holding the passphrase in {} or run on a terminal",
            crate::config::ENV_PASSPHRASE_FILE
        ),
    ))
}

/// Parses identity text. Never echoes a line: it may be key material.
fn parse(path: &Path, bytes: &[u8]) -> Result<x25519::Identity, StateError> {
    let text = std::str::from_utf8(bytes).map_err(|_| identity_err(path, "is damaged: not UTF-8 text"))?;
    let mut found = None;
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match x25519::Identity::from_str(line) {
            Ok(id) if found.is_none() => found = Some(id),
            Ok(_) => {
                return Err(identity_err(
                    path,
                    format!(
                        "holds more than one identity (line {}); rota needs exactly one",
                        n + 1
                    ),
                ));
            }
            Err(_) => {
                return Err(identity_err(
                    path,
                    format!(
                        "is damaged: line {} is not an age X25519 identity (AGE-SECRET-KEY-1...)",
                        n + 1
                    ),
                ));
            }
        }
    }
    found.ok_or_else(|| identity_err(path, "is damaged: it holds no AGE-SECRET-KEY-1 line"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(path: PathBuf) -> IdentityConfig {
        IdentityConfig {
            path,
            create_if_missing: false,
            passphrase_file: None,
            allow_prompt: false,
        }
    }

    #[test]
    fn created_identity_is_private_and_reloads() -> Result<(), Box<dyn std::error::Error>> {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("id.txt");
        let recipient = create_identity_file(&path, None, None)?;
        assert_eq!(std::fs::metadata(&path)?.permissions().mode() & 0o777, 0o600);
        let loaded = load(&config(path.clone()), false)?;
        assert_eq!(loaded.to_public().to_string(), recipient.to_string());
        assert!(create_identity_file(&path, None, None).is_err());
        Ok(())
    }

    #[test]
    fn damaged_identity_names_the_line_not_its_content() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("id.txt");
        std::fs::write(&path, "# comment\nAGE-SECRET-KEY-1NOTAKEY\n")?;
        let err = load(&config(path.clone()), false)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("line 2 is not an age X25519 identity"), "{err}");
        assert!(!err.contains("NOTAKEY"), "{err}");
        Ok(())
    }

    #[test]
    fn missing_identity_is_not_created_when_not_allowed() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let mut cfg = config(dir.path().join("id.txt"));
        cfg.create_if_missing = true;
        assert!(load(&cfg, false).is_err());
        assert!(!cfg.path.exists());
        assert!(load(&cfg, true).is_ok());
        assert!(cfg.path.exists());
        Ok(())
    }
}
