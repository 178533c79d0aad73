//! The append-only audit log, chained by HMAC-SHA256.
//!
//! Design decision: each entry's MAC covers its sequence number, its fields
//! and the previous entry's MAC, and a MAC'd head record (last seq and MAC)
//! is updated in the same transaction as every append. So an edited,
//! deleted, inserted or reordered row, and a cut-off tail, are all detected
//! by [`verify`] by anyone who lacks the key (`<state dir>/audit.key`).
//! Someone holding the key can rewrite history; see docs/security.md.

use std::fmt;
use std::io::Write;

use hmac::{Hmac, Mac};
use rusqlite::{Connection, params};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::Sha256;

use crate::db::{self, fmt_time, now};
use crate::{State, StateError};

const META_HEAD: &str = "audit_head";

/// What to record. Names and key IDs only: never a secret value.
#[derive(Clone, Debug, PartialEq)]
pub struct AuditEvent {
    /// Dotted verb: `secret.put`, `secret.reveal`, `run.start`, ...
    pub action: String,
    pub secret: Option<String>,
    pub key_id: Option<String>,
    pub run_id: Option<String>,
    /// Extra facts (JSON object or null), no secret values.
    pub detail: Value,
}

impl AuditEvent {
    pub fn new(action: impl Into<String>) -> Self {
        Self {
            action: action.into(),
            secret: None,
            key_id: None,
            run_id: None,
            detail: Value::Null,
        }
    }
    pub fn secret(mut self, name: impl Into<String>) -> Self {
        self.secret = Some(name.into());
        self
    }
    pub fn key_id(mut self, key_id: Option<impl Into<String>>) -> Self {
        self.key_id = key_id.map(Into::into);
        self
    }
    pub fn run_id(mut self, run_id: Option<impl Into<String>>) -> Self {
        self.run_id = run_id.map(Into::into);
        self
    }
    pub fn detail(mut self, detail: Value) -> Self {
        self.detail = detail;
        self
    }
}

/// One stored entry, as `rota audit export` writes it (one JSON object a line).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub seq: u64,
    /// RFC 3339, UTC.
    pub at: String,
    pub os_user: String,
    pub host: String,
    pub operator: Option<String>,
    pub action: String,
    pub secret: Option<String>,
    pub key_id: Option<String>,
    pub run_id: Option<String>,
    pub detail: Value,
    pub prev_mac: String,
    pub mac: String,
}

/// One thing [`verify`] found wrong.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "problem", rename_all = "snake_case")]
pub enum AuditProblem {
    /// The entry's content does not match its MAC: it was edited.
    Edited { seq: u64 },
    /// The entry does not chain to the one before it: rows were deleted,
    /// inserted or reordered.
    BrokenChain { seq: u64 },
    /// Sequence numbers jump: entries between were deleted.
    Gap { after: u64, next: u64 },
    /// The last entry is not the recorded head: the tail was cut off, or the
    /// head record was tampered with.
    HeadMismatch { last_seq: u64, head_seq: Option<u64> },
}

impl fmt::Display for AuditProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuditProblem::Edited { seq } => write!(f, "entry {seq} was altered (its MAC does not match)"),
            AuditProblem::BrokenChain { seq } => write!(
                f,
                "entry {seq} does not follow the entry before it (entries deleted, inserted or reordered)"
            ),
            AuditProblem::Gap { after, next } => {
                write!(f, "entries {}..{} are missing", after + 1, next.saturating_sub(1))
            }
            AuditProblem::HeadMismatch { last_seq, head_seq } => match head_seq {
                Some(h) => write!(
                    f,
                    "the log ends at entry {last_seq} but the recorded head is entry {h} (tail removed or head forged)"
                ),
                None => write!(
                    f,
                    "the log ends at entry {last_seq} but no valid head record exists"
                ),
            },
        }
    }
}

/// The outcome of [`verify`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct AuditReport {
    pub entries: u64,
    pub problems: Vec<AuditProblem>,
}

