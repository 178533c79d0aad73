//! soar-regenerate-api-key: find every app using the account (by API key
//! ID or secret name in app.config, else an App Secret named after the
//! account), undeploy them, regenerate the secret in place, give each app
//! the new secret, redeploy, and check nothing is locked.

use anyhow::{Context as _, bail};
use serde_json::{Map, Value, json};

use crate::{Ctx, expect, text};

struct Soar<'a> {
    ctx: &'a Ctx,
    origin: &'a str,
    id: String,
    secret: String,
    org: String,
}

/// An app using the account: (name, app id, installation id, App Secret name, active).
struct Use {
    name: String,
    app: u64,
    inst: u64,
    secret_name: String,
    active: bool,
}

impl Soar<'_> {
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
            .request(method, format!("{}/rest/orgs/{}{path}", self.origin, self.org))
            .basic_auth(&self.id, Some(&self.secret))
            .header("accept", "application/json");
        if let Some(b) = body {
            req = req.json(&b);
        }
        expect(req.send().await?, 200, what).await
    }

    async fn apps(&self) -> anyhow::Result<Vec<Value>> {
        Ok(self
            .call(reqwest::Method::GET, "/apps", None, "listing apps")
            .await?
            .as_array()
            .cloned()
            .unwrap_or_default())
    }

    async fn app(&self, name: &str) -> anyhow::Result<Value> {
        self.apps()
            .await?
            .into_iter()
            .find(|a| a["name"] == name)
            .with_context(|| format!("no app {name}"))
    }

    async fn set_status(&self, name: &str, status: &str) -> anyhow::Result<()> {
        let app = self.app(name).await?;
        let inst = app["current_installation"]["id"]
            .as_u64()
            .context("no installation")?;
        let id = app["id"].as_u64().context("no app id")?;
        self.call(
            reqwest::Method::PUT,
            &format!("/apps/{id}/installations/{inst}"),
            Some(json!({"id": inst, "status": status})),
            "setting an app's status",
        )
        .await
        .map(drop)
    }
}

/// `api_key_id` and `api_key_secret` of app.config's `[resilient]` section.
fn config(app: &Value) -> (Option<String>, Option<String>) {
    let text: Vec<&str> = app["current_installation"]["executables"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["config_string"].as_str())
        .collect();
    let (mut id, mut secret, mut section) = (None, None, None::<String>);
    for line in text.join("\n").lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = Some(s.trim().to_owned());
            continue;
        }
        if section.as_deref().is_some_and(|s| s != "resilient") {
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            match k.trim() {
                "api_key_id" => {
                    id = Some(v.trim().to_owned()).filter(|v| !v.starts_with('$') && !v.starts_with('^'))
                }
                "api_key_secret" => {
                    secret = v
                        .trim()
                        .strip_prefix('$')
                        .map(|n| n.trim_start_matches('{').trim_end_matches('}').to_owned());
                }
                _ => {}
            }
        }
    }
    (id, secret)
}

