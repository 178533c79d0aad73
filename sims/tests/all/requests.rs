//! The request log: what each simulator served, in one order across
//! systems, without credentials or secret values.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::plex::Portal;
use crate::{TestResult, admin_get, get, http, start};
use rota_sims::{FaultKind, FaultRule, FaultSettings, System};

#[tokio::test]
async fn the_log_lists_every_vendor_call_in_order_across_systems_and_clears() -> TestResult {
    let sims = start().await?;
    let portal = Portal::of(&sims).await?;
    let app = portal.demandcaster_app().await?;
    let (st, created) = portal
        .post(
            &format!("/platform/v1/client-applications/{app}/secrets"),
            json!({"validDays": 30}),
        )
        .await?;
    assert_eq!(st, StatusCode::CREATED);
    let dc = get(&sims, System::DemandCaster);
    let r = http()
        .get(format!("{}/api/business-nodes", dc.origin()))
        .send()
        .await?;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    let plex = admin_get(get(&sims, System::Plex), "/admin/requests").await?;
    assert_eq!(plex["system"], "plex");
    let entries = plex["requests"].as_array().cloned().unwrap_or_default();
    assert_eq!(entries.len(), 2, "{plex}");
    assert_eq!(entries[0]["method"], "GET");
    assert_eq!(entries[0]["path"], "/platform/v1/client-applications");
    assert_eq!(entries[0]["query"], json!([["customerId", "123456"]]));
    assert_eq!(entries[0]["body"], Value::Null);
    assert_eq!(entries[0]["status"], 200);
    assert_eq!(entries[1]["method"], "POST");
    assert_eq!(entries[1]["status"], 201);
    assert!(
        entries[1]["body"]
            .as_str()
            .is_some_and(|d| d.starts_with("sha256:")),
        "{plex}"
    );
    let dc_log = admin_get(dc, "/admin/requests").await?;
    let dc_entries = dc_log["requests"].as_array().cloned().unwrap_or_default();
    assert_eq!(dc_entries.len(), 1, "{dc_log}");
    assert_eq!(dc_entries[0]["status"], 401);
    let seq = |v: &Value| v["seq"].as_u64().unwrap_or(u64::MAX);
    assert!(seq(&entries[0]) < seq(&entries[1]) && seq(&entries[1]) < seq(&dc_entries[0]));

    // Neither the portal key (a header) nor the value shown once is logged.
    let text = format!("{plex}{dc_log}");
    assert!(!text.contains(&portal.key));
    let shown = created["secret"].as_str().unwrap_or("missing");
    assert!(!text.contains(shown));

    // The admin API itself is not logged; reset keeps the log, DELETE clears it.
    let h = get(&sims, System::Plex);
    http()
        .post(format!("{}/admin/reset", h.admin_origin()))
        .send()
        .await?;
    assert_eq!(h.requests().len(), 2);
    let r = http()
        .delete(format!("{}/admin/requests", h.admin_origin()))
        .send()
        .await?;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert!(h.requests().is_empty());
    assert_eq!(dc.requests().len(), 1, "clearing one system leaves the others");
    sims.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn faulted_requests_are_logged_with_what_was_answered() -> TestResult {
    let sims = start().await?;
    let c = get(&sims, System::Constellix);
    c.set_faults(FaultSettings {
        seed: 1,
        rules: vec![FaultRule::new(
            Some("GET"),
            "/v4/domains",
            1.0,
            FaultKind::Status { status: 503 },
        )],
    });
    let r = http().get(format!("{}/v4/domains", c.origin())).send().await?;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let log = c.requests();
    assert_eq!(log.len(), 1);
    assert_eq!(
        (log[0].method.as_str(), log[0].path.as_str(), log[0].status),
        ("GET", "/v4/domains", 503)
    );
    sims.shutdown().await;
    Ok(())
}
