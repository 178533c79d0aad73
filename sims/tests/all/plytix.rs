//! Plytix: API keys with name + role (seed 001), and its rules.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::{TestResult, admin_get, admin_post, get, http, s, start};
use rota_sims::System;

pub(crate) struct Plytix {
    pub(crate) origin: String,
    pub(crate) op: Value,
}

impl Plytix {
    pub(crate) async fn of(sims: &rota_sims::Sims) -> anyhow::Result<Plytix> {
        let h = get(sims, System::Plytix);
        Ok(Plytix {
            origin: h.origin().to_owned(),
            op: admin_get(h, "/admin/operator").await?,
        })
    }

    /// The documented token exchange.
    pub(crate) async fn key_token(
        &self,
        api_key: &str,
        api_password: &str,
    ) -> anyhow::Result<(StatusCode, Value)> {
        let r = http()
            .post(format!("{}/auth/api/get-token", self.origin))
            .json(&json!({"api_key": api_key, "api_password": api_password}))
            .send()
            .await?;
        let st = r.status();
        Ok((st, r.json().await?))
    }

    pub(crate) async fn operator_token(&self) -> anyhow::Result<String> {
        let (st, t) = self
            .key_token(
                &s(&self.op, "/apiKey/api_key")?,
                &s(&self.op, "/apiKey/api_password")?,
            )
            .await?;
        anyhow::ensure!(st == StatusCode::OK, "operator token: {st} {t}");
        s(&t, "/data/0/access_token")
    }

    async fn user_token(&self, role: &str) -> anyhow::Result<String> {
        let u = self
            .op
            .pointer("/users")
            .and_then(Value::as_array)
            .and_then(|a| a.iter().find(|u| u["role"] == role))
            .ok_or_else(|| anyhow::anyhow!("no {role} user"))?;
        let r = http()
            .post(format!("{}/auth/user/get-token", self.origin))
            .json(&json!({"email": u["email"], "password": u["password"]}))
            .send()
            .await?;
        s(&r.json::<Value>().await?, "/data/0/access_token")
    }

    pub(crate) async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> anyhow::Result<(StatusCode, Value)> {
        let mut req = http()
            .request(method, format!("{}{path}", self.origin))
            .bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await?;
        let st = r.status();
        Ok((st, r.json().await.unwrap_or(Value::Null)))
    }

    pub(crate) async fn role_id(&self, token: &str, name: &str) -> anyhow::Result<String> {
        let (_, roles) = self
            .call(reqwest::Method::GET, "/accounts/v1/roles", token, None)
            .await?;
        let r = roles["data"]
            .as_array()
            .and_then(|a| a.iter().find(|r| r["name"] == name))
            .ok_or_else(|| anyhow::anyhow!("no role {name} in {roles}"))?;
        s(r, "/id")
    }
}

#[tokio::test]
async fn plytix_seed_procedure_happy_path() -> TestResult {
    let sims = start().await?;
    let p = Plytix::of(&sims).await?;
    let admin = p.operator_token().await?;
    let (_, roles) = p
        .call(reqwest::Method::GET, "/accounts/v1/roles", &admin, None)
        .await?;
    let kinds: Vec<&str> = roles["data"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["type"].as_str())
        .collect();
    assert!(
        kinds.contains(&"system") && kinds.contains(&"team"),
        "system and team roles"
    );
    let editor = p.role_id(&admin, "Editor").await?;
    let viewer = p.role_id(&admin, "Viewer").await?;

    // Create API Key: name + role; key and password shown.
    let (st, created) = p
        .call(
            reqwest::Method::POST,
            "/accounts/v1/api-keys",
            &admin,
            Some(json!({"name": "PIM export (acme-erp)", "role_id": editor})),
        )
        .await?;
    assert_eq!(st, StatusCode::CREATED, "{created}");
    let id = s(&created, "/data/0/id")?;
    assert_eq!(id.len(), 24, "24-hex ObjectId");
    let (key, password) = (
        s(&created, "/data/0/api_key")?,
        s(&created, "/data/0/api_password")?,
    );
    assert_eq!(created["data"][0]["role"]["name"], "Editor");

    // The eye icon reveals the password; the list does not.
    let (_, revealed) = p
        .call(
            reqwest::Method::GET,
            &format!("/accounts/v1/api-keys/{id}/password"),
            &admin,
            None,
        )
        .await?;
    assert_eq!(s(&revealed, "/data/0/api_password")?, password);
    let (_, list) = p
        .call(reqwest::Method::GET, "/accounts/v1/api-keys", &admin, None)
        .await?;
    assert!(!list.to_string().contains(&password));

    // The new key works through the documented token exchange.
    let (st, tok) = p.key_token(&key, &password).await?;
    assert_eq!(st, StatusCode::OK);
    let t = s(&tok, "/data/0/access_token")?;
    assert_eq!(t.split('.').count(), 3, "a JWT");
    let (st, _) = p
        .call(
            reqwest::Method::POST,
            "/api/v1/products/search",
            &t,
            Some(json!({})),
        )
        .await?;
    assert_eq!(st, StatusCode::OK);

    // Edit (pencil): change the role; then delete.
    let (st, upd) = p
        .call(
            reqwest::Method::PATCH,
            &format!("/accounts/v1/api-keys/{id}"),
            &admin,
            Some(json!({"role_id": viewer})),
        )
        .await?;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(upd["data"][0]["role"]["name"], "Viewer");
    let (st, _) = p
        .call(
            reqwest::Method::DELETE,
            &format!("/accounts/v1/api-keys/{id}"),
            &admin,
            None,
        )
        .await?;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, body) = p.key_token(&key, &password).await?;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    assert_eq!(
        body["error"]["msg"],
        "Bad api_key or api_password: Credentials not valid"
    );
    sims.shutdown().await;
    Ok(())
}

