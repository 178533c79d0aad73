//! plytix-api-key (create a key with a name and role) and
//! plytix-api-key-role (change a live key's role, then check its
//! integrations). Like rota's plugin, every step signs in anew (one token
//! exchange per step).

use anyhow::{Context as _, bail};
use serde_json::{Map, Value, json};

use crate::{Ctx, expect, text};

struct Session<'a> {
    ctx: &'a Ctx,
    origin: &'a str,
    token: String,
}

impl<'a> Session<'a> {
    async fn open(ctx: &'a Ctx, api_key: &str, password: &str) -> anyhow::Result<Session<'a>> {
        let origin = ctx.origin("plytix")?;
        let got = expect(
            ctx.http
                .post(format!("{origin}/auth/api/get-token"))
                .json(&json!({"api_key": api_key, "api_password": password}))
                .send()
                .await?,
            200,
            "signing in to Plytix",
        )
        .await?;
        let token = got
            .pointer("/data/0/access_token")
            .and_then(Value::as_str)
            .context("no access token")?
            .to_owned();
        Ok(Session { ctx, origin, token })
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        what: &str,
    ) -> anyhow::Result<Value> {
        let mut req = self
            .ctx
            .http
            .request(method, format!("{}{path}", self.origin))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        if !(200..300).contains(&status) {
            bail!("{what}: answered {status}");
        }
        expect(resp, status, what).await
    }

    async fn keys(&self) -> anyhow::Result<Vec<Value>> {
        let v = self
            .call(
                reqwest::Method::GET,
                "/accounts/v1/api-keys",
                None,
                "listing API keys",
            )
            .await?;
        Ok(v["data"].as_array().cloned().unwrap_or_default())
    }

    async fn roles(&self) -> anyhow::Result<Vec<Value>> {
        let v = self
            .call(reqwest::Method::GET, "/accounts/v1/roles", None, "listing roles")
            .await?;
        Ok(v["data"].as_array().cloned().unwrap_or_default())
    }
}

fn role_id(roles: &[Value], name: &str) -> anyhow::Result<String> {
    roles
        .iter()
        .find(|r| r["name"] == name)
        .and_then(|r| r["id"].as_str())
        .map(str::to_owned)
        .with_context(|| format!("no role {name}"))
}

pub async fn create(ctx: &Ctx, inputs: &Map<String, Value>) -> anyhow::Result<()> {
    let admin_key = text(inputs, "admin_key", None)?;
    let password = ctx.secret(&text(inputs, "admin_password", None)?)?;
    let account = text(inputs, "account", None)?;
    let name = text(inputs, "name", None)?;
    let role = text(inputs, "role", None)?;
    let slug = text(inputs, "key_slug", None)?;
    let open = || Session::open(ctx, &admin_key, password);

    // The caller may manage keys (an Owner's or Admin's key lists them).
    open().await?.keys().await?;
    // The name is free.
    if open()
        .await?
        .keys()
        .await?
        .iter()
        .any(|k| k["name"] == name.as_str())
    {
        bail!("a key named {name} exists");
    }
    let roles = open().await?.roles().await?;
    role_id(&roles, &role)?;
    // rota's reconcile snapshot before creating.
    open().await?.keys().await?;
    let s = open().await?;
    let id = role_id(&s.roles().await?, &role)?;
    s.keys().await?;
    let created = s
        .call(
            reqwest::Method::POST,
            "/accounts/v1/api-keys",
            Some(json!({"name": name, "role_id": id})),
            "creating the key",
        )
        .await?;
    let key = created.pointer("/data/0").context("no key in the answer")?;
    let new_password = key["api_password"].as_str().context("no API password")?;
    let new_key = key["api_key"].as_str().context("no API key")?;
    ctx.keep(&format!("plytix/{account}/{slug}/api-password"), new_password)
        .await?;
    // Verify: the documented token exchange, then a product read.
    let s = Session::open(ctx, new_key, new_password).await?;
    s.call(
        reqwest::Method::POST,
        "/api/v1/products/search",
        Some(json!({"filters": [], "attributes": ["sku"], "pagination": {"page": 1, "page_size": 1}})),
        "reading products with the new key",
    )
    .await?;
    Ok(())
}

pub async fn change_role(ctx: &Ctx, inputs: &Map<String, Value>) -> anyhow::Result<()> {
    let admin_key = text(inputs, "admin_key", None)?;
    let password = ctx.secret(&text(inputs, "admin_password", None)?)?;
    let key_name = text(inputs, "key_name", None)?;
    let role = text(inputs, "role", None)?;
    let open = || Session::open(ctx, &admin_key, password);

    open().await?.keys().await?;
    let keys = open().await?.keys().await?;
    let key = keys
        .iter()
        .find(|k| k["name"] == key_name.as_str())
        .with_context(|| format!("no key named {key_name}"))?;
    let api_key = key["api_key"].as_str().context("no api_key")?.to_owned();
    if key["role"]["name"] == role.as_str() {
        bail!("the key already has role {role}");
    }
    role_id(&open().await?.roles().await?, &role)?;
    let consumers = ctx.origin("consumers")?;
    let users = ctx.consumers_holding("plytix", &api_key).await?;
    let s = open().await?;
    let id = s
        .keys()
        .await?
        .iter()
        .find(|k| k["api_key"] == api_key.as_str())
        .and_then(|k| k["id"].as_str())
        .map(str::to_owned)
        .context("the key is gone")?;
    let new_role = role_id(&s.roles().await?, &role)?;
    s.call(
        reqwest::Method::PATCH,
        &format!("/accounts/v1/api-keys/{id}"),
        Some(json!({"role_id": new_role})),
        "changing the role",
    )
    .await?;
    for c in &users {
        let checked = expect(
            ctx.http
                .post(format!("{consumers}/v1/consumers/{c}/check"))
                .send()
                .await?,
            200,
            "checking an integration",
        )
        .await?;
        if checked["ok"] != true {
            bail!("integration {c} broke with the new role");
        }
    }
    Ok(())
}
