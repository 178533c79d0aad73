//! The consumer service: downtime when a credential is revoked under it,
//! none when it is switched first (the rollovers of seeds 001 and 003).

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::constellix::{Key, call, keys_of};
use crate::plytix::Plytix;
use crate::{TestResult, admin_post, get, http, s, start, u};
use rota_sims::System;

fn consumer<'a>(state: &'a Value, id: &str) -> anyhow::Result<&'a Value> {
    state["state"]["consumers"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["id"] == id))
        .ok_or_else(|| anyhow::anyhow!("no consumer {id}"))
}

fn failed(sims: &rota_sims::Sims, id: &str) -> anyhow::Result<u64> {
    u(
        consumer(&get(sims, System::Consumers).state(), id)?,
        "/failedCalls",
    )
}

/// The id of the fixture Plytix key the ERP consumer holds.
async fn erp_key_id(p: &Plytix, admin: &str) -> anyhow::Result<String> {
    let (_, keys) = p
        .call(reqwest::Method::GET, "/accounts/v1/api-keys", admin, None)
        .await?;
    let k = keys["data"]
        .as_array()
        .and_then(|a| a.iter().find(|k| k["name"] == "ERP integration"))
        .ok_or_else(|| anyhow::anyhow!("no ERP key"))?;
    s(k, "/id")
}