impl AuditReport {
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

type HmacSha256 = Hmac<Sha256>;

fn mac_hex(key: &[u8], parts: &[&[u8]]) -> String {
    // HMAC accepts keys of any length; the error arm cannot happen.
    let Ok(mut mac) = HmacSha256::new_from_slice(key) else {
        return String::new();
    };
    for p in parts {
        mac.update(p);
    }
    hex::encode(mac.finalize().into_bytes())
}

#[allow(clippy::too_many_arguments)]
fn entry_mac(
    key: &[u8],
    seq: u64,
    at: &str,
    os_user: &str,
    host: &str,
    operator: Option<&str>,
    action: &str,
    secret: Option<&str>,
    key_id: Option<&str>,
    run_id: Option<&str>,
    detail: &str,
    prev_mac: &str,
) -> String {
    // A JSON array is an unambiguous encoding of the fields.
    let canonical = serde_json::json!([
        seq, at, os_user, host, operator, action, secret, key_id, run_id, detail, prev_mac
    ])
    .to_string();
    mac_hex(key, &[b"rota-audit-v1\n", canonical.as_bytes()])
}

fn head_mac(key: &[u8], seq: u64, mac: &str) -> String {
    mac_hex(key, &[b"rota-audit-head-v1\n", format!("{seq} {mac}").as_bytes()])
}

/// Appends inside the caller's transaction, so the entry commits with the
/// change it records.
pub(crate) fn append(state: &State, conn: &Connection, event: &AuditEvent) -> Result<u64, StateError> {
    let key = state.audit_key(conn)?;
    let (last_seq, prev_mac): (u64, String) = conn
        .query_row("SELECT seq, mac FROM audit ORDER BY seq DESC LIMIT 1", [], |r| {
            Ok((r.get::<_, i64>(0)? as u64, r.get(1)?))
        })
        .or_else(|e| match e {
            rusqlite::Error::QueryReturnedNoRows => Ok((0, String::new())),
            e => Err(e),
        })?;
    let seq = last_seq + 1;
    let at = fmt_time(now());
    let actor = &state.actor;
    let detail = event.detail.to_string();
    let mac = entry_mac(
        &key,
        seq,
        &at,
        &actor.os_user,
        &actor.host,
        actor.operator.as_deref(),
        &event.action,
        event.secret.as_deref(),
        event.key_id.as_deref(),
        event.run_id.as_deref(),
        &detail,
        &prev_mac,
    );
    db::exec(conn,
        "INSERT INTO audit (seq, at, os_user, host, operator, action, secret, key_id, run_id, detail, prev_mac, mac)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        params![
            seq as i64,
            at,
            actor.os_user,
            actor.host,
            actor.operator,
            event.action,
            event.secret,
            event.key_id,
            event.run_id,
            detail,
            prev_mac,
            mac
        ],
    )?;
    db::meta_set(
        conn,
        META_HEAD,
        &format!("{seq} {mac} {}", head_mac(&key, seq, &mac)),
    )?;
    Ok(seq)
}

/// Appends in a transaction of its own.
pub(crate) fn append_standalone(state: &State, event: &AuditEvent) -> Result<u64, StateError> {
    state.db.write(|tx| append(state, tx, event))
}

pub(crate) fn entries(state: &State) -> Result<Vec<AuditEntry>, StateError> {
    state.db.with(|c| {
        let mut stmt = c.prepare_cached(
            "SELECT seq, at, os_user, host, operator, action, secret, key_id, run_id, detail, prev_mac, mac
             FROM audit ORDER BY seq",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, Option<String>>(4)?,
                r.get::<_, String>(5)?,
                r.get::<_, Option<String>>(6)?,
                r.get::<_, Option<String>>(7)?,
                r.get::<_, Option<String>>(8)?,
                r.get::<_, String>(9)?,
                r.get::<_, String>(10)?,
                r.get::<_, String>(11)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (seq, at, os_user, host, operator, action, secret, key_id, run_id, detail, prev_mac, mac) =
                row?;
            out.push(AuditEntry {
                seq: seq as u64,
                at,
                os_user,
                host,
                operator,
                action,
                secret,
                key_id,
                run_id,
                // Kept verbatim as a string if it is not JSON, so verify sees the
                // tampering rather than the reader failing.
                detail: serde_json::from_str(&detail).unwrap_or(Value::String(detail)),
                prev_mac,
                mac,
            });
        }
        Ok(out)
    })
}

