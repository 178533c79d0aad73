//! Plain-text renderings for the CLI (`rota secrets list`, `rota runs show`, ...).
//!
//! Design decision: renderers take the same data the JSON output serializes
//! and return a `String`, so the CLI prints and golden tests compare one
//! value. Nothing here can see a secret value: only names, handles and key IDs.

use rota_core::reconcile::{Decision, Reconciled, RevokeOutcome, Revoked};
use rota_core::{SecretSummary, VersionInfo};
use time::OffsetDateTime;

use crate::audit::AuditReport;
use crate::inventory::Credential;
use crate::journal::{EventData, RunRecord, RunSummary, StepRecord};
use crate::lock::LockHolder;

/// Left-aligned columns separated by two spaces; trailing spaces trimmed.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, cell) in cells.iter().enumerate() {
            let w = widths.get(i).copied().unwrap_or(0);
            s.push_str(&format!("{cell:<w$}  "));
        }
        s.trim_end().to_owned() + "\n"
    };
    let mut out = line(header.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

/// Timestamps to the second, for reading.
fn when(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC)
        .replace_nanosecond(0)
        .unwrap_or(t)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "-".to_owned())
}

/// `rota secrets list`.
pub fn secrets_list(secrets: &[SecretSummary]) -> String {
    if secrets.is_empty() {
        return "no secrets\n".to_owned();
    }
    let rows: Vec<Vec<String>> = secrets
        .iter()
        .map(|s| {
            vec![
                s.name.clone(),
                s.versions.to_string(),
                opt(s.current),
                opt(s.pending),
                opt(s.previous),
            ]
        })
        .collect();
    table(&["NAME", "VERSIONS", "CURRENT", "PENDING", "PREVIOUS"], &rows)
}

/// `rota secrets versions <name>`.
pub fn versions(versions: &[VersionInfo]) -> String {
    let rows: Vec<Vec<String>> = versions
        .iter()
        .map(|v| {
            vec![
                v.handle.to_string(),
                if v.stages.is_empty() {
                    "-".to_owned()
                } else {
                    v.stages.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(",")
                },
                when(v.created_at),
                opt(v.provenance.key_id.as_deref()),
                opt(v.provenance.run_id.as_deref()),
                opt(v.provenance.step_id.as_deref()),
                opt(v.provenance.source.as_deref()),
            ]
        })
        .collect();
    table(
        &["VERSION", "STAGES", "CREATED", "KEY ID", "RUN", "STEP", "SOURCE"],
        &rows,
    )
}

/// `rota runs list`.
pub fn runs_list(runs: &[RunSummary]) -> String {
    if runs.is_empty() {
        return "no runs\n".to_owned();
    }
    let rows: Vec<Vec<String>> = runs
        .iter()
        .map(|r| {
            vec![
                r.id.clone(),
                r.playbook_name.clone(),
                r.status.as_str().to_owned(),
                when(r.started_at),
                opt(r.finished_at.map(when)),
                r.operator.clone().unwrap_or_else(|| r.os_user.clone()),
            ]
        })
        .collect();
    table(&["RUN", "PLAYBOOK", "STATUS", "STARTED", "FINISHED", "BY"], &rows)
}

fn clock(t: OffsetDateTime) -> String {
    let s = when(t);
    s.get(11..19).map(str::to_owned).unwrap_or(s)
}

fn reconciled(r: &Reconciled) -> String {
    let what = format!(
        "reconciled {} (idempotency key {}): ",
        r.action, r.idempotency_key
    );
    let ids = r.key_ids.join(", ");
    what + &match r.decision {
        Decision::Repeated => "repeated it (resume: repeat)".to_owned(),
        Decision::Adopted if ids.is_empty() => "applied before the interruption; result adopted".to_owned(),
        Decision::Adopted => format!("applied before the interruption; adopted key {ids}"),
        Decision::NotApplied => "not applied at the vendor; redone".to_owned(),
        Decision::Orphaned => format!("left orphan key(s) {ids}; revoking them, then redoing it"),
    }
}

fn revoked(r: &Revoked) -> String {
    match r.outcome {
        RevokeOutcome::Revoked => format!("revoked key {} ({})", r.key_id, r.action),
        RevokeOutcome::AlreadyGone => format!("key {} was already gone ({})", r.key_id, r.action),
        RevokeOutcome::Failed => format!(
            "revoking key {} with {} FAILED: {}",
            r.key_id,
            r.action,
            r.error.as_deref().unwrap_or("no reason given")
        ),
    }
}

