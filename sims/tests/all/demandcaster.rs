//! DemandCaster: updating the Plex PCN connection (second half of seed 000).

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::plex::Portal;
use crate::{TestResult, admin_get, get, http, s, start, u};
use rota_sims::{FaultKind, FaultRule, FaultSettings, System};

struct Dc {
    origin: String,
    cookie: String,
}

impl Dc {
    async fn login(sims: &rota_sims::Sims) -> anyhow::Result<Dc> {
        let h = get(sims, System::DemandCaster);
        let op = admin_get(h, "/admin/operator").await?;
        let r = http()
            .post(format!("{}/api/session", h.origin()))
            .json(
                &json!({"username": s(&op, "/users/0/username")?, "password": s(&op, "/users/0/password")?}),
            )
            .send()
            .await?;
        anyhow::ensure!(r.status() == StatusCode::OK, "login: {}", r.status());
        let cookie = r
            .headers()
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(str::to_owned)
            .ok_or_else(|| anyhow::anyhow!("no session cookie"))?;
        Ok(Dc {
            origin: h.origin().to_owned(),
            cookie,
        })
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<(StatusCode, Value)> {
        let mut req = http()
            .request(method, format!("{}{path}", self.origin))
            .header("Cookie", &self.cookie);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await?;
        let st = r.status();
        Ok((st, r.json().await.unwrap_or(Value::Null)))
    }

    /// Enters the Plex business node and returns the PCN 123456 connection id.
    async fn enter_and_find_pcn(&self) -> anyhow::Result<u64> {
        let (st, _) = self
            .send(
                reqwest::Method::POST,
                "/api/business-nodes/1042/enter",
                Some(json!({"confirm": true})),
            )
            .await?;
        anyhow::ensure!(st == StatusCode::OK, "enter: {st}");
        let (_, pcns) = self
            .send(reqwest::Method::GET, "/api/datahub/plex/pcns", None)
            .await?;
        let pcn = pcns
            .as_array()
            .and_then(|a| a.iter().find(|p| p["pcn"] == "123456"))
            .ok_or_else(|| anyhow::anyhow!("no PCN 123456 in {pcns}"))?;
        u(pcn, "/id")
    }
}

/// Resets the Plex secret (delete expired, add new) and returns (client id, new secret).
async fn reset_plex_secret(sims: &rota_sims::Sims) -> anyhow::Result<(String, String)> {
    let p = Portal::of(sims).await?;
    let app = p.demandcaster_app().await?;
    let (_, created) = p
        .post(
            &format!("/platform/v1/client-applications/{app}/secrets"),
            json!({}),
        )
        .await?;
    Ok((app, s(&created, "/secret")?))
}

/// Runs on the multi-thread runtime too, as `rota run --rehearse` does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demandcaster_seed_procedure_happy_path() -> TestResult {
    let sims = start().await?;
    let (client_id, secret) = reset_plex_secret(&sims).await?;
    let dc = Dc::login(&sims).await?;
    let (st, nodes) = dc.send(reqwest::Method::GET, "/api/business-nodes", None).await?;
    assert_eq!(st, StatusCode::OK);
    assert!(
        nodes
            .as_array()
            .is_some_and(|n| n.iter().any(|n| n["id"] == 1042 && n["enterUrl"].is_string()))
    );
    let id = dc.enter_and_find_pcn().await?;
    let (st, updated) = dc
        .send(
            reqwest::Method::PUT,
            &format!("/api/datahub/plex/pcns/{id}"),
            Some(json!({"clientId": client_id, "clientSecret": secret})),
        )
        .await?;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(updated["hasSecret"], true);
    assert_eq!(updated["clientId"], client_id.as_str());
    let (st, test) = dc
        .send(
            reqwest::Method::POST,
            &format!("/api/datahub/plex/pcns/{id}/test"),
            None,
        )
        .await?;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(test["ok"], true, "{test}");
    sims.shutdown().await;
    Ok(())
}

