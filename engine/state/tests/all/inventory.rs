//! The credential inventory and `--due`.

use rota_state::{CredentialReport, CredentialStatus, parse_due};
use time::{Duration, OffsetDateTime, macros::datetime};

use crate::common::{T, TestResult};

fn report(key_id: &str, expires: Option<OffsetDateTime>, status: CredentialStatus) -> CredentialReport {
    CredentialReport {
        vendor: "plex".into(),
        account: "acme".into(),
        key_id: key_id.into(),
        created: Some(datetime!(2026-01-01 00:00 UTC)),
        expires,
        consumers: Some(vec!["demandcaster".into()]),
        status,
        secret: Some("plex/acme/client-secret".into()),
    }
}

#[test]
fn recording_upserts_and_due_lists_what_expires_soon() -> TestResult {
    let t = T::new();
    let s = &t.state;
    let now = datetime!(2026-11-23 12:00 UTC);
    s.inventory_record(&report(
        "k-soon",
        Some(now + Duration::days(10)),
        CredentialStatus::Active,
    ))?;
    s.inventory_record(&report(
        "k-later",
        Some(now + Duration::days(90)),
        CredentialStatus::Active,
    ))?;
    s.inventory_record(&report(
        "k-past",
        Some(now - Duration::days(1)),
        CredentialStatus::Active,
    ))?;
    s.inventory_record(&report(
        "k-revoked",
        Some(now + Duration::days(1)),
        CredentialStatus::Revoked,
    ))?;
    s.inventory_record(&report("k-never", None, CredentialStatus::Active))?;
    // Upsert: a later sighting with no expiry keeps the known one and updates the rest.
    let mut again = report("k-soon", None, CredentialStatus::Pending);
    again.consumers = Some(vec!["demandcaster".into(), "ci".into()]);
    s.inventory_record(&again)?;

    let all = s.inventory_list()?;
    assert_eq!(all.len(), 5);
    let soon = all.iter().find(|c| c.key_id == "k-soon").expect("k-soon");
    assert_eq!(soon.expires, Some(now + Duration::days(10)));
    assert_eq!(soon.status, CredentialStatus::Pending);
    assert_eq!(soon.consumers, ["demandcaster", "ci"]);
    assert!(soon.last_seen >= soon.first_seen);

    let due = s.inventory_due_at(now, parse_due("30d")?)?;
    let ids: Vec<&str> = due.iter().map(|c| c.key_id.as_str()).collect();
    assert_eq!(ids, ["k-past", "k-soon"]);
    assert_eq!(due[1].days_left(now), Some(10));

    let json = serde_json::to_value(&due)?;
    assert_eq!(json[1]["vendor"], "plex");
    assert_eq!(json[1]["key_id"], "k-soon");
    assert_eq!(json[1]["status"], "pending");
    assert_eq!(json[1]["expires"], "2026-12-03T12:00:00Z");
    assert_eq!(json[1]["consumers"], serde_json::json!(["demandcaster", "ci"]));

    let text = rota_state::render::inventory(&due, now);
    assert!(text.starts_with("VENDOR  ACCOUNT  KEY ID"), "{text}");
    assert!(
        text.contains("k-soon  pending  2026-12-03T12:00:00Z  10"),
        "{text}"
    );
    assert!(
        s.audit_entries()?
            .iter()
            .any(|e| e.action == "inventory.record" && e.key_id.as_deref() == Some("k-soon"))
    );
    Ok(())
}

#[test]
fn a_report_parses_from_plugin_json() -> TestResult {
    let r: CredentialReport = serde_json::from_value(serde_json::json!({
        "vendor": "constellix", "account": "main", "key_id": "ak-1",
        "expires": "2027-01-01T00:00:00Z", "status": "active"
    }))?;
    assert_eq!(r.expires, Some(datetime!(2027-01-01 00:00 UTC)));
    assert!(r.consumers.is_none() && r.created.is_none());
    Ok(())
}

/// Regression: a report without consumers (a plain listing of keys) keeps
/// the consumers an earlier report recorded.
#[test]
fn a_report_without_consumers_keeps_the_recorded_ones() -> TestResult {
    let t = T::new();
    let s = &t.state;
    s.inventory_record(&report("k1", None, CredentialStatus::Active))?;
    let mut listed = report("k1", None, CredentialStatus::Active);
    listed.consumers = None;
    s.inventory_record(&listed)?;
    let all = s.inventory_list()?;
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].consumers, vec!["demandcaster".to_owned()]);
    let mut cleared = report("k1", None, CredentialStatus::Revoked);
    cleared.consumers = Some(Vec::new());
    s.inventory_record(&cleared)?;
    assert!(
        s.inventory_list()?[0].consumers.is_empty(),
        "an explicit empty list clears them"
    );
    Ok(())
}
