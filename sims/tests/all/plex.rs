//! Plex: the client-secret reset of seed 000, and its rules.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::{TestResult, admin_get, admin_post, get, http, s, start};
use rota_sims::System;

pub(crate) struct Portal {
    pub(crate) origin: String,
    pub(crate) key: String,
}

impl Portal {
    pub(crate) async fn of(sims: &rota_sims::Sims) -> anyhow::Result<Portal> {
        let h = get(sims, System::Plex);
        let op = admin_get(h, "/admin/operator").await?;
        Ok(Portal {
            origin: h.origin().to_owned(),
            key: s(&op, "/portalKeys/0/consumerKey")?,
        })
    }

    pub(crate) async fn get(&self, path: &str) -> anyhow::Result<(StatusCode, Value)> {
        let r = http()
            .get(format!("{}{path}", self.origin))
            .header("X-Plex-Connect-Api-Key", &self.key)
            .send()
            .await?;
        let st = r.status();
        Ok((st, r.json().await.unwrap_or(Value::Null)))
    }

    pub(crate) async fn post(&self, path: &str, body: Value) -> anyhow::Result<(StatusCode, Value)> {
        let r = http()
            .post(format!("{}{path}", self.origin))
            .header("X-Plex-Connect-Api-Key", &self.key)
            .json(&body)
            .send()
            .await?;
        let st = r.status();
        Ok((st, r.json().await.unwrap_or(Value::Null)))
    }

    pub(crate) async fn delete(&self, path: &str) -> anyhow::Result<StatusCode> {
        Ok(http()
            .delete(format!("{}{path}", self.origin))
            .header("X-Plex-Connect-Api-Key", &self.key)
            .send()
            .await?
            .status())
    }

    /// The DemandCaster app's client id for PCN 123456.
    pub(crate) async fn demandcaster_app(&self) -> anyhow::Result<String> {
        let (st, apps) = self
            .get("/platform/v1/client-applications?customerId=123456")
            .await?;
        anyhow::ensure!(st == StatusCode::OK, "list apps: {st}");
        let app = apps
            .as_array()
            .and_then(|a| a.iter().find(|a| a["name"] == "DemandCaster"))
            .ok_or_else(|| anyhow::anyhow!("no DemandCaster app in {apps}"))?;
        s(app, "/clientId")
    }

    pub(crate) async fn token(&self, client_id: &str, secret: &str) -> anyhow::Result<(StatusCode, Value)> {
        let r = http()
            .post(format!("{}/oauth2/token", self.origin))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", client_id),
                ("client_secret", secret),
            ])
            .send()
            .await?;
        let st = r.status();
        Ok((st, r.json().await?))
    }
}

fn parse_plex_date(v: &Value) -> anyhow::Result<time::OffsetDateTime> {
    let txt = v.as_str().ok_or_else(|| anyhow::anyhow!("not a date: {v}"))?;
    // YYYY-MM-DDThh:mm:ss.fffffffZ, as the Plex Connect docs give it.
    anyhow::ensure!(
        txt.len() == 28 && txt.as_bytes().get(19) == Some(&b'.'),
        "not a Plex date: {txt}"
    );
    Ok(time::OffsetDateTime::parse(
        txt,
        &time::format_description::well_known::Rfc3339,
    )?)
}

