//! QRadar SOAR: regenerating an API key secret without locking apps (seed 002).

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::{TestResult, admin_get, admin_post, get, http, s, start, start_with, u};
use rota_sims::{SimsConfig, System};

struct Soar {
    origin: String,
    id: String,
    secret: String,
}

impl Soar {
    async fn of(sims: &rota_sims::Sims) -> anyhow::Result<Soar> {
        let h = get(sims, System::Soar);
        let op = admin_get(h, "/admin/operator").await?;
        Ok(Soar {
            origin: h.origin().to_owned(),
            id: s(&op, "/apiKey/api_key_id")?,
            secret: s(&op, "/apiKey/api_key_secret")?,
        })
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<(StatusCode, Value)> {
        let mut req = http()
            .request(method, format!("{}{path}", self.origin))
            .basic_auth(&self.id, Some(&self.secret));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await?;
        let st = r.status();
        Ok((st, r.json().await.unwrap_or(Value::Null)))
    }
}

async fn session(origin: &str, id: &str, secret: &str) -> anyhow::Result<(StatusCode, Value)> {
    let r = http()
        .get(format!("{origin}/rest/session"))
        .basic_auth(id, Some(secret))
        .send()
        .await?;
    let st = r.status();
    Ok((st, r.json().await?))
}

fn key<'a>(keys: &'a Value, name: &str) -> anyhow::Result<&'a Value> {
    keys.as_array()
        .and_then(|a| a.iter().find(|k| k["display_name"] == name))
        .ok_or_else(|| anyhow::anyhow!("no key {name}"))
}

#[tokio::test]
async fn soar_seed_procedure_happy_path() -> TestResult {
    let sims = start().await?;
    let h = get(&sims, System::Soar);
    let api = Soar::of(&sims).await?;
    // Resolve the org from the session, as the SDK does.
    let (st, sess) = api.call(reqwest::Method::GET, "/rest/session", None).await?;
    assert_eq!(st, StatusCode::OK);
    let org = u(&sess, "/orgs/0/id")?;
    let (_, keys) = api
        .call(reqwest::Method::GET, &format!("/rest/orgs/{org}/api_keys"), None)
        .await?;
    let target = key(&keys, "fn_soar_utils")?;
    let (key_id, api_key_id) = (u(target, "/id")?, s(target, "/api_key_id")?);

    // 1. Find the apps that use the key (by api_key_id in app.config).
    let (_, apps) = api
        .call(reqwest::Method::GET, &format!("/rest/orgs/{org}/apps"), None)
        .await?;
    // The App Secret each app reads its secret from: `api_key_secret=$<name>`.
    let users: Vec<(u64, u64, String)> = apps
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| {
            let config = a["current_installation"]["executables"][0]["config_string"].as_str()?;
            if !config.contains(&format!("api_key_id={api_key_id}")) {
                return None;
            }
            let secret = config.lines().find_map(|l| l.strip_prefix("api_key_secret=$"))?;
            Some((
                a["id"].as_u64()?,
                a["current_installation"]["id"].as_u64()?,
                secret.to_owned(),
            ))
        })
        .collect();
    assert_eq!(users.len(), 2, "two apps share the key");
    assert_eq!(
        users.iter().map(|u| u.2.as_str()).collect::<Vec<_>>(),
        ["fn_soar_utils", "soar_api_key_secret"],
        "fn_soar_utils names its App Secret after the account, fn_misp does not"
    );
    // 2. Undeploy them.
    for (app, inst, _) in &users {
        let (st, r) = api
            .call(
                reqwest::Method::PUT,
                &format!("/rest/orgs/{org}/apps/{app}/installations/{inst}"),
                Some(json!({"status": "undeploying"})),
            )
            .await?;
        assert_eq!(st, StatusCode::OK);
        assert_eq!(r["current_installation"]["status"], "undeployed");
    }
    // 3. Regenerate: same ID, new secret.
    let (st, regen) = api
        .call(
            reqwest::Method::POST,
            &format!("/rest/orgs/{org}/api_keys/{key_id}/regenerate_secret"),
            None,
        )
        .await?;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(s(&regen, "/api_key_id")?, api_key_id);
    let new_secret = s(&regen, "/api_key_secret")?;
    // 4. Update each app's secret, 5. redeploy.
    let regenerated_at = u(&regen, "/last_modified_date")?;
    for (app, inst, secret) in &users {
        let (_, names) = api
            .call(
                reqwest::Method::GET,
                &format!("/rest/orgs/{org}/apps/{app}/installations/{inst}/secrets"),
                None,
            )
            .await?;
        assert_eq!(names.as_array().map(Vec::len), Some(1), "{names}");
        assert_eq!(names[0]["name"], secret.as_str());
        assert!(
            u(&names, "/0/last_modified_date")? < regenerated_at,
            "set before the regeneration: {names}"
        );
        let (st, set) = api
            .call(
                reqwest::Method::PUT,
                &format!("/rest/orgs/{org}/apps/{app}/installations/{inst}/secrets/{secret}"),
                Some(json!({"value": new_secret, "protected": true})),
            )
            .await?;
        assert_eq!(st, StatusCode::OK);
        assert!(
            u(&set, "/last_modified_date")? >= regenerated_at,
            "set after the regeneration: {set}"
        );
        assert!(set.get("value").is_none(), "the value is never echoed: {set}");
        api.call(
            reqwest::Method::PUT,
            &format!("/rest/orgs/{org}/apps/{app}/installations/{inst}"),
            Some(json!({"status": "deploying"})),
        )
        .await?;
    }
    // The apps log in fine and the account is not locked.
    let tick = admin_post(h, "/admin/tick", json!({})).await?;
    assert!(
        tick["logins"]
            .as_array()
            .is_some_and(|l| l.iter().all(|l| l["ok"] == true)),
        "{tick}"
    );
    let (_, k) = api
        .call(
            reqwest::Method::GET,
            &format!("/rest/orgs/{org}/api_keys/{key_id}"),
            None,
        )
        .await?;
    assert_eq!(k["locked"], false);
    assert_eq!(
        session(&api.origin, &api_key_id, &new_secret).await?.0,
        StatusCode::OK
    );
    sims.shutdown().await;
    Ok(())
}

