//! The credential inventory: every vendor credential rota created or saw.
//!
//! Design decision: a credential is identified by (vendor, account, key ID),
//! the vendor's own names; recording is an upsert, so plugins and core
//! actions can report what they see on every run. A field recorded as
//! `None` keeps what was known. `due` compares expiry in Rust against an
//! injected "now", so schedulers and tests get the same answer.

use rusqlite::params;
use serde::{Deserialize, Serialize};
use serde_json::json;
use time::{Duration, OffsetDateTime};

use crate::audit::{self, AuditEvent};
use crate::db::{self, fmt_time, now, parse_time};
use crate::{State, StateError};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CredentialStatus {
    /// In use (or usable) by its consumers.
    Active,
    /// Created by a rotation not yet promoted.
    Pending,
    /// Revoked or deleted at the vendor.
    Revoked,
    /// Past its expiry, as reported by the vendor.
    Expired,
}

impl CredentialStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CredentialStatus::Active => "active",
            CredentialStatus::Pending => "pending",
            CredentialStatus::Revoked => "revoked",
            CredentialStatus::Expired => "expired",
        }
    }

    fn parse(s: &str) -> Result<Self, StateError> {
        Ok(match s {
            "active" => CredentialStatus::Active,
            "pending" => CredentialStatus::Pending,
            "revoked" => CredentialStatus::Revoked,
            "expired" => CredentialStatus::Expired,
            other => {
                return Err(StateError::Invalid(format!(
                    "unknown credential status {other:?}"
                )));
            }
        })
    }
}

impl std::str::FromStr for CredentialStatus {
    type Err = StateError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// What a plugin or core action reports (`record`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CredentialReport {
    pub vendor: String,
    pub account: String,
    pub key_id: String,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub created: Option<OffsetDateTime>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub expires: Option<OffsetDateTime>,
    /// Who uses it (service names, CI jobs, ...); `None` (absent) keeps
    /// what an earlier report said, so a plain listing of keys never
    /// forgets who holds them.
    #[serde(default)]
    pub consumers: Option<Vec<String>>,
    pub status: CredentialStatus,
    /// The secret name holding its value, if rota stores it.
    #[serde(default)]
    pub secret: Option<String>,
}

/// One row of `rota inventory` (`--output json` serializes these).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Credential {
    pub vendor: String,
    pub account: String,
    pub key_id: String,
    #[serde(with = "time::serde::rfc3339::option")]
    pub created: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires: Option<OffsetDateTime>,
    pub consumers: Vec<String>,
    pub status: CredentialStatus,
    pub secret: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub first_seen: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub last_seen: OffsetDateTime,
}

impl Credential {
    /// Whole days until expiry (negative when past), if it expires.
    pub fn days_left(&self, now: OffsetDateTime) -> Option<i64> {
        self.expires.map(|e| (e - now).whole_days())
    }
}

/// Parses `30d`, `12h`, `2w`, `90m`, `45s` (as `rota inventory --due` takes).
pub fn parse_due(text: &str) -> Result<Duration, StateError> {
    let text = text.trim();
    let bad = || StateError::Invalid(format!("{text:?} is not a duration; use e.g. 30d, 12h, 2w"));
    let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (n, unit) = text.split_at(split);
    let n: i64 = n.parse().map_err(|_| bad())?;
    Ok(match unit {
        "s" => Duration::seconds(n),
        "m" => Duration::minutes(n),
        "h" => Duration::hours(n),
        "d" => Duration::days(n),
        "w" => Duration::weeks(n),
        _ => return Err(bad()),
    })
}

impl State {
    /// Records (inserts or updates) a credential. Audited as `inventory.record`.
    pub fn inventory_record(&self, report: &CredentialReport) -> Result<(), StateError> {
        self.inventory_record_all(std::slice::from_ref(report))
    }

