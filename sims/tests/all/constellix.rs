//! Constellix: two keys per user for zero-downtime rollover (seed 003).

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::{TestResult, admin_get, admin_post, get, http, s, start, u};
use rota_sims::System;

#[derive(Clone, Debug)]
pub(crate) struct Key {
    pub(crate) id: u64,
    pub(crate) api_key: String,
    pub(crate) secret_key: String,
}

pub(crate) fn token(k: &Key) -> String {
    let ts = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
    rota_sims::constellix_token(&k.api_key, &k.secret_key, i64::try_from(ts).unwrap_or(0))
}

pub(crate) async fn call(
    origin: &str,
    k: &Key,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> anyhow::Result<(StatusCode, Value)> {
    let mut req = http()
        .request(method, format!("{origin}{path}"))
        .bearer_auth(token(k));
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await?;
    let st = r.status();
    Ok((st, r.json().await.unwrap_or(Value::Null)))
}

/// The fixture keys of a user, from the admin operator view.
pub(crate) async fn keys_of(sims: &rota_sims::Sims, email: &str) -> anyhow::Result<Vec<Key>> {
    let op = admin_get(get(sims, System::Constellix), "/admin/operator").await?;
    let user = op["users"]
        .as_array()
        .and_then(|a| a.iter().find(|u| u["email"] == email))
        .ok_or_else(|| anyhow::anyhow!("no user {email}"))?;
    user["apiKeys"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|k| {
            Ok(Key {
                id: u(k, "/id")?,
                api_key: s(k, "/apiKey")?,
                secret_key: s(k, "/secretKey")?,
            })
        })
        .collect()
}

const ALICE: &str = "alice@acme-dns.example";
const BOB: &str = "bob@acme-dns.example";

fn actions(audit: &Value, key_id: u64) -> Vec<String> {
    audit["data"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["apiKeyId"] == key_id)
        .filter_map(|e| e["action"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn constellix_seed_procedure_happy_path() -> TestResult {
    let sims = start().await?;
    let origin = get(&sims, System::Constellix).origin().to_owned();
    let old = keys_of(&sims, BOB)
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| anyhow::anyhow!("bob has a key"))?;
    let (st, list) = call(&origin, &old, reqwest::Method::GET, "/v4/users/me/apikeys", None).await?;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(list["meta"]["pagination"]["total"], 1);
    let expires = time::OffsetDateTime::parse(
        &s(&list, "/data/0/expiresAt")?,
        &time::format_description::well_known::Rfc3339,
    )?;
    let left = expires - time::OffsetDateTime::now_utc();
    assert!(
        left > time::Duration::days(19) && left <= time::Duration::days(20),
        "expires in 20 days"
    );

    // Generate the second key (12 months), use it, then delete the first.
    let (st, created) = call(
        &origin,
        &old,
        reqwest::Method::POST,
        "/v4/users/me/apikeys",
        Some(json!({"expiresInMonths": 12})),
    )
    .await?;
    assert_eq!(st, StatusCode::CREATED, "{created}");
    let new = Key {
        id: u(&created, "/data/id")?,
        api_key: s(&created, "/data/apiKey")?,
        secret_key: s(&created, "/data/secretKey")?,
    };
    assert_eq!(
        call(&origin, &new, reqwest::Method::GET, "/v4/domains", None)
            .await?
            .0,
        StatusCode::OK
    );
    let (st, _) = call(
        &origin,
        &new,
        reqwest::Method::DELETE,
        &format!("/v4/users/me/apikeys/{}", old.id),
        None,
    )
    .await?;
    assert_eq!(st, StatusCode::NO_CONTENT);
    assert_eq!(
        call(&origin, &old, reqwest::Method::GET, "/v4/domains", None)
            .await?
            .0,
        StatusCode::UNAUTHORIZED
    );

    // The administrator sees the create and the delete.
    let alice = keys_of(&sims, ALICE)
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| anyhow::anyhow!("alice has keys"))?;
    let (_, audit) = call(
        &origin,
        &alice,
        reqwest::Method::GET,
        "/v4/audit/apikeys?perPage=100",
        None,
    )
    .await?;
    assert_eq!(actions(&audit, new.id), ["create"]);
    assert_eq!(actions(&audit, old.id), ["create", "delete"]);
    sims.shutdown().await;
    Ok(())
}

/// Guards seed rule: at most two keys per user; a third is refused with 422.
#[tokio::test]
async fn constellix_third_key_is_refused_with_422() -> TestResult {
    let sims = start().await?;
    let origin = get(&sims, System::Constellix).origin().to_owned();
    let alice = keys_of(&sims, ALICE).await?;
    assert_eq!(alice.len(), 2, "fixture: alice already has two keys");
    let k = alice.first().cloned().ok_or_else(|| anyhow::anyhow!("key"))?;
    let (st, body) = call(
        &origin,
        &k,
        reqwest::Method::POST,
        "/v4/users/me/apikeys",
        Some(json!({"expiresInMonths": null})),
    )
    .await?;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        body,
        json!({"message": "Validation failed", "errors": {"apikeys": ["A user may have at most 2 API keys"]}})
    );
    // The UI refuses the same way.
    let r = http()
        .post(format!(
            "{}/admin/ui/users/101/apikeys",
            get(&sims, System::Constellix).admin_origin()
        ))
        .json(&json!({"expiresInMonths": 5}))
        .send()
        .await?;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    sims.shutdown().await;
    Ok(())
}

/// Guards seed rule: every view and delete of a key is logged, and the log exports.
#[tokio::test]
async fn constellix_every_key_view_and_delete_is_logged() -> TestResult {
    let sims = start().await?;
    let h = get(&sims, System::Constellix);
    let origin = h.origin().to_owned();
    let alice = keys_of(&sims, ALICE).await?;
    let (a, b) = match alice.as_slice() {
        [a, b] => (a.clone(), b.clone()),
        _ => anyhow::bail!("alice has two keys"),
    };
    let (st, v) = call(
        &origin,
        &a,
        reqwest::Method::GET,
        &format!("/v4/users/me/apikeys/{}/secret", b.id),
        None,
    )
    .await?;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(s(&v, "/data/secretKey")?, b.secret_key);
    // A view in the portal is logged too.
    admin_get(h, &format!("/admin/ui/users/101/apikeys/{}/secret", a.id)).await?;
    let (st, _) = call(
        &origin,
        &a,
        reqwest::Method::DELETE,
        &format!("/v4/users/me/apikeys/{}", b.id),
        None,
    )
    .await?;
    assert_eq!(st, StatusCode::NO_CONTENT);

    let (_, audit) = call(
        &origin,
        &a,
        reqwest::Method::GET,
        "/v4/audit/apikeys?perPage=100",
        None,
    )
    .await?;
    assert_eq!(actions(&audit, b.id), ["create", "view", "delete"]);
    assert_eq!(actions(&audit, a.id), ["create", "view"]);
    let last = audit["data"]
        .as_array()
        .and_then(|d| d.last())
        .cloned()
        .unwrap_or_default();
    assert_eq!(last["ip"], "127.0.0.1");
    assert_eq!(last["userId"], 101);

    let r = http()
        .get(format!("{origin}/v4/audit/apikeys/export"))
        .bearer_auth(token(&a))
        .send()
        .await?;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|c| c.starts_with("text/csv"))
    );
    let csv = r.text().await?;
    assert!(csv.starts_with("id,userId,apiKeyId,action,ip,createdAt\n"));
    assert!(csv.contains(&format!(",101,{},view,127.0.0.1,", b.id)));
    assert!(csv.contains(&format!(",101,{},delete,127.0.0.1,", b.id)));
    sims.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn constellix_audit_log_is_for_administrators_only() -> TestResult {
    let sims = start().await?;
    let origin = get(&sims, System::Constellix).origin().to_owned();
    let bob = keys_of(&sims, BOB)
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| anyhow::anyhow!("key"))?;
    let (st, body) = call(&origin, &bob, reqwest::Method::GET, "/v4/audit/apikeys", None).await?;
    assert_eq!(st, StatusCode::FORBIDDEN);
    assert_eq!(body, json!({"message": "Forbidden"}));
    sims.shutdown().await;
    Ok(())
}