/// Guards seed rule: regenerating keeps the key ID and ends the old secret.
#[tokio::test]
async fn soar_regeneration_keeps_the_id() -> TestResult {
    let sims = start().await?;
    let h = get(&sims, System::Soar);
    let api = Soar::of(&sims).await?;
    let (_, keys) = api
        .call(reqwest::Method::GET, "/rest/orgs/201/api_keys", None)
        .await?;
    let k = key(&keys, "fn_qradar_integration")?;
    let id = u(k, "/id")?;
    // The operator's Regenerate in the UI, as copied to the clipboard.
    let regen = admin_post(h, &format!("/admin/ui/api_keys/{id}/regenerate"), json!({})).await?;
    assert_eq!(regen["api_key_id"], k["api_key_id"]);
    assert_eq!(regen["id"], id);
    let secret = s(&regen, "/api_key_secret")?;
    assert_eq!(
        session(&api.origin, &s(k, "/api_key_id")?, &secret).await?.0,
        StatusCode::OK
    );
    let (_, again) = api
        .call(
            reqwest::Method::GET,
            &format!("/rest/orgs/201/api_keys/{id}"),
            None,
        )
        .await?;
    assert!(
        again.get("api_key_secret").is_none(),
        "the secret is shown only once"
    );
    sims.shutdown().await;
    Ok(())
}

