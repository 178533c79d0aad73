//! Fault injection: deterministic from a seed, per route, vendor-shaped,
//! never on the admin API.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::{TestResult, get, http, start, start_with};
use rota_sims::{FaultKind, FaultRule, FaultSettings, SimsConfig, System};

/// Outcome of one request as a short label.
async fn outcome(req: reqwest::RequestBuilder) -> String {
    match req.send().await {
        Err(_) => "dropped".into(),
        Ok(r) => {
            let st = r.status().as_u16();
            match r.bytes().await {
                Ok(_) => st.to_string(),
                Err(_) => format!("{st}-truncated"),
            }
        }
    }
}

fn mixed_rules() -> Vec<FaultRule> {
    vec![
        FaultRule::new(Some("GET"), "/v4/domains", 0.2, FaultKind::Status { status: 503 }),
        FaultRule::new(
            Some("GET"),
            "/v4/domains",
            0.2,
            FaultKind::RateLimit { retry_after_secs: 60 },
        ),
        FaultRule::new(Some("GET"), "/v4/domains", 0.15, FaultKind::Drop),
        FaultRule::new(Some("GET"), "/v4/domains", 0.15, FaultKind::Truncate),
    ]
}

/// Runs 40 signed calls against Constellix with the given fault seed.
async fn sequence(seed: u64) -> anyhow::Result<(Vec<String>, Vec<rota_sims::FaultEvent>)> {
    let mut config = SimsConfig {
        fault_seed: Some(seed),
        ..SimsConfig::default()
    };
    config.faults.insert(System::Constellix, mixed_rules());
    let sims = start_with(config).await?;
    let h = get(&sims, System::Constellix);
    let k = crate::constellix::keys_of(&sims, "bob@acme-dns.example")
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| anyhow::anyhow!("key"))?;
    let mut seen = Vec::new();
    for _ in 0..40 {
        // A fresh client per call: a dropped connection must not affect the next.
        let c = reqwest::Client::new();
        seen.push(
            outcome(
                c.get(format!("{}/v4/domains", h.origin()))
                    .bearer_auth(crate::constellix::token(&k)),
            )
            .await,
        );
    }
    let log = h.fault_log();
    sims.shutdown().await;
    Ok((seen, log))
}

/// Guards: same seed and same requests give the same faults; another seed, others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_are_reproducible_from_the_seed() -> TestResult {
    let (a, log_a) = sequence(42).await?;
    let (b, log_b) = sequence(42).await?;
    let (c, _) = sequence(43).await?;
    assert_eq!(a, b);
    assert_eq!(log_a, log_b);
    assert_ne!(a, c, "a different seed gives different faults");
    for kind in ["200", "503", "429", "dropped", "200-truncated"] {
        assert!(a.iter().any(|o| o == kind), "{kind} occurs in {a:?}");
    }
    assert_eq!(log_a.len(), a.iter().filter(|o| *o != "200").count());
    Ok(())
}

/// Guards: injected errors and 429s use each vendor's envelope and rate-limit headers.
#[tokio::test]
async fn faults_use_the_vendor_error_shapes() -> TestResult {
    let sims = start().await?;
    let every = |kind| FaultSettings {
        seed: 7,
        rules: vec![FaultRule::new(None, "/**", 1.0, kind)],
    };
    let cases: [(System, &str, FaultKind, Value); 4] = [
        (
            System::Plex,
            "/mdm/v1/parts",
            FaultKind::Status { status: 500 },
            json!("REQUEST_PROCESSING_ERROR"),
        ),
        (
            System::Soar,
            "/rest/session",
            FaultKind::Status { status: 503 },
            json!(false),
        ),
        (
            System::Plytix,
            "/api/v1/products/search",
            FaultKind::Status { status: 502 },
            json!("InternalServerError"),
        ),
        (
            System::Constellix,
            "/v4/domains",
            FaultKind::Status { status: 500 },
            json!("Injected server error"),
        ),
    ];
    for (system, path, kind, want) in cases {
        let h = get(&sims, system);
        h.set_faults(every(kind));
        let r = http().get(format!("{}{path}", h.origin())).send().await?;
        assert!(r.status().is_server_error());
        let body: Value = r.json().await?;
        let got = match system {
            System::Plex => body["code"].clone(),
            System::Soar => body["success"].clone(),
            System::Plytix => body["errors"][0]["name"].clone(),
            _ => body["message"].clone(),
        };
        assert_eq!(got, want, "{system:?}: {body}");
    }
    // 429: Retry-After scaled (an hour is a second by default), vendor headers.
    let c = get(&sims, System::Constellix);
    c.set_faults(every(FaultKind::RateLimit {
        retry_after_secs: 3600,
    }));
    let r = http().get(format!("{}/v4/domains", c.origin())).send().await?;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        r.headers().get("retry-after").and_then(|v| v.to_str().ok()),
        Some("1")
    );
    assert_eq!(
        r.headers()
            .get("x-ratelimit-remaining")
            .and_then(|v| v.to_str().ok()),
        Some("0")
    );
    let p = get(&sims, System::Plytix);
    p.set_faults(every(FaultKind::RateLimit {
        retry_after_secs: 7200,
    }));
    let r = http()
        .post(format!("{}/auth/api/get-token", p.origin()))
        .json(&json!({}))
        .send()
        .await?;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        r.headers().get("retry-after").and_then(|v| v.to_str().ok()),
        Some("2")
    );
    sims.shutdown().await;
    Ok(())
}