/// Guards seed rule: only Owners and Admins may create or manage keys.
#[tokio::test]
async fn plytix_non_admin_user_gets_403_on_key_management() -> TestResult {
    let sims = start().await?;
    let p = Plytix::of(&sims).await?;
    for role in ["Editor", "Viewer"] {
        let t = p.user_token(role).await?;
        for (method, path, body) in [
            (reqwest::Method::GET, "/accounts/v1/api-keys", None),
            (
                reqwest::Method::POST,
                "/accounts/v1/api-keys",
                Some(json!({"name": "x", "role_id": "y"})),
            ),
        ] {
            let (st, r) = p.call(method, path, &t, body).await?;
            assert_eq!(st, StatusCode::FORBIDDEN, "{role} on {path}");
            assert_eq!(
                r,
                json!({"data": [], "errors": [{"name": "Forbidden", "description": "Only Owners and Admins can manage API keys"}]})
            );
        }
    }
    for role in ["Owner", "Admin"] {
        let t = p.user_token(role).await?;
        let (st, _) = p
            .call(reqwest::Method::GET, "/accounts/v1/api-keys", &t, None)
            .await?;
        assert_eq!(st, StatusCode::OK, "{role} may manage keys");
    }
    sims.shutdown().await;
    Ok(())
}

/// Guards seed rule: changing a live key's role changes what it can do, at once.
#[tokio::test]
async fn plytix_role_change_changes_what_the_key_can_do() -> TestResult {
    let sims = start().await?;
    let p = Plytix::of(&sims).await?;
    let admin = p.operator_token().await?;
    let editor = p.role_id(&admin, "Editor").await?;
    let (_, created) = p
        .call(
            reqwest::Method::POST,
            "/accounts/v1/api-keys",
            &admin,
            Some(json!({"name": "feed", "role_id": editor})),
        )
        .await?;
    let id = s(&created, "/data/0/id")?;
    let (_, tok) = p
        .key_token(
            &s(&created, "/data/0/api_key")?,
            &s(&created, "/data/0/api_password")?,
        )
        .await?;
    let t = s(&tok, "/data/0/access_token")?;
    let create = |sku: &str| {
        p.call(
            reqwest::Method::POST,
            "/api/v1/products",
            &t,
            Some(json!({"sku": sku})),
        )
    };
    let search = || {
        p.call(
            reqwest::Method::POST,
            "/api/v1/products/search",
            &t,
            Some(json!({})),
        )
    };
    assert_eq!(create("SKU-1").await?.0, StatusCode::CREATED);

    let set_role = |name: &'static str| {
        let (p, admin, id) = (&p, admin.clone(), id.clone());
        async move {
            let rid = p.role_id(&admin, name).await?;
            p.call(
                reqwest::Method::PATCH,
                &format!("/accounts/v1/api-keys/{id}"),
                &admin,
                Some(json!({"role_id": rid})),
            )
            .await
        }
    };
    set_role("Viewer").await?;
    let (st, r) = create("SKU-2").await?;
    assert_eq!(st, StatusCode::FORBIDDEN);
    assert_eq!(r["errors"][0]["name"], "PermissionError");
    assert_eq!(search().await?.0, StatusCode::OK);

    set_role("Assets Only").await?;
    assert_eq!(search().await?.0, StatusCode::FORBIDDEN);
    sims.shutdown().await;
    Ok(())
}