pub async fn regenerate(ctx: &Ctx, inputs: &Map<String, Value>) -> anyhow::Result<()> {
    let origin = ctx.origin("soar")?;
    let account = text(inputs, "account", None)?;
    let login_id = text(inputs, "login_id", None)?;
    let login_secret = ctx.secret(&text(inputs, "login_secret", None)?)?.to_owned();
    let session = expect(
        ctx.http
            .get(format!("{origin}/rest/session?include_permissions=false"))
            .basic_auth(&login_id, Some(&login_secret))
            .header("accept", "application/json")
            .send()
            .await?,
        200,
        "signing in to SOAR",
    )
    .await?;
    let org = match inputs
        .get("org")
        .and_then(Value::as_str)
        .filter(|o| !o.trim().is_empty())
    {
        Some(o) => o.to_owned(),
        None => session["orgs"]
            .as_array()
            .and_then(|o| o.first())
            .map(|o| match &o["id"] {
                Value::Number(n) => n.to_string(),
                other => other.as_str().unwrap_or_default().to_owned(),
            })
            .context("the session lists no organization")?,
    };
    let soar = Soar {
        ctx,
        origin,
        id: login_id.clone(),
        secret: login_secret,
        org,
    };

    // The account, and (like rota's inventory) the apps.
    let keys = soar
        .call(
            reqwest::Method::GET,
            "/api_keys",
            None,
            "listing API key accounts",
        )
        .await?;
    let key = keys
        .as_array()
        .into_iter()
        .flatten()
        .find(|k| k["display_name"] == account.as_str() || k["api_key_id"] == account.as_str())
        .with_context(|| format!("no API key account {account}"))?
        .clone();
    let key_id = key["id"].as_u64().context("no account id")?;
    let api_key_id = key["api_key_id"].as_str().context("no api_key_id")?.to_owned();
    if api_key_id == login_id {
        bail!("refusing to regenerate the key this run signs in with");
    }
    soar.apps().await?;

    let mut users = Vec::new();
    for app in soar.apps().await? {
        let (cfg_id, cfg_secret) = config(&app);
        let name = app["name"].as_str().context("an app without a name")?.to_owned();
        let by_config =
            cfg_id.as_deref() == Some(api_key_id.as_str()) || cfg_secret.as_deref() == Some(account.as_str());
        let app_id = app["id"].as_u64().context("no app id")?;
        let inst = app["current_installation"]["id"]
            .as_u64()
            .context("no installation")?;
        let secret_name = if by_config {
            cfg_secret.clone().unwrap_or_else(|| account.clone())
        } else {
            let secrets = soar
                .call(
                    reqwest::Method::GET,
                    &format!("/apps/{app_id}/installations/{inst}/secrets"),
                    None,
                    "listing App Secrets",
                )
                .await?;
            if !secrets
                .as_array()
                .into_iter()
                .flatten()
                .any(|s| s["name"] == account.as_str())
            {
                continue;
            }
            account.clone()
        };
        users.push(Use {
            name,
            app: app_id,
            inst,
            secret_name,
            active: app["current_installation"]["status"] != "undeployed",
        });
    }

    for u in users.iter().filter(|u| u.active) {
        soar.set_status(&u.name, "undeploying").await?;
    }
    let regenerated = soar
        .call(
            reqwest::Method::POST,
            &format!("/api_keys/{key_id}/regenerate_secret"),
            None,
            "regenerating the secret",
        )
        .await?;
    if regenerated["id"].as_u64() != Some(key_id) {
        bail!("SOAR regenerated another account");
    }
    let secret = regenerated["api_key_secret"]
        .as_str()
        .context("no api_key_secret")?
        .to_owned();
    ctx.keep(&format!("soar/{account}/api-key-secret"), &secret)
        .await?;
    for u in &users {
        let app = soar.app(&u.name).await?;
        let inst = app["current_installation"]["id"].as_u64().unwrap_or(u.inst);
        soar.call(
            reqwest::Method::PUT,
            &format!("/apps/{}/installations/{inst}/secrets/{}", u.app, u.secret_name),
            Some(json!({"value": secret, "protected": true})),
            "updating an App Secret",
        )
        .await?;
    }
    for u in users.iter().filter(|u| u.active) {
        soar.set_status(&u.name, "deploying").await?;
    }
    // The new secret signs in, the account is not locked, the apps run.
    expect(
        ctx.http
            .get(format!("{origin}/rest/session?include_permissions=false"))
            .basic_auth(&api_key_id, Some(&secret))
            .header("accept", "application/json")
            .send()
            .await?,
        200,
        "signing in with the new secret",
    )
    .await?;
    let k = soar
        .call(
            reqwest::Method::GET,
            &format!("/api_keys/{key_id}"),
            None,
            "reading the account",
        )
        .await?;
    if k["locked"] == true {
        bail!("the account is locked");
    }
    for u in users.iter().filter(|u| u.active) {
        let app = soar.app(&u.name).await?;
        if app["current_installation"]["status"] != "deployed" {
            bail!("app {} is not deployed", u.name);
        }
    }
    Ok(())
}