/// Recomputes the chain. Reads the detail column raw, exactly as MAC'd.
pub(crate) fn verify(state: &State) -> Result<AuditReport, StateError> {
    state.db.with(|c| {
        let key = state.audit_key(c)?;
        let mut stmt = c.prepare_cached(
            "SELECT seq, at, os_user, host, operator, action, secret, key_id, run_id, detail, prev_mac, mac
             FROM audit ORDER BY rowid",
        )?;
        let mut rows = stmt.query([])?;
        let mut report = AuditReport::default();
        let mut expected_prev = String::new();
        let mut last_seq = 0u64;
        while let Some(r) = rows.next()? {
            let seq = r.get::<_, i64>(0)? as u64;
            let detail: String = r.get(9)?;
            let prev_mac: String = r.get(10)?;
            let mac: String = r.get(11)?;
            let computed = entry_mac(
                &key,
                seq,
                &r.get::<_, String>(1)?,
                &r.get::<_, String>(2)?,
                &r.get::<_, String>(3)?,
                r.get::<_, Option<String>>(4)?.as_deref(),
                &r.get::<_, String>(5)?,
                r.get::<_, Option<String>>(6)?.as_deref(),
                r.get::<_, Option<String>>(7)?.as_deref(),
                r.get::<_, Option<String>>(8)?.as_deref(),
                &detail,
                &prev_mac,
            );
            if seq != last_seq + 1 {
                report.problems.push(AuditProblem::Gap {
                    after: last_seq,
                    next: seq,
                });
            }
            if computed != mac {
                report.problems.push(AuditProblem::Edited { seq });
            }
            if prev_mac != expected_prev {
                report.problems.push(AuditProblem::BrokenChain { seq });
            }
            expected_prev = mac;
            last_seq = seq;
            report.entries += 1;
        }
        let head = db::meta_get(c, META_HEAD)?;
        let head_ok = match head
            .as_deref()
            .map(|h| h.split(' ').collect::<Vec<_>>())
            .as_deref()
        {
            Some([seq, mac, hm]) => {
                let seq_n = seq.parse::<u64>().ok();
                let valid = seq_n.is_some_and(|n| head_mac(&key, n, mac) == *hm);
                if valid && seq_n == Some(last_seq) && *mac == expected_prev {
                    None
                } else {
                    Some(if valid { seq_n } else { None })
                }
            }
            None if last_seq == 0 => None,
            _ => Some(None),
        };
        if let Some(head_seq) = head_ok {
            report
                .problems
                .push(AuditProblem::HeadMismatch { last_seq, head_seq });
        }
        Ok(report)
    })
}

impl State {
    /// Records an event (e.g. `secret.rm` from the CLI) in its own transaction.
    pub fn audit_append(&self, event: &AuditEvent) -> Result<u64, StateError> {
        append_standalone(self, event)
    }

    /// Every entry, oldest first.
    pub fn audit_entries(&self) -> Result<Vec<AuditEntry>, StateError> {
        entries(self)
    }

    /// `rota audit verify`: recomputes the HMAC chain.
    pub fn audit_verify(&self) -> Result<AuditReport, StateError> {
        verify(self)
    }

    /// `rota audit export`: one JSON object per line. Returns the count.
    pub fn audit_export_jsonl(&self, out: &mut dyn Write) -> Result<usize, StateError> {
        let all = entries(self)?;
        for e in &all {
            let line = serde_json::to_string(e)?;
            writeln!(out, "{line}")
                .map_err(|e| StateError::io("cannot write audit export to", "output", e))?;
        }
        Ok(all.len())
    }
}
