//! plex-api-key-reset: Plex client secret reset, pushed into DemandCaster.

use anyhow::{Context as _, bail};
use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::{Ctx, expect, int, text};

struct Row {
    id: String,
    valid_until: OffsetDateTime,
}

fn rows(grid: &Value) -> anyhow::Result<Vec<Row>> {
    grid.as_array()
        .context("the secrets grid is not a list")?
        .iter()
        .map(|r| {
            Ok(Row {
                id: r["id"].as_str().context("a secret without id")?.to_owned(),
                valid_until: OffsetDateTime::parse(
                    r["validUntil"].as_str().context("no validUntil")?,
                    &Rfc3339,
                )?,
            })
        })
        .collect()
}

/// The client-application API, with the operator's portal key.
struct Portal<'a> {
    http: &'a reqwest::Client,
    plex: &'a str,
    key: &'a str,
}

impl Portal<'_> {
    fn call(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.plex))
            .header("X-Plex-Connect-Api-Key", self.key)
            .header("accept", "application/json")
    }

    async fn grid(&self, client_id: &str, what: &str) -> anyhow::Result<Vec<Row>> {
        let path = format!("/platform/v1/client-applications/{client_id}/secrets");
        rows(&expect(self.call(reqwest::Method::GET, &path).send().await?, 200, what).await?)
    }

    /// Deletes only an ID the grid lists right now.
    async fn delete(&self, client_id: &str, id: &str, what: &str) -> anyhow::Result<()> {
        if !self.grid(client_id, what).await?.iter().any(|r| r.id == id) {
            bail!("{what}: the grid no longer lists {id}");
        }
        let path = format!("/platform/v1/client-applications/{client_id}/secrets/{id}");
        expect(self.call(reqwest::Method::DELETE, &path).send().await?, 204, what)
            .await
            .map(drop)
    }
}