/// Guards: a key's password is in the create response and the eye-icon reveal, nowhere else.
#[tokio::test]
async fn plytix_key_password_is_never_in_lists_or_admin_state() -> TestResult {
    let sims = start().await?;
    let h = get(&sims, System::Plytix);
    let p = Plytix::of(&sims).await?;
    let admin = p.operator_token().await?;
    let role = p.role_id(&admin, "Catalog Import").await?;
    // The operator's Create API Key in the UI.
    let created = admin_post(
        h,
        "/admin/ui/api-keys",
        json!({"name": "importer 2", "role_id": role}),
    )
    .await?;
    let password = s(&created, "/data/0/api_password")?;
    let (_, list) = p
        .call(reqwest::Method::GET, "/accounts/v1/api-keys", &admin, None)
        .await?;
    assert!(!list.to_string().contains(&password));
    assert!(!h.state().to_string().contains(&password));
    sims.shutdown().await;
    Ok(())
}

/// Guards: tokens live 15 minutes (documented lifetime).
#[tokio::test]
async fn plytix_token_expires_after_fifteen_minutes() -> TestResult {
    let sims = start().await?;
    let h = get(&sims, System::Plytix);
    let p = Plytix::of(&sims).await?;
    let t = p.operator_token().await?;
    h.set_clock_offset_secs(14 * 60);
    assert_eq!(
        p.call(reqwest::Method::GET, "/accounts/v1/api-keys", &t, None)
            .await?
            .0,
        StatusCode::OK
    );
    h.set_clock_offset_secs(16 * 60);
    assert_eq!(
        p.call(reqwest::Method::GET, "/accounts/v1/api-keys", &t, None)
            .await?
            .0,
        StatusCode::UNAUTHORIZED
    );
    sims.shutdown().await;
    Ok(())
}

/// Guards the configurable unknown: whether tokens outlive a deleted key.
#[tokio::test]
async fn plytix_tokens_outlive_a_deleted_key_only_when_configured() -> TestResult {
    for survive in [false, true] {
        let config = rota_sims::SimsConfig {
            plytix_tokens_survive_key_delete: survive,
            ..Default::default()
        };
        let sims = crate::start_with(config).await?;
        let p = Plytix::of(&sims).await?;
        let admin = p.operator_token().await?;
        let editor = p.role_id(&admin, "Editor").await?;
        let (_, created) = p
            .call(
                reqwest::Method::POST,
                "/accounts/v1/api-keys",
                &admin,
                Some(json!({"name": "temp", "role_id": editor})),
            )
            .await?;
        let (_, tok) = p
            .key_token(
                &s(&created, "/data/0/api_key")?,
                &s(&created, "/data/0/api_password")?,
            )
            .await?;
        let t = s(&tok, "/data/0/access_token")?;
        let id = s(&created, "/data/0/id")?;
        p.call(
            reqwest::Method::DELETE,
            &format!("/accounts/v1/api-keys/{id}"),
            &admin,
            None,
        )
        .await?;
        let (st, _) = p
            .call(
                reqwest::Method::POST,
                "/api/v1/products/search",
                &t,
                Some(json!({})),
            )
            .await?;
        let want = if survive {
            StatusCode::OK
        } else {
            StatusCode::UNAUTHORIZED
        };
        assert_eq!(st, want, "survive = {survive}");
        sims.shutdown().await;
    }
    Ok(())
}