/// `rota runs show <id>`: a readable timeline.
pub fn run_timeline(run: &RunRecord) -> String {
    let s = &run.summary;
    let mut out = format!("run {}  {}  {}\n", s.id, s.playbook_name, s.status.as_str());
    out.push_str(&format!(
        "  playbook  {} ({})\n",
        s.playbook_path, s.playbook_digest
    ));
    for (plugin, digest) in &run.plugin_digests {
        out.push_str(&format!("  plugin    {plugin} ({digest})\n"));
    }
    let by = match &s.operator {
        Some(op) => format!("{op} ({}@{})", s.os_user, s.host),
        None => format!("{}@{}", s.os_user, s.host),
    };
    out.push_str(&format!("  started   {} by {by}\n", when(s.started_at)));
    if let Some(f) = s.finished_at {
        out.push_str(&format!("  finished  {}\n", when(f)));
    }
    if s.resumes > 0 {
        out.push_str(&format!("  resumed   {} time(s)\n", s.resumes));
    }
    out.push('\n');
    for ev in &run.events {
        let step = ev.step.as_ref().map(|k| k.to_string()).unwrap_or_default();
        let line = match &ev.data {
            EventData::StepStarted => format!("{step}: started (attempt {})", ev.attempt.unwrap_or(1)),
            EventData::Intent(i) => {
                let mut line = format!("{step}:   calling {}", i.action);
                if let Some(id) = &i.revokes {
                    line.push_str(&format!(" to revoke key {id}"));
                }
                match (&i.idempotency_key, i.snapshot.is_some()) {
                    (Some(k), true) => {
                        line.push_str(&format!(" (idempotency key {k}, vendor state snapshot taken)"))
                    }
                    (Some(k), false) => line.push_str(&format!(" (idempotency key {k})")),
                    (None, true) => line.push_str(" (vendor state snapshot taken)"),
                    (None, false) => {}
                }
                line
            }
            EventData::Reconciled(r) => format!("{step}:   {}", reconciled(r)),
            EventData::Revoked(r) => format!("{step}:   {}", revoked(r)),
            EventData::Capture(c) => format!(
                "{}:   captured {}{}",
                if step.is_empty() { "run" } else { &step },
                c.handle,
                c.key_id
                    .as_ref()
                    .map(|k| format!(" (key id {k})"))
                    .unwrap_or_default()
            ),
            EventData::StepFinished(end) => match &end.error {
                Some(e) => format!("{step}: {} ({}: {})", end.outcome.as_str(), e.kind, e.message),
                None => format!("{step}: {}", end.outcome.as_str()),
            },
            EventData::Resumed { forced } => {
                format!(
                    "run resumed{}",
                    if *forced {
                        " (forced past changed digests)"
                    } else {
                        ""
                    }
                )
            }
            EventData::RunFinished { outcome } => format!("run {}", outcome.as_str()),
        };
        out.push_str(&format!("  {}  {line}\n", clock(ev.at)));
    }
    let in_flight: Vec<&StepRecord> = run.in_flight().collect();
    if !in_flight.is_empty() {
        out.push('\n');
        for st in in_flight {
            out.push_str(&format!("  in flight: {} (attempt {})", st.key, st.attempt));
            if let Some(i) = st.last_intent() {
                out.push_str(&format!(", last call {}", i.action));
            }
            if !st.captures.is_empty() {
                let caps: Vec<String> = st.captures.iter().map(|c| c.handle.to_string()).collect();
                out.push_str(&format!(", captured {}", caps.join(", ")));
            }
            out.push('\n');
        }
    }
    out
}

/// `rota audit verify`.
pub fn audit_report(report: &AuditReport) -> String {
    if report.is_ok() {
        return format!("audit log intact: {} entries, chain verified\n", report.entries);
    }
    let mut out = format!(
        "audit log TAMPERED: {} problem(s) in {} entries\n",
        report.problems.len(),
        report.entries
    );
    for p in &report.problems {
        out.push_str(&format!("  {p}\n"));
    }
    out
}

/// `rota inventory [--due]`.
pub fn inventory(creds: &[Credential], now: OffsetDateTime) -> String {
    if creds.is_empty() {
        return "no credentials\n".to_owned();
    }
    let rows: Vec<Vec<String>> = creds
        .iter()
        .map(|c| {
            vec![
                c.vendor.clone(),
                c.account.clone(),
                c.key_id.clone(),
                c.status.as_str().to_owned(),
                opt(c.expires.map(when)),
                opt(c.days_left(now)),
                if c.consumers.is_empty() {
                    "-".to_owned()
                } else {
                    c.consumers.join(",")
                },
            ]
        })
        .collect();
    table(
        &[
            "VENDOR",
            "ACCOUNT",
            "KEY ID",
            "STATUS",
            "EXPIRES",
            "DAYS",
            "CONSUMERS",
        ],
        &rows,
    )
}

/// `rota state check`.
pub fn check_report(report: &crate::CheckReport) -> String {
    if report.is_ok() {
        return format!(
            "state intact: database pages sound, {} secret version(s) decrypt, audit chain verified\n",
            report.versions_checked
        );
    }
    let mut out = String::from("state DAMAGED:\n");
    for p in &report.database {
        out.push_str(&format!("  database: {p}\n"));
    }
    for (handle, reason) in &report.secrets {
        out.push_str(&format!("  secret {handle}: {reason}\n"));
    }
    for p in &report.audit {
        out.push_str(&format!("  audit: {p}\n"));
    }
    out
}

/// Held locks (for a `rota runs` diagnostic).
pub fn locks(locks: &[LockHolder]) -> String {
    if locks.is_empty() {
        return "no locks held\n".to_owned();
    }
    let rows: Vec<Vec<String>> = locks
        .iter()
        .map(|l| {
            vec![
                l.name.clone(),
                l.run_id.clone(),
                format!("{}@{}", l.pid, l.host),
                l.acquired_at.clone(),
            ]
        })
        .collect();
    table(&["LOCK", "RUN", "PROCESS", "SINCE"], &rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns() {
        let t = table(&["A", "BB"], &[vec!["long".to_owned(), "x".to_owned()]]);
        assert_eq!(t, "A     BB\nlong  x\n");
    }
}