pub async fn reset(ctx: &Ctx, inputs: &Map<String, Value>) -> anyhow::Result<()> {
    let plex = ctx.origin("plex")?;
    let dc = ctx.origin("demandcaster")?;
    let customer = text(inputs, "customer", None)?;
    let app_name = text(inputs, "client_app", Some("DemandCaster"))?;
    let key = ctx.secret(&text(inputs, "portal_key", None)?)?;
    let valid_days = int(inputs, "valid_days", Some(365))?;
    let retire_days = int(inputs, "retire_within_days", Some(30))?;
    let username = text(inputs, "dc_username", None)?;
    let password = ctx.secret(&text(inputs, "dc_password", None)?)?;
    let node = int(inputs, "business_node", None)?;
    let http = &ctx.http;
    let portal = Portal { http, plex, key };

    let apps = expect(
        portal
            .call(
                reqwest::Method::GET,
                &format!("/platform/v1/client-applications?customerId={customer}"),
            )
            .send()
            .await?,
        200,
        "listing client applications",
    )
    .await?;
    let client_id = apps
        .as_array()
        .into_iter()
        .flatten()
        .find(|a| a["name"] == app_name.as_str() && a["customerId"] == customer.as_str())
        .and_then(|a| a["clientId"].as_str())
        .with_context(|| format!("no client application {app_name}"))?
        .to_owned();
    let now = OffsetDateTime::now_utc();
    let current = portal.grid(&client_id, "reading the secrets grid").await?;
    let expired = current
        .iter()
        .filter(|r| r.valid_until <= now)
        .min_by_key(|r| r.valid_until)
        .map(|r| r.id.clone());
    let old = current
        .iter()
        .filter(|r| r.valid_until > now)
        .min_by_key(|r| r.valid_until)
        .filter(|r| r.valid_until - now <= time::Duration::days(retire_days))
        .map(|r| r.id.clone());

    if let Some(id) = expired {
        portal
            .delete(&client_id, &id, "deleting the expired secret")
            .await?;
    }

    // rota reads the grid before adding (what it reconciles with after a
    // crash): the same call here.
    portal.grid(&client_id, "reading the grid before adding").await?;
    let created = expect(
        portal
            .call(
                reqwest::Method::POST,
                &format!("/platform/v1/client-applications/{client_id}/secrets"),
            )
            .json(&json!({"validDays": valid_days}))
            .send()
            .await?,
        201,
        "adding a secret",
    )
    .await?;
    let secret = created["secret"].as_str().context("no secret in the answer")?;
    ctx.keep(&format!("plex/{customer}/demandcaster/client-secret"), secret)
        .await?;

    // The new secret signs in: token exchange, then a Plex Connect read.
    expect(
        http.post(format!("{plex}/oauth2/token"))
            .basic_auth(&client_id, Some(secret))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept", "application/json")
            .body("grant_type=client_credentials")
            .send()
            .await?,
        200,
        "token exchange",
    )
    .await?;
    expect(
        http.get(format!("{plex}/mdm/v1/parts?number=rota-connectivity-check"))
            .header("X-Plex-Connect-Api-Key", &client_id)
            .header("X-Plex-Connect-Api-Secret", secret)
            .header("X-Plex-Connect-Customer-Id", &customer)
            .header("accept", "application/json")
            .send()
            .await?,
        200,
        "reading Plex Connect with the new secret",
    )
    .await?;

    // DemandCaster, as rota's plugin does it: the two reads (find the node,
    // read the PCN connection) each in a session of their own, signed out
    // after; the changes in the session the enter step opened.
    let sign_in = || async {
        let login = http
            .post(format!("{dc}/api/session"))
            .header("accept", "application/json")
            .json(&json!({"username": username, "password": password}))
            .send()
            .await?;
        let cookie = login
            .headers()
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .context("DemandCaster set no session cookie")?
            .to_owned();
        expect(login, 200, "signing in to DemandCaster").await?;
        anyhow::Ok(cookie)
    };
    let with = |req: reqwest::RequestBuilder, cookie: &str| {
        req.header("cookie", cookie).header("accept", "application/json")
    };
    let sign_out = |cookie: String| async move {
        let r = with(http.delete(format!("{dc}/api/session")), &cookie)
            .send()
            .await?;
        if r.status().as_u16() != 204 {
            bail!("signing out of DemandCaster: {}", r.status());
        }
        anyhow::Ok(())
    };
    let enter = |cookie: String| async move {
        expect(
            with(
                http.post(format!("{dc}/api/business-nodes/{node}/enter")),
                &cookie,
            )
            .json(&json!({"confirm": true}))
            .send()
            .await?,
            200,
            "entering the business node",
        )
        .await
    };
    let reader = sign_in().await?;
    let nodes = expect(
        with(http.get(format!("{dc}/api/business-nodes")), &reader)
            .send()
            .await?,
        200,
        "listing business nodes",
    )
    .await?;
    sign_out(reader).await?;
    if !nodes.as_array().into_iter().flatten().any(|n| n["id"] == node) {
        bail!("no business node {node}");
    }
    let cookie = sign_in().await?;
    enter(cookie.clone()).await?;
    let session = |req: reqwest::RequestBuilder| with(req, &cookie);
    let pcn: &str = customer.as_str();
    let find_in = move |cookie: String| async move {
        let pcns = expect(
            with(http.get(format!("{dc}/api/datahub/plex/pcns")), &cookie)
                .send()
                .await?,
            200,
            "listing PCN connections",
        )
        .await?;
        pcns.as_array()
            .into_iter()
            .flatten()
            .find(|p| p["pcn"] == pcn)
            .and_then(|p| p["id"].as_u64())
            .with_context(|| format!("no PCN connection for {pcn}"))
    };
    let find = || find_in(cookie.clone());
    let reader = sign_in().await?;
    enter(reader.clone()).await?;
    find_in(reader.clone()).await?;
    sign_out(reader).await?;
    let id = find().await?;
    expect(
        session(http.put(format!("{dc}/api/datahub/plex/pcns/{id}")))
            .json(&json!({"clientId": client_id, "clientSecret": secret}))
            .send()
            .await?,
        200,
        "updating the PCN connection",
    )
    .await?;
    let id = find().await?;
    let tested = expect(
        session(http.post(format!("{dc}/api/datahub/plex/pcns/{id}/test")))
            .send()
            .await?,
        200,
        "testing the PCN connection",
    )
    .await?;
    if tested["ok"] != true {
        bail!("DemandCaster's connection test failed");
    }

    if let Some(id) = old {
        portal.delete(&client_id, &id, "deleting the old secret").await?;
    }
    Ok(())
}