/// Guards seed rule: a key past its expiry no longer authenticates.
#[tokio::test]
async fn constellix_expired_key_no_longer_authenticates() -> TestResult {
    let sims = start().await?;
    let h = get(&sims, System::Constellix);
    let bob = keys_of(&sims, BOB)
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| anyhow::anyhow!("key"))?;
    assert_eq!(
        call(h.origin(), &bob, reqwest::Method::GET, "/v4/domains", None)
            .await?
            .0,
        StatusCode::OK
    );
    h.set_clock_offset_secs(21 * 86_400);
    let (st, body) = call(h.origin(), &bob, reqwest::Method::GET, "/v4/domains", None).await?;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    assert_eq!(body, json!({"message": "Unauthorized"}));
    sims.shutdown().await;
    Ok(())
}

/// Guards the signing rules: bad HMAC or a stale timestamp is refused; v1 header works.
#[tokio::test]
async fn constellix_rejects_bad_signatures_and_stale_timestamps() -> TestResult {
    let sims = start().await?;
    let origin = get(&sims, System::Constellix).origin().to_owned();
    let k = keys_of(&sims, BOB)
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| anyhow::anyhow!("key"))?;
    let now = i64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000)?;
    let cases = [
        (
            rota_sims::constellix_token(&k.api_key, "not-the-secret", now),
            StatusCode::UNAUTHORIZED,
        ),
        (
            rota_sims::constellix_token(&k.api_key, &k.secret_key, now - 10 * 60 * 1000),
            StatusCode::UNAUTHORIZED,
        ),
        (
            rota_sims::constellix_token(&k.api_key, &k.secret_key, now),
            StatusCode::OK,
        ),
    ];
    for (tok, want) in cases {
        let r = http()
            .get(format!("{origin}/v1/domains"))
            .header("x-cns-security-token", tok)
            .send()
            .await?;
        assert_eq!(r.status(), want);
    }
    let r = http()
        .get(format!("{origin}/v4/domains"))
        .bearer_auth(token(&k))
        .send()
        .await?;
    for h in ["x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset"] {
        assert!(r.headers().contains_key(h), "{h}");
    }
    sims.shutdown().await;
    Ok(())
}