/// Guards Plytix's per-credential window: once full, 429 with Retry-After
/// until it slides; another credential is unaffected.
#[tokio::test]
async fn plytix_rate_limit_answers_429_with_retry_after() -> TestResult {
    let config = rota_sims::SimsConfig {
        time_scale: 1.0,
        plytix_requests_per_10s: 3,
        ..Default::default()
    };
    let sims = crate::start_with(config).await?;
    let p = Plytix::of(&sims).await?;
    let t = p.operator_token().await?;
    for _ in 0..3 {
        assert_eq!(
            p.call(reqwest::Method::GET, "/accounts/v1/roles", &t, None)
                .await?
                .0,
            StatusCode::OK
        );
    }
    let r = http()
        .get(format!("{}/accounts/v1/roles", p.origin))
        .bearer_auth(&t)
        .send()
        .await?;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = r
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("0")
        .parse()?;
    assert!((1..=10).contains(&retry), "Retry-After {retry}");
    let body: Value = r.json().await?;
    assert_eq!(body["error"]["msg"], "Rate limit exceeded");
    let other = p.user_token("Owner").await?;
    assert_eq!(
        p.call(reqwest::Method::GET, "/accounts/v1/roles", &other, None)
            .await?
            .0,
        StatusCode::OK
    );
    sims.shutdown().await;
    Ok(())
}

/// The UI stand-ins a guided run's operator clicks: *Create API Key* with a
/// role picked by name, the eye icon, the pencil (*Save API Key*) and the
/// bin icon, each addressing the row by its API key as the table shows it.
#[tokio::test]
async fn plytix_ui_dialogs_take_role_names_and_rows_by_api_key() -> TestResult {
    let sims = start().await?;
    let h = get(&sims, System::Plytix);
    let admin = h.admin_origin().to_owned();
    let created = admin_post(
        h,
        "/admin/ui/api-keys",
        json!({"name": "PIM feed", "role": "Catalog Import"}),
    )
    .await?;
    assert_eq!(created["data"][0]["role"]["name"], "Catalog Import");
    assert_eq!(created["data"][0]["role"]["type"], "team");
    let key = s(&created, "/data/0/api_key")?;
    let password = s(&created, "/data/0/api_password")?;
    let revealed = admin_get(h, &format!("/admin/ui/api-keys/{key}/password")).await?;
    assert_eq!(s(&revealed, "/data/0/api_password")?, password);

    let r = http()
        .post(format!("{admin}/admin/ui/api-keys"))
        .json(&json!({"name": "x", "role": "Janitor"}))
        .send()
        .await?;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);

    let r = http()
        .patch(format!("{admin}/admin/ui/api-keys/{key}"))
        .json(&json!({"role": "Viewer"}))
        .send()
        .await?;
    assert_eq!(r.status(), StatusCode::OK);
    let edited: Value = r.json().await?;
    assert_eq!(edited["data"][0]["role"]["name"], "Viewer");
    assert_eq!(edited["data"][0]["name"], "PIM feed", "the name is kept");

    let r = http()
        .delete(format!("{admin}/admin/ui/api-keys/{key}"))
        .send()
        .await?;
    assert_eq!(r.status(), StatusCode::OK);
    let keys = h.state()["state"]["apiKeys"].clone();
    assert!(!keys.to_string().contains(&key), "deleted: {keys}");
    let r = http()
        .delete(format!("{admin}/admin/ui/api-keys/{key}"))
        .send()
        .await?;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    sims.shutdown().await;
    Ok(())
}

/// Guards: a created key's ID and password do not depend on how many
/// sign-ins came first, so a guided run (no API sign-ins) and an automated
/// one end in the same state.
#[tokio::test]
async fn plytix_new_key_ids_do_not_depend_on_sign_ins() -> TestResult {
    let mut made = Vec::new();
    for sign_ins in [0, 3] {
        let sims = start().await?;
        let h = get(&sims, System::Plytix);
        let p = Plytix::of(&sims).await?;
        for _ in 0..sign_ins {
            p.operator_token().await?;
        }
        let created = admin_post(h, "/admin/ui/api-keys", json!({"name": "feed", "role": "Viewer"})).await?;
        // Everything but the creation times (fixtures are dated from now).
        let keys: Vec<Value> = h.state()["state"]["apiKeys"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|k| {
                json!([
                    k["id"],
                    k["api_key"],
                    k["name"],
                    k["role"],
                    k["apiPasswordFingerprint"]
                ])
            })
            .collect();
        made.push((s(&created, "/data/0/id")?, keys));
        sims.shutdown().await;
    }
    assert_eq!(made.first().map(|m| &m.0), made.get(1).map(|m| &m.0));
    assert_eq!(
        made.first().map(|m| &m.1),
        made.get(1).map(|m| &m.1),
        "same keys, same fingerprints"
    );
    Ok(())
}
