//! Test helpers for rota. The main one is [`LeakScanner`]: after a test that
//! handled secrets, it searches everything the test produced (stdout, stderr,
//! trace logs, journal and audit exports, the database outside ciphertext,
//! raw files) for every secret value, in every form it commonly leaks in.
//! [`KeysVendor`] is a key vendor on loopback for resume tests.
//!
//! Design decision: base64 is searched by its alignment-stable inner
//! substrings. A value embedded at byte offset 0, 1 or 2 (mod 3) inside a
//! longer base64 stream encodes to three different character runs; for each
//! alignment we keep only the characters that depend on the value's bits
//! alone, so the needle matches whatever surrounds the value. Hits never
//! carry the value itself, only the secret's label and the form.

mod keys_vendor;

pub use keys_vendor::{CredentialView, KeyView, KeysVendor, VendorView, fingerprint};

use std::fmt;
use std::path::Path;

use std::sync::OnceLock;

use aho_corasick::AhoCorasick;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};

/// How a value appeared.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum LeakForm {
    Raw,
    /// Standard or URL-safe base64 of the value at byte offset `alignment` mod 3.
    Base64 {
        alignment: u8,
        url_safe: bool,
    },
    /// base64 of `id:secret`, as an HTTP Basic `Authorization` header carries it.
    BasicAuth,
    /// Percent-encoded (upper- or lower-case hex, `+` or `%20` for space).
    UrlEncoded,
    /// Escaped as inside a JSON string.
    JsonEscaped,
}

impl fmt::Display for LeakForm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LeakForm::Raw => f.write_str("raw"),
            LeakForm::Base64 { alignment, url_safe } => write!(
                f,
                "{} at alignment {alignment}",
                if *url_safe { "url-safe base64" } else { "base64" }
            ),
            LeakForm::BasicAuth => f.write_str("base64 of id:secret (Basic auth)"),
            LeakForm::UrlEncoded => f.write_str("url-encoded"),
            LeakForm::JsonEscaped => f.write_str("json-escaped"),
        }
    }
}

/// One place a secret was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hit {
    /// The label the secret was registered under (never its value).
    pub secret: String,
    pub form: LeakForm,
    /// What was scanned: `stdout`, a file path, `db:table.column[rowid]`, ...
    pub source: String,
    pub offset: usize,
}

impl fmt::Display for Hit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "secret {:?} found {} in {} at byte {}",
            self.secret, self.form, self.source, self.offset
        )
    }
}

struct Needle {
    secret: String,
    form: LeakForm,
    bytes: Vec<u8>,
}

/// Needles shorter than this are dropped: they would match by chance.
pub const MIN_NEEDLE: usize = 6;

/// Searches byte blobs for registered secret values.
#[derive(Default)]
pub struct LeakScanner {
    needles: Vec<Needle>,
    automaton: OnceLock<Option<AhoCorasick>>,
}

impl fmt::Debug for LeakScanner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LeakScanner")
            .field("needles", &self.needles.len())
            .finish()
    }
}

/// The characters of base64(value) that do not depend on the bytes around
/// it, when the value starts at byte offset `alignment` (mod 3) of the stream.
pub fn base64_inner(value: &[u8], alignment: u8, url_safe: bool) -> String {
    let pad = usize::from(alignment % 3);
    let mut buf = vec![0u8; pad];
    buf.extend_from_slice(value);
    let engine = if url_safe {
        &URL_SAFE_NO_PAD
    } else {
        &STANDARD_NO_PAD
    };
    let encoded = engine.encode(&buf);
    // Character i covers bits [6i, 6i + 6) of the stream.
    let first = (8 * pad).div_ceil(6);
    let end = (8 * (pad + value.len())) / 6;
    encoded.get(first..end.max(first)).unwrap_or("").to_owned()
}

