//! constellix-api-key-rollover: second-slot key rollover with the
//! integrations switched before the old key is deleted.

use anyhow::{Context as _, bail};
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{Map, Value, json};

use crate::{Ctx, expect, text};

/// `Bearer apiKey:base64(HMAC-SHA1(secretKey, ts_ms)):ts_ms`.
fn token(api_key: &str, secret_key: &str) -> anyhow::Result<String> {
    let ts = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(secret_key.as_bytes())?;
    mac.update(ts.to_string().as_bytes());
    let sig = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    Ok(format!("Bearer {api_key}:{sig}:{ts}"))
}

async fn signed(
    ctx: &Ctx,
    method: reqwest::Method,
    path: &str,
    key: (&str, &str),
    body: Option<Value>,
    status: u16,
    what: &str,
) -> anyhow::Result<Value> {
    let origin = ctx.origin("constellix")?;
    let mut req = ctx
        .http
        .request(method, format!("{origin}{path}"))
        .header("authorization", token(key.0, key.1)?)
        .header("accept", "application/json");
    if let Some(b) = body {
        req = req.json(&b);
    }
    expect(req.send().await?, status, what).await
}

fn id_of(v: &Value) -> Option<String> {
    match v {
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) => Some(s.clone()),
        _ => None,
    }
}

async fn keys(ctx: &Ctx, key: (&str, &str)) -> anyhow::Result<Vec<Value>> {
    let listed = signed(
        ctx,
        reqwest::Method::GET,
        "/v4/users/me/apikeys?page=1&perPage=100",
        key,
        None,
        200,
        "listing API keys",
    )
    .await?;
    Ok(listed["data"].as_array().cloned().unwrap_or_default())
}

pub async fn rollover(ctx: &Ctx, inputs: &Map<String, Value>) -> anyhow::Result<()> {
    let user = text(inputs, "user", None)?;
    let api_key = text(inputs, "api_key", None)?;
    let secret_name = text(
        inputs,
        "secret_key",
        Some(&format!("constellix/{user}/secret-key")),
    )?;
    let secret_key = ctx.secret(&secret_name)?.to_owned();
    let expiry = text(inputs, "expiry", Some("12"))?;
    let months: Value = if expiry == "never" {
        Value::Null
    } else {
        json!(expiry.parse::<u32>()?)
    };
    let admin = match inputs.get("admin_api_key").and_then(Value::as_str) {
        Some(k) => Some((
            k.to_owned(),
            ctx.secret(&text(inputs, "admin_secret_key", None)?)?.to_owned(),
        )),
        None => None,
    };
    let consumers = ctx.origin("consumers")?;
    let old = (api_key.as_str(), secret_key.as_str());

    let listed = keys(ctx, old).await?;
    let current = listed
        .iter()
        .find(|k| k["apiKey"] == api_key.as_str())
        .and_then(|k| id_of(&k["id"]))
        .context("the signed-in user does not list the key being replaced")?;
    if listed.len() >= 2 {
        bail!("{user} already holds two keys");
    }
    let users = ctx.consumers_holding("constellix", &api_key).await?;

    // rota lists the keys before generating (what it reconciles with
    // after a crash): the same call here.
    keys(ctx, old).await?;
    let created = signed(
        ctx,
        reqwest::Method::POST,
        "/v4/users/me/apikeys",
        old,
        Some(json!({"expiresInMonths": months})),
        201,
        "generating a key",
    )
    .await?;
    let data = &created["data"];
    let new_id = id_of(&data["id"]).context("no id for the new key")?;
    let new_api_key = data["apiKey"].as_str().context("no apiKey")?.to_owned();
    let new_secret = data["secretKey"].as_str().context("no secretKey")?.to_owned();
    ctx.keep(&secret_name, &new_secret).await?;
    let new = (new_api_key.as_str(), new_secret.as_str());

    let now = keys(ctx, old).await?;
    if now.len() != 2 || !now.iter().any(|k| id_of(&k["id"]).as_deref() == Some(&new_id)) {
        bail!("after generating, the profile does not list the old and the new key");
    }
    signed(
        ctx,
        reqwest::Method::GET,
        "/v4/domains?page=1&perPage=1",
        new,
        None,
        200,
        "verifying the new key",
    )
    .await?;
    for id in &users {
        expect(
            ctx.http
                .put(format!("{consumers}/v1/consumers/{id}/credential"))
                .json(&json!({"api_key": new_api_key, "secret_key": new_secret}))
                .send()
                .await?,
            200,
            "switching an integration",
        )
        .await?;
    }
    for id in &users {
        let checked = expect(
            ctx.http
                .post(format!("{consumers}/v1/consumers/{id}/check"))
                .send()
                .await?,
            200,
            "checking an integration",
        )
        .await?;
        if checked["ok"] != true {
            bail!("integration {id} does not work with the new key");
        }
    }
    // Delete only an ID the user lists right now, signing with the new key.
    if !keys(ctx, new)
        .await?
        .iter()
        .any(|k| id_of(&k["id"]).as_deref() == Some(&current))
    {
        bail!("the old key {current} is gone already");
    }
    signed(
        ctx,
        reqwest::Method::DELETE,
        &format!("/v4/users/me/apikeys/{current}"),
        new,
        None,
        204,
        "deleting the old key",
    )
    .await?;
    if let Some((k, s)) = &admin {
        // Every page, as rota's plugin reads it.
        let mut page = 1;
        loop {
            let got = signed(
                ctx,
                reqwest::Method::GET,
                &format!("/v4/audit/apikeys?page={page}&perPage=100"),
                (k, s),
                None,
                200,
                "exporting the audit log",
            )
            .await?;
            let pages = got
                .pointer("/meta/pagination/totalPages")
                .and_then(Value::as_u64)
                .unwrap_or(1);
            if page >= pages {
                break;
            }
            page += 1;
        }
    }
    Ok(())
}