#[test]
fn constellix_token_matches_the_vendors_md_test_vector() {
    assert_eq!(
        rota_sims::constellix_token("test-api-key", "test-secret-key", 1_700_000_000_000),
        "test-api-key:OIgRNxR1O5qkbnG4eqUUDL95YwA=:1700000000000"
    );
}

/// The UI's Generate shows the secret once, and the key then works.
#[tokio::test]
async fn constellix_ui_generate_returns_a_working_key() -> TestResult {
    let sims = start().await?;
    let h = get(&sims, System::Constellix);
    let created = admin_post(h, "/admin/ui/users/103/apikeys", json!({"expiresInMonths": 18})).await?;
    let k = Key {
        id: u(&created, "/data/id")?,
        api_key: s(&created, "/data/apiKey")?,
        secret_key: s(&created, "/data/secretKey")?,
    };
    let (_, list) = call(h.origin(), &k, reqwest::Method::GET, "/v4/users/me/apikeys", None).await?;
    assert_eq!(list["data"][0]["id"], k.id);
    assert!(!list.to_string().contains(&k.secret_key));
    assert!(!h.state().to_string().contains(&k.secret_key));
    sims.shutdown().await;
    Ok(())
}

/// The portal path of the rollover, as the guided playbook's stand-ins drive
/// it: the profile lists keys without viewing a secret, Generate takes the
/// Add API Key window's option, a delete on the profile is logged like the
/// API's, and an integration gets the new key pasted in by hand.
#[tokio::test]
async fn constellix_portal_rollover_lists_generates_switches_and_deletes() -> TestResult {
    let sims = start().await?;
    let h = get(&sims, System::Constellix);
    let consumers = get(&sims, System::Consumers);
    let old = keys_of(&sims, BOB)
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| anyhow::anyhow!("bob has a key"))?;
    let profile = admin_get(h, "/admin/ui/users/102/apikeys").await?;
    assert_eq!(profile["data"].as_array().map(Vec::len), Some(1));
    assert_eq!(profile["data"][0]["id"], old.id);
    assert_eq!(profile["data"][0]["apiKey"], old.api_key.as_str());
    assert!(
        !profile.to_string().contains(&old.secret_key),
        "the list shows no secret"
    );

    let never = admin_post(h, "/admin/ui/users/102/apikeys", json!({"expiration": "never"})).await?;
    assert_eq!(never["data"]["expiresAt"], Value::Null);
    let new_id = u(&never, "/data/id")?;
    let bad = http()
        .post(format!("{}/admin/ui/users/103/apikeys", h.admin_origin()))
        .json(&json!({"expiration": "soon"}))
        .send()
        .await?;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    let ten = admin_post(h, "/admin/ui/users/103/apikeys", json!({"expiration": "10"})).await?;
    assert!(ten["data"]["expiresAt"].is_string(), "{ten}");

    let switched = admin_post(
        consumers,
        "/admin/ui/consumers/switch",
        json!({"vendor": "constellix", "from_key": old.api_key, "to_key_id": new_id.to_string()}),
    )
    .await?;
    assert_eq!(switched, json!({"switched": ["constellix-dns-sync"]}));
    let r = http()
        .delete(format!(
            "{}/admin/ui/users/102/apikeys/{}",
            h.admin_origin(),
            old.id
        ))
        .send()
        .await?;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let tick = admin_post(consumers, "/admin/tick", json!({})).await?;
    let dns = tick["calls"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["consumer"] == "constellix-dns-sync"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(dns["ok"], true, "the integration works on the pasted key: {tick}");

    let audit = h.state()["state"]["audit"].clone();
    let of = |id: u64| -> Vec<(String, String)> {
        audit
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["apiKeyId"] == id)
            .map(|e| {
                (
                    e["action"].as_str().unwrap_or("").to_owned(),
                    e["ip"].as_str().unwrap_or("").to_owned(),
                )
            })
            .collect()
    };
    assert_eq!(
        of(old.id),
        [
            ("create".to_owned(), "203.0.113.10".to_owned()),
            ("delete".to_owned(), "portal".to_owned())
        ]
    );
    assert_eq!(of(new_id), [("create".to_owned(), "portal".to_owned())]);
    let export = admin_get(
        h,
        &format!("/admin/ui/audit/apikeys?apiKeyIds={},{new_id}", old.id),
    )
    .await?;
    assert_eq!(export["counts"], json!({"create": 2, "view": 0, "delete": 1}));
    assert_eq!(export["data"].as_array().map(Vec::len), Some(3));
    let unknown = http()
        .post(format!("{}/admin/ui/consumers/switch", consumers.admin_origin()))
        .json(&json!({"vendor": "constellix", "from_key": "x", "to_key_id": "9999"}))
        .send()
        .await?;
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    sims.shutdown().await;
    Ok(())
}