#[tokio::test]
async fn consumer_records_downtime_when_its_plytix_key_is_revoked() -> TestResult {
    let sims = start().await?;
    let c = get(&sims, System::Consumers);
    let p = Plytix::of(&sims).await?;
    let admin = p.operator_token().await?;
    admin_post(c, "/admin/tick", json!({})).await?;
    assert_eq!(failed(&sims, "plytix-erp-sync")?, 0);
    let id = erp_key_id(&p, &admin).await?;
    p.call(
        reqwest::Method::DELETE,
        &format!("/accounts/v1/api-keys/{id}"),
        &admin,
        None,
    )
    .await?;
    let tick = admin_post(c, "/admin/consumers/plytix-erp-sync/tick", json!({})).await?;
    assert_eq!(tick["ok"], false);
    assert_eq!(tick["status"], 401);
    assert_eq!(failed(&sims, "plytix-erp-sync")?, 1);
    sims.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn consumer_records_no_downtime_when_switched_before_plytix_revocation() -> TestResult {
    let sims = start().await?;
    let c = get(&sims, System::Consumers);
    let p = Plytix::of(&sims).await?;
    let admin = p.operator_token().await?;
    let old = erp_key_id(&p, &admin).await?;
    let editor = p.role_id(&admin, "Editor").await?;
    let (_, created) = p
        .call(
            reqwest::Method::POST,
            "/accounts/v1/api-keys",
            &admin,
            Some(json!({"name": "ERP integration 2", "role_id": editor})),
        )
        .await?;
    // Switch the consumer through its modeled endpoint, verify, then revoke the old key.
    let r = http()
        .put(format!("{}/v1/consumers/plytix-erp-sync/credential", c.origin()))
        .json(&json!({"api_key": s(&created, "/data/0/api_key")?, "api_password": s(&created, "/data/0/api_password")?}))
        .send()
        .await?;
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await?;
    assert_eq!(body["credential"]["api_key"], created["data"][0]["api_key"]);
    assert!(!body.to_string().contains(&s(&created, "/data/0/api_password")?));
    let check = http()
        .post(format!("{}/v1/consumers/plytix-erp-sync/check", c.origin()))
        .send()
        .await?
        .json::<Value>()
        .await?;
    assert_eq!(check["ok"], true);
    p.call(
        reqwest::Method::DELETE,
        &format!("/accounts/v1/api-keys/{old}"),
        &admin,
        None,
    )
    .await?;
    for _ in 0..3 {
        c.tick().await;
    }
    assert_eq!(failed(&sims, "plytix-erp-sync")?, 0);
    assert_eq!(u(consumer(&c.state(), "plytix-erp-sync")?, "/calls")?, 4);
    sims.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn consumer_records_downtime_when_its_constellix_key_is_deleted() -> TestResult {
    let sims = start().await?;
    let c = get(&sims, System::Consumers);
    let origin = get(&sims, System::Constellix).origin().to_owned();
    let old = keys_of(&sims, "bob@acme-dns.example")
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| anyhow::anyhow!("key"))?;
    c.tick().await;
    assert_eq!(failed(&sims, "constellix-dns-sync")?, 0);
    let (_, created) = call(
        &origin,
        &old,
        reqwest::Method::POST,
        "/v4/users/me/apikeys",
        Some(json!({"expiresInMonths": 5})),
    )
    .await?;
    let new = Key {
        id: u(&created, "/data/id")?,
        api_key: s(&created, "/data/apiKey")?,
        secret_key: s(&created, "/data/secretKey")?,
    };
    // Delete the old key without switching the consumer first.
    call(
        &origin,
        &new,
        reqwest::Method::DELETE,
        &format!("/v4/users/me/apikeys/{}", old.id),
        None,
    )
    .await?;
    c.tick().await;
    assert_eq!(failed(&sims, "constellix-dns-sync")?, 1);
    sims.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn consumer_records_no_downtime_when_switched_before_constellix_deletion() -> TestResult {
    let sims = start().await?;
    let c = get(&sims, System::Consumers);
    let origin = get(&sims, System::Constellix).origin().to_owned();
    let old = keys_of(&sims, "bob@acme-dns.example")
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| anyhow::anyhow!("key"))?;
    let (_, created) = call(
        &origin,
        &old,
        reqwest::Method::POST,
        "/v4/users/me/apikeys",
        Some(json!({"expiresInMonths": 5})),
    )
    .await?;
    let new = Key {
        id: u(&created, "/data/id")?,
        api_key: s(&created, "/data/apiKey")?,
        secret_key: s(&created, "/data/secretKey")?,
    };
    c.tick().await;
    let r = http()
        .put(format!(
            "{}/v1/consumers/constellix-dns-sync/credential",
            c.origin()
        ))
        .json(&json!({"api_key": new.api_key, "secret_key": new.secret_key}))
        .send()
        .await?;
    assert_eq!(r.status(), StatusCode::OK);
    c.tick().await;
    call(
        &origin,
        &new,
        reqwest::Method::DELETE,
        &format!("/v4/users/me/apikeys/{}", old.id),
        None,
    )
    .await?;
    c.tick().await;
    assert_eq!(failed(&sims, "constellix-dns-sync")?, 0);
    sims.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn consumer_credential_update_rejects_the_wrong_vendor_shape() -> TestResult {
    let sims = start().await?;
    let c = get(&sims, System::Consumers);
    let r = http()
        .put(format!(
            "{}/v1/consumers/constellix-dns-sync/credential",
            c.origin()
        ))
        .json(&json!({"api_key": "x", "api_password": "y"}))
        .send()
        .await?;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    sims.shutdown().await;
    Ok(())
}

/// Guards: the consumer service is generic; a SOAR consumer added at run time
/// records downtime once its key's secret is regenerated under it.
#[tokio::test]
async fn consumer_added_at_run_time_holds_a_soar_key() -> TestResult {
    let sims = start().await?;
    let c = get(&sims, System::Consumers);
    let soar = get(&sims, System::Soar);
    let regen = admin_post(soar, "/admin/ui/api_keys/14/regenerate", json!({})).await?;
    let added = admin_post(
        c,
        "/admin/consumers",
        json!({"id": "soar-qradar", "origin": soar.origin(), "credential": {
            "vendor": "soar", "api_key_id": regen["api_key_id"], "api_key_secret": regen["api_key_secret"]}}),
    )
    .await?;
    assert_eq!(added["vendor"], "soar");
    let ok = admin_post(c, "/admin/consumers/soar-qradar/tick", json!({})).await?;
    assert_eq!(ok["ok"], true, "{ok}");
    admin_post(soar, "/admin/ui/api_keys/14/regenerate", json!({})).await?;
    let failed = admin_post(c, "/admin/consumers/soar-qradar/tick", json!({})).await?;
    assert_eq!(failed["status"], 401);
    assert_eq!(u(consumer(&c.state(), "soar-qradar")?, "/failedCalls")?, 1);
    sims.shutdown().await;
    Ok(())
}