#[tokio::test]
async fn plex_seed_procedure_happy_path() -> TestResult {
    let sims = start().await?;
    let p = Portal::of(&sims).await?;
    let app = p.demandcaster_app().await?;
    let (st, secrets) = p
        .get(&format!("/platform/v1/client-applications/{app}/secrets"))
        .await?;
    assert_eq!(st, StatusCode::OK);
    let secrets = secrets.as_array().cloned().unwrap_or_default();
    assert_eq!(secrets.len(), 2, "fixture: one expired and one valid secret");
    let now = time::OffsetDateTime::now_utc();
    let expired: Vec<&Value> = secrets
        .iter()
        .filter(|x| parse_plex_date(&x["validUntil"]).is_ok_and(|t| t < now))
        .collect();
    assert_eq!(expired.len(), 1);
    let expired_id = s(expired[0], "/id")?;
    let until = parse_plex_date(&expired[0]["validUntil"])?;
    assert!(
        now - until > time::Duration::days(29) && now - until < time::Duration::days(32),
        "expired a month ago"
    );

    // Delete the expired secret by its ID, then add a new one.
    assert_eq!(
        p.delete(&format!(
            "/platform/v1/client-applications/{app}/secrets/{expired_id}"
        ))
        .await?,
        StatusCode::NO_CONTENT
    );
    let (st, created) = p
        .post(
            &format!("/platform/v1/client-applications/{app}/secrets"),
            json!({}),
        )
        .await?;
    assert_eq!(st, StatusCode::CREATED);
    let secret = s(&created, "/secret")?;
    parse_plex_date(&created["validUntil"])?;
    let (_, after) = p
        .get(&format!("/platform/v1/client-applications/{app}/secrets"))
        .await?;
    let ids: Vec<String> = after
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|x| x["id"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(ids.len(), 2);
    assert!(!ids.contains(&expired_id));
    assert!(ids.contains(&s(&created, "/id")?));

    // The new secret authenticates: token, then a Connect resource.
    let (st, tok) = p.token(&app, &secret).await?;
    assert_eq!(st, StatusCode::OK, "{tok}");
    assert_eq!(tok["token_type"], "Bearer");
    let parts = http()
        .get(format!("{}/mdm/v1/parts", p.origin))
        .bearer_auth(s(&tok, "/access_token")?)
        .header("X-Plex-Connect-Customer-Id", "123456")
        .send()
        .await?;
    assert_eq!(parts.status(), StatusCode::OK);
    assert!(
        parts
            .json::<Value>()
            .await?
            .as_array()
            .is_some_and(|a| !a.is_empty())
    );
    sims.shutdown().await;
    Ok(())
}

/// Guards seed rule: a new secret's value appears only in the create response.
#[tokio::test]
async fn plex_new_secret_value_is_returned_only_by_the_create_call() -> TestResult {
    let sims = start().await?;
    let p = Portal::of(&sims).await?;
    let app = p.demandcaster_app().await?;
    let (_, created) = p
        .post(
            &format!("/platform/v1/client-applications/{app}/secrets"),
            json!({"validDays": 30}),
        )
        .await?;
    let secret = s(&created, "/secret")?;
    let (_, list) = p
        .get(&format!("/platform/v1/client-applications/{app}/secrets"))
        .await?;
    assert!(!list.to_string().contains(&secret));
    assert!(
        list.as_array()
            .into_iter()
            .flatten()
            .all(|x| x.get("secret").is_none())
    );
    let (_, apps) = p.get("/platform/v1/client-applications").await?;
    assert!(!apps.to_string().contains(&secret));
    let state = get(&sims, System::Plex).state().to_string();
    assert!(
        !state.contains(&secret),
        "admin state must show fingerprints only"
    );
    assert!(state.contains("sha256:"));
    sims.shutdown().await;
    Ok(())
}

/// Guards seed rule: a secret past validUntil no longer authenticates.
#[tokio::test]
async fn plex_expired_secret_no_longer_authenticates() -> TestResult {
    let sims = start().await?;
    let h = get(&sims, System::Plex);
    let p = Portal::of(&sims).await?;
    let app = p.demandcaster_app().await?;
    // The operator's Add in the portal UI, valid one day.
    let created = admin_post(
        h,
        &format!("/admin/ui/client-applications/{app}/secrets"),
        json!({"validDays": 1}),
    )
    .await?;
    let secret = s(&created, "/secret")?;
    assert_eq!(p.token(&app, &secret).await?.0, StatusCode::OK);
    let headers_auth = || {
        http()
            .get(format!("{}/mdm/v1/parts", p.origin))
            .header("X-Plex-Connect-Api-Key", app.clone())
            .header("X-Plex-Connect-Api-Secret", secret.clone())
            .send()
    };
    assert_eq!(headers_auth().await?.status(), StatusCode::OK);

    h.set_clock_offset_secs(2 * 86_400);
    let (st, body) = p.token(&app, &secret).await?;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    assert_eq!(body["code"], "REQUEST_NOT_AUTHENTICATED");
    let r = headers_auth().await?;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        r.json::<Value>().await?,
        json!({"code": "REQUEST_NOT_AUTHENTICATED", "message": "The request could not be authenticated."})
    );
    sims.shutdown().await;
    Ok(())
}