/// Guards: the scale benchmark's extra users are independent targets, and
/// adding them moves no fixture id or value.
#[tokio::test]
async fn constellix_bench_users_each_hold_one_key_and_leave_the_fixtures_alone() -> TestResult {
    let plain = start().await?;
    let plain_view = admin_get(get(&plain, System::Constellix), "/admin/operator").await?;
    let sims = crate::start_with(rota_sims::SimsConfig {
        constellix_bench_users: 3,
        ..rota_sims::SimsConfig::default()
    })
    .await?;
    let h = get(&sims, System::Constellix);
    let view = admin_get(h, "/admin/operator").await?;
    let users = view["users"].as_array().cloned().unwrap_or_default();
    assert_eq!(users.len(), 6, "{view}");
    assert_eq!(
        users[..3],
        plain_view["users"].as_array().cloned().unwrap_or_default()[..],
        "fixture users and keys unchanged"
    );
    let third = &users[5];
    assert_eq!(third["email"], "bench-0003@acme-dns.example");
    let k = Key {
        id: u(third, "/apiKeys/0/id")?,
        api_key: s(third, "/apiKeys/0/apiKey")?,
        secret_key: s(third, "/apiKeys/0/secretKey")?,
    };
    let (st, listed) = call(h.origin(), &k, reqwest::Method::GET, "/v4/users/me/apikeys", None).await?;
    assert_eq!(st, StatusCode::OK, "{listed}");
    assert_eq!(listed["data"].as_array().map(Vec::len), Some(1), "{listed}");
    assert_eq!(u(&listed, "/data/0/id")?, k.id);
    // A reset seeds them again, with the same values.
    admin_post(h, "/admin/reset", json!({})).await?;
    assert_eq!(admin_get(h, "/admin/operator").await?, view);
    plain.shutdown().await;
    sims.shutdown().await;
    Ok(())
}