/// Guards seed rule: entering a business node needs the confirmation.
#[tokio::test]
async fn demandcaster_entering_a_business_node_requires_the_confirmation_flag() -> TestResult {
    let sims = start().await?;
    let dc = Dc::login(&sims).await?;
    for body in [None, Some(json!({})), Some(json!({"confirm": false}))] {
        let (st, r) = dc
            .send(reqwest::Method::POST, "/api/business-nodes/1042/enter", body)
            .await?;
        assert_eq!(st, StatusCode::PRECONDITION_REQUIRED);
        assert_eq!(r["error"]["code"], "CONFIRMATION_REQUIRED");
        assert_eq!(
            r["error"]["message"],
            "Are you sure you want to enter this company?"
        );
    }
    // Not entered: the Data Hub is out of reach.
    let (st, _) = dc
        .send(reqwest::Method::GET, "/api/datahub/plex/pcns", None)
        .await?;
    assert_eq!(st, StatusCode::FORBIDDEN);
    dc.enter_and_find_pcn().await?;
    sims.shutdown().await;
    Ok(())
}

/// Signing out ends the session (the cookie no longer works, and the admin
/// state shows no session left), and signing out twice is harmless.
#[tokio::test]
async fn demandcaster_sign_out_ends_the_session() -> TestResult {
    let sims = start().await?;
    let h = get(&sims, System::DemandCaster);
    let before = admin_get(h, "/admin/state").await?;
    let dc = Dc::login(&sims).await?;
    let during = admin_get(h, "/admin/state").await?;
    assert_eq!(
        during["state"]["sessions"].as_array().map(Vec::len),
        Some(1),
        "{during}"
    );
    for _ in 0..2 {
        let (st, _) = dc.send(reqwest::Method::DELETE, "/api/session", None).await?;
        assert_eq!(st, StatusCode::NO_CONTENT);
    }
    let (st, _) = dc.send(reqwest::Method::GET, "/api/business-nodes", None).await?;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let after = admin_get(h, "/admin/state").await?;
    assert_eq!(after["state"], before["state"]);
    sims.shutdown().await;
    Ok(())
}

/// Guards seed rule: the connection test really calls Plex over HTTP with the stored credentials.
#[tokio::test]
async fn demandcaster_connection_test_really_calls_plex() -> TestResult {
    let sims = start().await?;
    let plex = get(&sims, System::Plex);
    let dc = Dc::login(&sims).await?;
    let id = dc.enter_and_find_pcn().await?;
    let path = format!("/api/datahub/plex/pcns/{id}/test");
    let test = || dc.send(reqwest::Method::POST, &path, None);

    // The fixture credential works: Plex issued a token for it.
    let tokens_before = u(&plex.state(), "/state/activeTokens")?;
    assert_eq!(test().await?.1["ok"], true);
    assert_eq!(u(&plex.state(), "/state/activeTokens")?, tokens_before + 1);

    // A fault on Plex's token endpoint is seen by the test.
    plex.set_faults(FaultSettings {
        seed: 1,
        rules: vec![FaultRule::new(
            Some("POST"),
            "/oauth2/token",
            1.0,
            FaultKind::Status { status: 503 },
        )],
    });
    let (_, r) = test().await?;
    assert_eq!(r["ok"], false);
    assert_eq!(r["plexStatus"], 503);
    assert_eq!(
        plex.fault_log().len(),
        1,
        "the request reached the Plex simulator"
    );
    plex.set_faults(FaultSettings::default());

    // A wrong secret is refused by Plex, with Plex's message.
    dc.send(
        reqwest::Method::PUT,
        &format!("/api/datahub/plex/pcns/{id}"),
        Some(json!({"clientSecret": "wrong"})),
    )
    .await?;
    let (_, r) = test().await?;
    assert_eq!(r["ok"], false);
    assert_eq!(r["plexStatus"], 401);
    assert_eq!(r["message"], "Invalid client secret");
    sims.shutdown().await;
    Ok(())
}