/// Guards seed rule: an app still using the old secret locks the account after N failures.
#[tokio::test]
async fn soar_app_using_the_old_secret_locks_the_account_after_n_failures() -> TestResult {
    let config = SimsConfig {
        soar_lockout_threshold: 3,
        ..SimsConfig::default()
    };
    let sims = start_with(config).await?;
    let h = get(&sims, System::Soar);
    let api = Soar::of(&sims).await?;
    // Leave only app 7 deployed on key 12, then regenerate without updating it.
    api.call(
        reqwest::Method::PUT,
        "/rest/orgs/201/apps/8/installations/11",
        Some(json!({"status": "undeploying"})),
    )
    .await?;
    let (_, regen) = api
        .call(
            reqwest::Method::POST,
            "/rest/orgs/201/api_keys/12/regenerate_secret",
            None,
        )
        .await?;
    let (id, secret) = (s(&regen, "/api_key_id")?, s(&regen, "/api_key_secret")?);
    let key12 = |sims: &rota_sims::Sims| -> anyhow::Result<Value> {
        let st = get(sims, System::Soar).state();
        Ok(key(&st["state"]["apiKeys"], "fn_soar_utils")?.clone())
    };
    for n in 1..=2u64 {
        let t = h.tick().await;
        let app7 = t["logins"]
            .as_array()
            .and_then(|l| l.iter().find(|l| l["app"] == "fn_soar_utils"))
            .cloned();
        assert_eq!(app7.map(|a| a["ok"].clone()), Some(json!(false)));
        assert_eq!(u(&key12(&sims)?, "/failed_login_count")?, n);
        assert_eq!(key12(&sims)?["locked"], false, "not locked before N");
    }
    h.tick().await;
    assert_eq!(key12(&sims)?["locked"], true, "locked at N = 3");
    // Locked: even the new secret is refused, in SOAR's envelope.
    let (st, body) = session(&api.origin, &id, &secret).await?;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    assert_eq!(body["success"], false);
    assert_eq!(body["error_code"], "generic");
    // Regenerating is the documented fix.
    let (_, regen) = api
        .call(
            reqwest::Method::POST,
            "/rest/orgs/201/api_keys/12/regenerate_secret",
            None,
        )
        .await?;
    assert_eq!(regen["locked"], false);
    assert_eq!(
        session(&api.origin, &id, &s(&regen, "/api_key_secret")?).await?.0,
        StatusCode::OK
    );
    sims.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn soar_fixtures_include_a_locked_account() -> TestResult {
    let sims = start().await?;
    let api = Soar::of(&sims).await?;
    let (_, keys) = api
        .call(reqwest::Method::GET, "/rest/orgs/201/api_keys", None)
        .await?;
    assert_eq!(key(&keys, "fn_splunk_integration")?["locked"], true);
    assert_eq!(key(&keys, "fn_soar_utils")?["locked"], false);
    sims.shutdown().await;
    Ok(())
}

/// Guards: more failures than the threshold from one IP ban it for the (scaled) hour.
#[tokio::test]
async fn soar_ip_is_banned_after_too_many_failed_logins() -> TestResult {
    let config = SimsConfig {
        soar_ip_ban_threshold: 3,
        soar_lockout_threshold: 100,
        ..SimsConfig::default()
    };
    let sims = start_with(config).await?;
    let h = get(&sims, System::Soar);
    let api = Soar::of(&sims).await?;
    for _ in 0..4 {
        assert_eq!(
            session(&api.origin, &api.id, "wrong").await?.0,
            StatusCode::UNAUTHORIZED
        );
    }
    let (st, body) = session(&api.origin, &api.id, &api.secret).await?;
    assert_eq!(
        st,
        StatusCode::UNAUTHORIZED,
        "banned IP: even good credentials fail"
    );
    assert!(s(&body, "/message")?.contains("banned"));
    // Scaled: one hour is one second by default; move the clock past it.
    h.set_clock_offset_secs(5);
    assert_eq!(
        session(&api.origin, &api.id, &api.secret).await?.0,
        StatusCode::OK
    );
    sims.shutdown().await;
    Ok(())
}

/// Guards: app secret values are never returned.
#[tokio::test]
async fn soar_app_secret_values_are_never_returned() -> TestResult {
    let sims = start().await?;
    let api = Soar::of(&sims).await?;
    api.call(
        reqwest::Method::PUT,
        "/rest/orgs/201/apps/7/installations/9/secrets/extra",
        Some(json!({"value": "s3cr3t-value-xyz"})),
    )
    .await?;
    let (_, list) = api
        .call(
            reqwest::Method::GET,
            "/rest/orgs/201/apps/7/installations/9/secrets",
            None,
        )
        .await?;
    let (_, app) = api
        .call(reqwest::Method::GET, "/rest/orgs/201/apps/7", None)
        .await?;
    for v in [list, app, get(&sims, System::Soar).state()] {
        assert!(!v.to_string().contains("s3cr3t-value-xyz"));
    }
    sims.shutdown().await;
    Ok(())
}

/// Guards: the UI stand-ins do what the seed's clicks do: Undeploy, Regenerate
/// then Copy to Clipboard, paste into the App Secret and Update, Deploy.
#[tokio::test]
async fn soar_ui_clicks_undeploy_paste_the_copied_secret_and_deploy() -> TestResult {
    let sims = start().await?;
    let h = get(&sims, System::Soar);
    let api = Soar::of(&sims).await?;
    let click = |path: &str| format!("{}{path}", h.admin_origin());
    let r = http()
        .post(click("/admin/ui/apps/fn_misp/undeploy"))
        .send()
        .await?;
    assert_eq!(r.status(), StatusCode::OK);
    let app: Value = r.json().await?;
    assert_eq!(app["current_installation"]["status"], "undeployed");
    // Nothing copied yet: pasting is refused in SOAR's envelope.
    let r = http()
        .put(click("/admin/ui/apps/8/secrets/soar_api_key_secret"))
        .send()
        .await?;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(r.json::<Value>().await?["success"], false);
    let regen = admin_post(h, "/admin/ui/api_keys/12/regenerate", json!({})).await?;
    let r = http()
        .put(click("/admin/ui/apps/fn_misp/secrets/soar_api_key_secret"))
        .send()
        .await?;
    assert_eq!(r.status(), StatusCode::OK);
    let r = http().post(click("/admin/ui/apps/8/deploy")).send().await?;
    assert_eq!(r.status(), StatusCode::OK);
    let tick = h.tick().await;
    let misp = tick["logins"]
        .as_array()
        .and_then(|l| l.iter().find(|l| l["app"] == "fn_misp"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(misp["ok"], true, "fn_misp logs in with the pasted secret: {tick}");
    let state = h.state();
    let key = key(&state["state"]["apiKeys"], "fn_soar_utils")?.clone();
    let misp = state["state"]["apps"]
        .as_array()
        .and_then(|a| a.iter().find(|a| a["name"] == "fn_misp"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        misp["current_installation"]["secrets"][0]["fingerprint"], key["secretFingerprint"],
        "{misp}"
    );
    assert_eq!(
        session(
            &api.origin,
            &s(&regen, "/api_key_id")?,
            &s(&regen, "/api_key_secret")?
        )
        .await?
        .0,
        StatusCode::OK
    );
    sims.shutdown().await;
    Ok(())
}

/// Guards: app.config edited on the Configuration tab may read the API key
/// ID from an App Secret too; the App Host resolves it like the secret.
#[tokio::test]
async fn soar_app_config_may_read_the_key_id_from_an_app_secret() -> TestResult {
    let sims = start().await?;
    let h = get(&sims, System::Soar);
    let keys = h.state()["state"]["apiKeys"].clone();
    let api_key_id = s(key(&keys, "fn_soar_utils")?, "/api_key_id")?;
    let click = |path: &str| format!("{}{path}", h.admin_origin());
    let config = "[resilient]\nhost=soar.acme-security.example\norg=Acme Security\napi_key_id=${misp_key_id}\napi_key_secret=$soar_api_key_secret\n";
    let r = http()
        .put(click("/admin/ui/apps/fn_misp/config"))
        .json(&json!({"config_string": config}))
        .send()
        .await?;
    assert_eq!(r.status(), StatusCode::OK);
    let tick = h.tick().await;
    let misp = |t: &Value| {
        t["logins"]
            .as_array()
            .and_then(|l| l.iter().find(|l| l["app"] == "fn_misp"))
            .map(|l| l["ok"].clone())
    };
    assert_eq!(
        misp(&tick),
        Some(json!(false)),
        "no App Secret misp_key_id yet: {tick}"
    );
    let r = http()
        .put(click("/admin/ui/apps/fn_misp/secrets/misp_key_id"))
        .json(&json!({"value": api_key_id}))
        .send()
        .await?;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(misp(&h.tick().await), Some(json!(true)));
    sims.shutdown().await;
    Ok(())
}

/// Guards: signing in changes nothing the admin state shows (a plan relies
/// on reads leaving the vendor as it was).
#[tokio::test]
async fn soar_a_good_login_leaves_no_trace_in_the_state() -> TestResult {
    let sims = start().await?;
    let h = get(&sims, System::Soar);
    let api = Soar::of(&sims).await?;
    let before = h.state()["state"].clone();
    assert_eq!(
        session(&api.origin, &api.id, &api.secret).await?.0,
        StatusCode::OK
    );
    api.call(reqwest::Method::GET, "/rest/orgs/201/apps", None)
        .await?;
    assert_eq!(h.state()["state"], before);
    sims.shutdown().await;
    Ok(())
}