    /// [`State::inventory_record`] for several credentials, in one
    /// transaction: all recorded, or none.
    pub fn inventory_record_all(&self, reports: &[CredentialReport]) -> Result<(), StateError> {
        let at = fmt_time(now());
        // Rebuilt from the vendor by the next run if an OS crash loses it;
        // the run's synced end makes it durable.
        self.db.write_with(crate::db::Durability::Ordered, |tx| {
            reports
                .iter()
                .try_for_each(|report| self.record_one(tx, report, &at))
        })
    }

    fn record_one(
        &self,
        tx: &rusqlite::Connection,
        report: &CredentialReport,
        at: &str,
    ) -> Result<(), StateError> {
        db::exec(
            tx,
            "INSERT INTO inventory (vendor, account, key_id, created_at, expires_at, consumers, status,
                                        secret, first_seen, last_seen)
                 VALUES (?1, ?2, ?3, ?4, ?5, COALESCE(?6, '[]'), ?7, ?8, ?9, ?9)
                 ON CONFLICT(vendor, account, key_id) DO UPDATE SET
                   created_at = COALESCE(excluded.created_at, created_at),
                   expires_at = COALESCE(excluded.expires_at, expires_at),
                   consumers = COALESCE(?6, consumers),
                   status = excluded.status,
                   secret = COALESCE(excluded.secret, secret),
                   last_seen = excluded.last_seen",
            params![
                report.vendor,
                report.account,
                report.key_id,
                report.created.map(fmt_time),
                report.expires.map(fmt_time),
                report.consumers.as_ref().map(serde_json::to_string).transpose()?,
                report.status.as_str(),
                report.secret,
                at
            ],
        )?;
        audit::append(
            self,
            tx,
            &AuditEvent::new("inventory.record")
                .key_id(Some(&report.key_id))
                .detail(json!({
                    "vendor": report.vendor,
                    "account": report.account,
                    "status": report.status,
                })),
        )?;
        Ok(())
    }

    /// Every credential, by vendor, account, key ID.
    pub fn inventory_list(&self) -> Result<Vec<Credential>, StateError> {
        self.db.with(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT vendor, account, key_id, created_at, expires_at, consumers, status, secret,
                        first_seen, last_seen FROM inventory ORDER BY vendor, account, key_id",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, Option<String>>(3)?,
                    r.get::<_, Option<String>>(4)?,
                    r.get::<_, String>(5)?,
                    r.get::<_, String>(6)?,
                    r.get::<_, Option<String>>(7)?,
                    r.get::<_, String>(8)?,
                    r.get::<_, String>(9)?,
                ))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (vendor, account, key_id, created, expires, consumers, status, secret, first, last) =
                    row?;
                out.push(Credential {
                    vendor,
                    account,
                    key_id,
                    created: created.as_deref().map(parse_time).transpose()?,
                    expires: expires.as_deref().map(parse_time).transpose()?,
                    consumers: serde_json::from_str(&consumers)?,
                    status: CredentialStatus::parse(&status)?,
                    secret,
                    first_seen: parse_time(&first)?,
                    last_seen: parse_time(&last)?,
                });
            }
            Ok(out)
        })
    }

    /// Live credentials (not revoked) expiring within `within` of now, or
    /// already expired, soonest first.
    pub fn inventory_due(&self, within: Duration) -> Result<Vec<Credential>, StateError> {
        self.inventory_due_at(now(), within)
    }

    /// [`State::inventory_due`] against an explicit "now".
    pub fn inventory_due_at(
        &self,
        now: OffsetDateTime,
        within: Duration,
    ) -> Result<Vec<Credential>, StateError> {
        let limit = now + within;
        let mut due: Vec<Credential> = self
            .inventory_list()?
            .into_iter()
            .filter(|c| c.status != CredentialStatus::Revoked && c.expires.is_some_and(|e| e <= limit))
            .collect();
        due.sort_by_key(|c| c.expires);
        Ok(due)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() -> Result<(), StateError> {
        assert_eq!(parse_due("30d")?, Duration::days(30));
        assert_eq!(parse_due("12h")?, Duration::hours(12));
        assert_eq!(parse_due("2w")?, Duration::weeks(2));
        assert!(parse_due("30").is_err());
        assert!(parse_due("d").is_err());
        assert!(parse_due("3y").is_err());
        Ok(())
    }
}