/// Guards: the stored Client Secret is never echoed, by the API or admin state.
#[tokio::test]
async fn demandcaster_client_secret_is_never_echoed() -> TestResult {
    let sims = start().await?;
    let (_, secret) = reset_plex_secret(&sims).await?;
    let dc = Dc::login(&sims).await?;
    let id = dc.enter_and_find_pcn().await?;
    let (_, put) = dc
        .send(
            reqwest::Method::PUT,
            &format!("/api/datahub/plex/pcns/{id}"),
            Some(json!({"clientSecret": secret})),
        )
        .await?;
    let (_, one) = dc
        .send(
            reqwest::Method::GET,
            &format!("/api/datahub/plex/pcns/{id}"),
            None,
        )
        .await?;
    let (_, all) = dc
        .send(reqwest::Method::GET, "/api/datahub/plex/pcns", None)
        .await?;
    for v in [put, one, all, get(&sims, System::DemandCaster).state()] {
        assert!(!v.to_string().contains(&secret), "secret echoed in {v}");
    }
    sims.shutdown().await;
    Ok(())
}

/// Guards: once Plex no longer accepts the secret DemandCaster holds, its sync records downtime.
#[tokio::test]
async fn demandcaster_sync_records_downtime_when_its_plex_secret_expires() -> TestResult {
    let sims = start().await?;
    let dc = get(&sims, System::DemandCaster);
    let first = dc.tick().await;
    assert!(
        first["sync"]
            .as_array()
            .is_some_and(|a| a.iter().all(|e| e["ok"] == true)),
        "{first}"
    );
    // The secret DemandCaster holds is valid for 14 more days.
    get(&sims, System::Plex).set_clock_offset_secs(15 * 86_400);
    let second = dc.tick().await;
    let pcn1 = second["sync"]
        .as_array()
        .and_then(|a| a.iter().find(|e| e["pcnId"] == 1))
        .cloned()
        .unwrap_or_default();
    assert_eq!(pcn1["ok"], false, "{second}");
    assert_eq!(pcn1["plexStatus"], 401);
    sims.shutdown().await;
    Ok(())
}

/// The guided path's stand-ins: the node's row, the edit page's Save (with
/// the secret pasted from Plex's New Secret box) and the test button.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demandcaster_ui_edit_pastes_the_plex_secret_and_tests_it() -> TestResult {
    let sims = start().await?;
    let dc = get(&sims, System::DemandCaster);
    let node = admin_get(dc, "/admin/ui/business-nodes/1042").await?;
    assert_eq!(node["name"], "Acme Manufacturing");
    let p = Portal::of(&sims).await?;
    let app = p.demandcaster_app().await?;
    let created = crate::admin_post(
        get(&sims, System::Plex),
        &format!("/admin/ui/client-applications/{app}/secrets"),
        json!({}),
    )
    .await?;
    let secret_id = s(&created, "/id")?;
    let edit = |body: Value| {
        http()
            .put(format!(
                "{}/admin/ui/business-nodes/1042/pcns/123456",
                dc.admin_origin()
            ))
            .json(&body)
            .send()
    };
    let r = edit(json!({"clientId": app, "pasteFromPlex": {"clientId": app, "secretId": secret_id}})).await?;
    assert_eq!(r.status(), StatusCode::OK);
    let saved: Value = r.json().await?;
    assert_eq!(saved["hasSecret"], true);
    assert!(
        !saved.to_string().contains(&s(&created, "/secret")?),
        "never echoed"
    );
    let state = dc.state();
    assert_eq!(
        state["state"]["pcns"][0]["clientSecretFingerprint"],
        get(&sims, System::Plex).state()["state"]["clientApplications"][0]["secrets"][2]["fingerprint"],
        "DemandCaster holds the pasted Plex secret: {state}"
    );
    let missing = edit(json!({"pasteFromPlex": {"clientId": app, "secretId": "nope"}})).await?;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    let test = http()
        .post(format!(
            "{}/admin/ui/business-nodes/1042/pcns/123456/test",
            dc.admin_origin()
        ))
        .send()
        .await?;
    let test: Value = test.json().await?;
    assert_eq!(test["ok"], true, "{test}");
    let other_node = edit(json!({})).await?;
    assert_eq!(
        other_node.status(),
        StatusCode::OK,
        "an empty save changes nothing"
    );
    let wrong = http()
        .put(format!(
            "{}/admin/ui/business-nodes/1043/pcns/123456",
            dc.admin_origin()
        ))
        .json(&json!({}))
        .send()
        .await?;
    assert_eq!(
        wrong.status(),
        StatusCode::NOT_FOUND,
        "PCN 123456 is not in node 1043"
    );
    sims.shutdown().await;
    Ok(())
}