fn url_encode(value: &str, lower: bool, plus_for_space: bool) -> String {
    let mut out = String::new();
    for b in value.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(b as char),
            b' ' if plus_for_space => out.push('+'),
            _ if lower => out.push_str(&format!("%{b:02x}")),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

impl LeakScanner {
    pub fn new() -> Self {
        Self::default()
    }

    fn push(&mut self, secret: &str, form: LeakForm, bytes: Vec<u8>) {
        if bytes.len() < MIN_NEEDLE {
            return;
        }
        if self
            .needles
            .iter()
            .any(|n| n.secret == secret && n.bytes == bytes)
        {
            return;
        }
        self.automaton = OnceLock::new();
        self.needles.push(Needle {
            secret: secret.to_owned(),
            form,
            bytes,
        });
    }

    /// Registers a secret value under a label (used in hits instead of the value).
    pub fn add(&mut self, label: &str, value: &str) -> &mut Self {
        self.push(label, LeakForm::Raw, value.as_bytes().to_vec());
        for url_safe in [false, true] {
            for alignment in 0..3 {
                let inner = base64_inner(value.as_bytes(), alignment, url_safe);
                self.push(
                    label,
                    LeakForm::Base64 { alignment, url_safe },
                    inner.into_bytes(),
                );
            }
        }
        for (lower, plus) in [(false, true), (false, false), (true, true), (true, false)] {
            let enc = url_encode(value, lower, plus);
            if enc != value {
                self.push(label, LeakForm::UrlEncoded, enc.into_bytes());
            }
        }
        let json = serde_json::to_string(value).unwrap_or_default();
        let escaped = json.get(1..json.len().saturating_sub(1)).unwrap_or("");
        if escaped != value {
            self.push(label, LeakForm::JsonEscaped, escaped.as_bytes().to_vec());
        }
        // "\u002f"-style escapes, as some serializers emit for '/' and non-ASCII.
        let unicode: String = value
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_string()
                } else {
                    format!("\\u{:04x}", c as u32)
                }
            })
            .collect();
        if unicode != value {
            self.push(label, LeakForm::JsonEscaped, unicode.into_bytes());
        }
        self
    }

    /// Registers a Basic-auth pair: the secret itself (all forms) and
    /// base64 of `id:secret` at every alignment.
    pub fn add_basic_auth(&mut self, label: &str, id: &str, secret: &str) -> &mut Self {
        self.add(label, secret);
        let pair = format!("{id}:{secret}");
        for alignment in 0..3 {
            self.push(
                label,
                LeakForm::BasicAuth,
                base64_inner(pair.as_bytes(), alignment, false).into_bytes(),
            );
        }
        self
    }

    pub fn is_empty(&self) -> bool {
        self.needles.is_empty()
    }

    /// Every needle occurrence in `bytes` (overlapping ones included).
    pub fn scan_bytes(&self, source: &str, bytes: &[u8]) -> Vec<Hit> {
        let Some(automaton) = self.automaton() else {
            return Vec::new();
        };
        automaton
            .find_overlapping_iter(bytes)
            .filter_map(|m| self.needles.get(m.pattern().as_usize()).map(|n| (n, m.start())))
            .map(|(n, offset)| Hit {
                secret: n.secret.clone(),
                form: n.form.clone(),
                source: source.to_owned(),
                offset,
            })
            .collect()
    }

    /// Built on first scan after the needles last changed.
    fn automaton(&self) -> Option<&AhoCorasick> {
        if self.needles.is_empty() {
            return None;
        }
        self.automaton
            .get_or_init(|| AhoCorasick::new(self.needles.iter().map(|n| &n.bytes)).ok())
            .as_ref()
    }

    /// A file's raw bytes (a missing file has no hits).
    pub fn scan_file(&self, path: &Path) -> std::io::Result<Vec<Hit>> {
        match std::fs::read(path) {
            Ok(bytes) => Ok(self.scan_bytes(&path.display().to_string(), &bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    /// Every regular file under `dir`, recursively, raw bytes.
    pub fn scan_dir(&self, dir: &Path) -> std::io::Result<Vec<Hit>> {
        let mut hits = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let ty = entry.file_type()?;
            if ty.is_dir() {
                hits.extend(self.scan_dir(&entry.path())?);
            } else if ty.is_file() {
                hits.extend(self.scan_file(&entry.path())?);
            }
        }
        Ok(hits)
    }

    /// Every column of every row of every table of a SQLite database, except
    /// the `table.column`s listed in `skip` (the ciphertext), read through SQL
    /// so values are seen decoded, whatever the page layout.
    pub fn scan_sqlite(&self, db: &Path, skip: &[&str]) -> rusqlite::Result<Vec<Hit>> {
        let conn = rusqlite::Connection::open_with_flags(
            db,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        let mut tables: Vec<String> = Vec::new();
        {
            let mut stmt = conn.prepare("SELECT name FROM sqlite_master WHERE type = 'table'")?;
            for t in stmt.query_map([], |r| r.get::<_, String>(0))? {
                tables.push(t?);
            }
        }
        let mut hits = Vec::new();
        for table in tables {
            let mut stmt = conn.prepare(&format!(
                "SELECT rowid, * FROM \"{}\"",
                table.replace('"', "\"\"")
            ))?;
            let columns: Vec<String> = stmt.column_names().iter().map(|c| c.to_string()).collect();
            let mut rows = stmt.query([])?;
            while let Some(row) = rows.next()? {
                let rowid: i64 = row.get(0).unwrap_or(-1);
                for (i, column) in columns.iter().enumerate().skip(1) {
                    if skip.contains(&format!("{table}.{column}").as_str()) {
                        continue;
                    }
                    let bytes: Vec<u8> = match row.get_ref(i)? {
                        rusqlite::types::ValueRef::Null => continue,
                        rusqlite::types::ValueRef::Integer(n) => n.to_string().into_bytes(),
                        rusqlite::types::ValueRef::Real(f) => f.to_string().into_bytes(),
                        rusqlite::types::ValueRef::Text(t) | rusqlite::types::ValueRef::Blob(t) => t.to_vec(),
                    };
                    hits.extend(self.scan_bytes(&format!("db:{table}.{column}[{rowid}]"), &bytes));
                }
            }
        }
        Ok(hits)
    }
}

/// The columns of rota's state database that hold ciphertext (skipped by
/// [`LeakScanner::scan_rota_state`]'s SQL pass; still covered by the raw pass).
pub const ROTA_CIPHERTEXT_COLUMNS: &[&str] = &["secret_versions.ciphertext"];

impl LeakScanner {
    /// A rota state directory: every column of `state.db` outside ciphertext
    /// (through SQL), then every file in the directory as raw bytes
    /// (database, WAL, identity, audit key).
    pub fn scan_rota_state(&self, dir: &Path) -> Result<Vec<Hit>, Box<dyn std::error::Error + Send + Sync>> {
        let mut hits = Vec::new();
        let db = dir.join("state.db");
        if db.exists() {
            hits.extend(self.scan_sqlite(&db, ROTA_CIPHERTEXT_COLUMNS)?);
        }
        if dir.is_dir() {
            hits.extend(
                self.scan_dir(dir)
                    .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?,
            );
        }
        Ok(hits)
    }
}

/// Panics with every hit (labels and places, never values) unless there are none.
#[track_caller]
pub fn assert_no_leaks(hits: &[Hit]) {
    if !hits.is_empty() {
        let list: Vec<String> = hits.iter().map(|h| format!("  {h}")).collect();
        panic!("{} secret leak(s):\n{}", hits.len(), list.join("\n"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "s3cr3t/Value+with spaces&\"quotes\"-Z9";

    fn scanner() -> LeakScanner {
        let mut s = LeakScanner::new();
        s.add("client-secret", SECRET);
        s.add_basic_auth("api-key", "client-id-42", "k3y-Value-0099");
        s
    }

    fn forms(hits: &[Hit]) -> Vec<LeakForm> {
        hits.iter().map(|h| h.form.clone()).collect()
    }

    #[test]
    fn raw_value_is_caught_with_its_place() {
        let blob = format!("log line: token={SECRET}\n");
        let hits = scanner().scan_bytes("stderr", blob.as_bytes());
        assert!(
            hits.iter()
                .any(|h| h.form == LeakForm::Raw && h.offset == 16 && h.source == "stderr")
        );
        assert!(!hits.iter().any(|h| h.to_string().contains(SECRET)));
    }

    #[test]
    fn base64_at_every_alignment_is_caught() {
        let s = scanner();
        for prefix in ["", "x", "xy", "xyz", "wxyz"] {
            for suffix in ["", "a", "ab", "abc"] {
                for url_safe in [false, true] {
                    let plain = format!("{prefix}{SECRET}{suffix}");
                    let engine = if url_safe {
                        &URL_SAFE_NO_PAD
                    } else {
                        &STANDARD_NO_PAD
                    };
                    let encoded = engine.encode(plain.as_bytes());
                    let hits = s.scan_bytes("trace", encoded.as_bytes());
                    let want = (prefix.len() % 3) as u8;
                    // A URL-safe needle identical to the standard one is kept once.
                    assert!(
                        hits.iter().any(
                            |h| matches!(h.form, LeakForm::Base64 { alignment, .. } if alignment == want)
                        ),
                        "missed base64 with prefix {prefix:?} suffix {suffix:?} url_safe {url_safe}"
                    );
                }
            }
        }
    }

    #[test]
    fn padded_base64_is_caught() {
        let encoded = base64::engine::general_purpose::STANDARD.encode(SECRET.as_bytes());
        assert!(!scanner().scan_bytes("out", encoded.as_bytes()).is_empty());
    }

    #[test]
    fn basic_auth_header_is_caught() {
        let header = format!(
            "Authorization: Basic {}",
            base64::engine::general_purpose::STANDARD.encode("client-id-42:k3y-Value-0099")
        );
        let hits = scanner().scan_bytes("http", header.as_bytes());
        assert!(forms(&hits).contains(&LeakForm::BasicAuth), "{hits:?}");
    }

    #[test]
    fn url_encoded_value_is_caught() {
        let body = format!("grant_type=x&client_secret={}", url_encode(SECRET, false, true));
        assert!(forms(&scanner().scan_bytes("body", body.as_bytes())).contains(&LeakForm::UrlEncoded));
        let lower = format!("q={}", url_encode(SECRET, true, false));
        assert!(forms(&scanner().scan_bytes("body", lower.as_bytes())).contains(&LeakForm::UrlEncoded));
    }

    #[test]
    fn json_escaped_value_is_caught() {
        let doc = serde_json::json!({"secret": SECRET}).to_string();
        assert!(forms(&scanner().scan_bytes("journal", doc.as_bytes())).contains(&LeakForm::JsonEscaped));
    }

    #[test]
    fn files_dirs_and_sqlite_columns_are_scanned() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        std::fs::create_dir(dir.path().join("sub"))?;
        std::fs::write(dir.path().join("sub/trace.log"), format!("x {SECRET} y"))?;
        let hits = scanner().scan_dir(dir.path())?;
        assert!(hits.iter().any(|h| h.source.ends_with("trace.log")));

        let db = dir.path().join("t.db");
        let conn = rusqlite::Connection::open(&db)?;
        conn.execute_batch("CREATE TABLE t (note TEXT, ciphertext BLOB)")?;
        conn.execute(
            "INSERT INTO t VALUES (?1, ?2)",
            [format!("leak {SECRET}"), SECRET.to_owned()],
        )?;
        drop(conn);
        let hits = scanner().scan_sqlite(&db, &["t.ciphertext"])?;
        assert_eq!(hits.iter().filter(|h| h.form == LeakForm::Raw).count(), 1);
        assert!(
            hits.iter().all(|h| h.source.starts_with("db:t.note[")),
            "{hits:?}"
        );
        Ok(())
    }

    #[test]
    fn clean_output_has_no_hits() {
        let s = scanner();
        let clean =
            "run 0192 step mint succeeded; captured {\"$secret\":\"plex/acme/client-secret@3\"} key id kid-1";
        assert!(s.scan_bytes("stdout", clean.as_bytes()).is_empty());
        let other = base64::engine::general_purpose::STANDARD.encode("an unrelated value of some length");
        assert!(s.scan_bytes("stdout", other.as_bytes()).is_empty());
        assert_no_leaks(&s.scan_bytes("stdout", clean.as_bytes()));
    }

    #[test]
    #[should_panic(expected = "secret leak")]
    fn assert_no_leaks_fails_on_a_hit() {
        let s = scanner();
        assert_no_leaks(&s.scan_bytes("stdout", SECRET.as_bytes()));
    }
}