/// Guards: latency delays but answers; faults follow the route pattern and method only.
#[tokio::test]
async fn faults_apply_per_route_and_method() -> TestResult {
    let sims = start().await?;
    let h = get(&sims, System::Plex);
    h.set_faults(FaultSettings {
        seed: 1,
        rules: vec![
            FaultRule::new(
                Some("DELETE"),
                "/platform/v1/client-applications/{id}/secrets/{secret}",
                1.0,
                FaultKind::Status { status: 503 },
            ),
            FaultRule::new(Some("GET"), "/mdm/**", 1.0, FaultKind::Latency { ms: 150 }),
        ],
    });
    let r = http()
        .delete(format!(
            "{}/platform/v1/client-applications/a/secrets/b",
            h.origin()
        ))
        .send()
        .await?;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let r = http()
        .get(format!("{}/platform/v1/client-applications", h.origin()))
        .send()
        .await?;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "other routes are untouched");
    let t0 = std::time::Instant::now();
    let r = http().get(format!("{}/mdm/v1/parts", h.origin())).send().await?;
    assert!(t0.elapsed() >= std::time::Duration::from_millis(150));
    assert_eq!(
        r.status(),
        StatusCode::UNAUTHORIZED,
        "latency, then the normal answer"
    );
    sims.shutdown().await;
    Ok(())
}

/// Guards: faults never apply to the admin API, and can be set through it.
#[tokio::test]
async fn faults_never_apply_to_the_admin_api() -> TestResult {
    let sims = start().await?;
    let h = get(&sims, System::Soar);
    let r = http()
        .put(format!("{}/admin/faults", h.admin_origin()))
        .json(&json!({"seed": 3, "rules": [{"path": "/**", "rate": 1.0, "kind": "drop"}]}))
        .send()
        .await?;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        http()
            .get(format!("{}/rest/session", h.origin()))
            .send()
            .await
            .is_err(),
        "vendor API drops"
    );
    let r = http()
        .get(format!("{}/admin/state", h.admin_origin()))
        .send()
        .await?;
    assert_eq!(r.status(), StatusCode::OK);
    let faults: Value = http()
        .get(format!("{}/admin/faults", h.admin_origin()))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(faults["log"].as_array().map(Vec::len), Some(1));
    assert_eq!(faults["log"][0]["kind"], "drop");
    sims.shutdown().await;
    Ok(())
}

/// Guards: every simulator's faults replay identically for a seed (the fault
/// layer is shared, but each system must be wired to it).
#[tokio::test]
async fn faults_are_reproducible_on_every_simulator() -> TestResult {
    let sims = start().await?;
    for h in sims.handles() {
        let run = |seed: u64| async move {
            h.set_faults(FaultSettings {
                seed,
                rules: vec![FaultRule::new(
                    Some("GET"),
                    "/probe/{n}",
                    0.5,
                    FaultKind::Status { status: 503 },
                )],
            });
            let mut seen = Vec::new();
            for n in 0..24 {
                let r = http().get(format!("{}/probe/{n}", h.origin())).send().await?;
                seen.push(r.status().as_u16());
            }
            anyhow::Ok(seen)
        };
        let (a, b, c) = (run(5).await?, run(5).await?, run(6).await?);
        assert_eq!(a, b, "{:?}", h.system());
        assert_ne!(a, c, "{:?}", h.system());
        assert!(a.contains(&503) && a.contains(&404), "{:?}: {a:?}", h.system());
    }
    sims.shutdown().await;
    Ok(())
}