/// Guards the seed's warning: deletion is by secret ID, and an unknown ID deletes nothing.
#[tokio::test]
async fn plex_delete_of_unknown_secret_id_is_404_and_deletes_nothing() -> TestResult {
    let sims = start().await?;
    let p = Portal::of(&sims).await?;
    let app = p.demandcaster_app().await?;
    let r = http()
        .delete(format!(
            "{}/platform/v1/client-applications/{app}/secrets/00000000-0000-4000-8000-000000000000",
            p.origin
        ))
        .header("X-Plex-Connect-Api-Key", &p.key)
        .send()
        .await?;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(r.json::<Value>().await?["code"], "RESOURCE_NOT_FOUND");
    let (_, list) = p
        .get(&format!("/platform/v1/client-applications/{app}/secrets"))
        .await?;
    assert_eq!(list.as_array().map(Vec::len), Some(2));
    sims.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn plex_management_api_requires_the_connect_api_key_header() -> TestResult {
    let sims = start().await?;
    let h = get(&sims, System::Plex);
    let r = http()
        .get(format!("{}/platform/v1/client-applications", h.origin()))
        .send()
        .await?;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(r.json::<Value>().await?["code"], "REQUEST_NOT_AUTHENTICATED");
    sims.shutdown().await;
    Ok(())
}

/// Guards Plex's tenant headers: an app reaches only its own customer's tenant.
#[tokio::test]
async fn plex_tenant_headers_limit_an_app_to_its_customer() -> TestResult {
    let sims = start().await?;
    let h = get(&sims, System::Plex);
    let p = Portal::of(&sims).await?;
    let app = p.demandcaster_app().await?;
    let created = admin_post(
        h,
        &format!("/admin/ui/client-applications/{app}/secrets"),
        json!({}),
    )
    .await?;
    let secret = s(&created, "/secret")?;
    let op = admin_get(h, "/admin/operator").await?;
    let tenant_of = |pcn: &str| {
        op["customers"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["customerId"] == pcn))
            .map(|c| c["tenantId"].clone())
    };
    let call = |header: &'static str, value: String| {
        http()
            .get(format!("{}/mdm/v1/parts", h.origin()))
            .header("X-Plex-Connect-Api-Key", app.clone())
            .header("X-Plex-Connect-Api-Secret", secret.clone())
            .header(header, value)
            .send()
    };
    let own = tenant_of("123456")
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    let other = tenant_of("234567")
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    assert_eq!(
        call("X-Plex-Connect-Tenant-Id", own).await?.status(),
        StatusCode::OK
    );
    assert_eq!(
        call("X-Plex-Connect-Tenant-Id", other).await?.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        call("X-Plex-Connect-Customer-Id", "234567".into())
            .await?
            .status(),
        StatusCode::UNAUTHORIZED
    );
    sims.shutdown().await;
    Ok(())
}

/// A Connect collection filtered by a field: the cheap read a credential
/// check makes instead of downloading the whole (unpaginated) collection.
#[tokio::test]
async fn plex_parts_filter_by_number() -> TestResult {
    let sims = start().await?;
    let p = Portal::of(&sims).await?;
    let app = p.demandcaster_app().await?;
    let created = admin_post(
        get(&sims, System::Plex),
        &format!("/admin/ui/client-applications/{app}/secrets"),
        json!({}),
    )
    .await?;
    let secret = s(&created, "/secret")?;
    let read = |number: &'static str| {
        http()
            .get(format!("{}/mdm/v1/parts?number={number}", p.origin))
            .header("X-Plex-Connect-Api-Key", app.clone())
            .header("X-Plex-Connect-Api-Secret", secret.clone())
            .header("X-Plex-Connect-Customer-Id", "123456")
            .send()
    };
    let none: Value = read("no-such-part").await?.json().await?;
    assert_eq!(none, json!([]));
    let one: Value = read("AC-1007").await?.json().await?;
    assert_eq!(one.as_array().map(Vec::len), Some(1), "{one}");
    assert_eq!(one[0]["number"], "AC-1007");
    sims.shutdown().await;
    Ok(())
}

/// The guided path's stand-ins read the screens the operator reads and
/// click what the seed says: find the app, read the grid, delete a row.
#[tokio::test]
async fn plex_ui_screens_show_what_the_operator_reads() -> TestResult {
    let sims = start().await?;
    let h = get(&sims, System::Plex);
    let app = admin_get(
        h,
        "/admin/ui/client-applications?customerId=123456&name=DemandCaster",
    )
    .await?;
    let client_id = s(&app, "/clientId")?;
    assert_eq!(client_id, Portal::of(&sims).await?.demandcaster_app().await?);
    assert_eq!(app["secretCount"], 2);
    let grid = admin_get(h, &format!("/admin/ui/client-applications/{client_id}/secrets")).await?;
    let rows = grid["rows"].as_array().cloned().unwrap_or_default();
    assert_eq!(rows.len(), 2, "{grid}");
    let expired = s(&grid, "/expiredId")?;
    assert_eq!(
        rows[0]["id"],
        expired.as_str(),
        "the older secret is the expired one"
    );
    assert_eq!(rows[0]["expired"], true);
    assert_eq!(s(&grid, "/nextToExpireId")?, s(&rows[1], "/id")?);
    assert_eq!(
        grid["nextToExpireDaysLeft"], 13,
        "valid 14 more days, rounded down: {grid}"
    );
    assert_eq!(s(&grid, "/expiredValidUntil")?, s(&rows[0], "/validUntil")?);

    let r = http()
        .delete(format!(
            "{}/admin/ui/client-applications/{client_id}/secrets/{expired}",
            h.admin_origin()
        ))
        .send()
        .await?;
    assert_eq!(r.status(), StatusCode::OK);
    let grid = admin_get(h, &format!("/admin/ui/client-applications/{client_id}/secrets")).await?;
    assert_eq!(grid["expiredId"], "none");
    assert_eq!(grid["expiredCreated"], "-");
    assert_eq!(grid["rows"].as_array().map(Vec::len), Some(1));
    let again = http()
        .delete(format!(
            "{}/admin/ui/client-applications/{client_id}/secrets/{expired}",
            h.admin_origin()
        ))
        .send()
        .await?;
    assert_eq!(again.status(), StatusCode::NOT_FOUND);
    sims.shutdown().await;
    Ok(())
}

/// Regression: the portal consumer key authenticates on its own (it is the
/// `X-Plex-Connect-Api-Key`), so admin state shows its fingerprint, never
/// the key; only the operator view hands it out.
#[tokio::test]
async fn plex_admin_state_shows_the_portal_key_as_a_fingerprint() -> TestResult {
    let sims = start().await?;
    let h = get(&sims, System::Plex);
    let key = Portal::of(&sims).await?.key;
    let state = h.state();
    assert!(!state.to_string().contains(&key), "{state}");
    assert!(
        state["state"]["portalKeys"][0]["consumerKeyFingerprint"]
            .as_str()
            .is_some_and(|f| f.starts_with("sha256:"))
    );
    sims.shutdown().await;
    Ok(())
}
