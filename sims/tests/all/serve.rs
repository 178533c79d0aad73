//! Standalone mode, listeners, and fixture determinism.

use std::io::Write;

use reqwest::StatusCode;
use serde_json::Value;

use crate::{TestResult, get, http, start, start_with};
use rota_sims::{SimsConfig, SimsError, System};

/// A writer that hands each written chunk to the test.
struct Lines(tokio::sync::mpsc::UnboundedSender<Vec<u8>>);

impl Write for Lines {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.send(buf.to_vec()).map_err(std::io::Error::other)?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn serve_prints_one_origin_line_per_system() -> TestResult {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(rota_sims::serve_until(
        SimsConfig::default(),
        Lines(tx),
        async move {
            let _ = stop_rx.await;
            Ok::<(), SimsError>(())
        },
    ));
    let mut out = String::new();
    while out.lines().count() < System::ALL.len() || !out.ends_with('\n') {
        let chunk = rx
            .recv()
            .await
            .ok_or_else(|| anyhow::anyhow!("serve ended early: {out}"))?;
        out.push_str(&String::from_utf8(chunk)?);
    }
    let lines: Vec<&str> = out.lines().collect();
    for (line, system) in lines.iter().zip(System::ALL) {
        let mut parts = line.split(' ');
        assert_eq!(parts.next(), Some(system.name()));
        let api = parts
            .next()
            .and_then(|p| p.strip_prefix("api="))
            .ok_or_else(|| anyhow::anyhow!("{line}"))?;
        let admin = parts
            .next()
            .and_then(|p| p.strip_prefix("admin="))
            .ok_or_else(|| anyhow::anyhow!("{line}"))?;
        assert!(api.starts_with("http://127.0.0.1:") && admin.starts_with("http://127.0.0.1:"));
        let state: Value = http()
            .get(format!("{admin}/admin/state"))
            .send()
            .await?
            .json()
            .await?;
        assert_eq!(state["system"], system.name());
    }
    let _ = stop_tx.send(());
    server.await??;
    Ok(())
}

/// Guards: the admin API is on its own listener, never reachable via the vendor origin.
#[tokio::test]
async fn admin_listener_is_separate_from_the_api_listener() -> TestResult {
    let sims = start().await?;
    for h in sims.handles() {
        assert_ne!(h.origin(), h.admin_origin());
        let r = http().get(format!("{}/admin/state", h.origin())).send().await?;
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{:?}", h.system());
        let r = http()
            .get(format!("{}/admin/state", h.admin_origin()))
            .send()
            .await?;
        assert_eq!(r.status(), StatusCode::OK);
    }
    let plex = get(&sims, System::Plex);
    let r = http()
        .post(format!("{}/oauth2/token", plex.admin_origin()))
        .send()
        .await?;
    assert_eq!(
        r.status(),
        StatusCode::NOT_FOUND,
        "vendor routes are not on the admin listener"
    );
    let admin: Vec<String> = sims.admin_origins().into_values().collect();
    assert!(!sims.origins().values().any(|o| admin.contains(o)));
    // The operator view is the same in Rust and over HTTP.
    assert_eq!(plex.operator(), crate::admin_get(plex, "/admin/operator").await?);
    sims.shutdown().await;
    Ok(())
}

/// Guards: fixtures are deterministic for a seed (ids and secret fingerprints).
#[tokio::test]
async fn fixtures_are_deterministic_for_a_seed() -> TestResult {
    let ids = |v: &Value| {
        let st = &v["state"];
        (st["clientApplications"].clone(), st["portalKeys"].clone())
    };
    let a = start_with(SimsConfig {
        seed: 9,
        ..SimsConfig::default()
    })
    .await?;
    let b = start_with(SimsConfig {
        seed: 9,
        ..SimsConfig::default()
    })
    .await?;
    let c = start_with(SimsConfig {
        seed: 10,
        ..SimsConfig::default()
    })
    .await?;
    let (pa, pb, pc) = (
        get(&a, System::Plex).state(),
        get(&b, System::Plex).state(),
        get(&c, System::Plex).state(),
    );
    assert_eq!(ids(&pa).1, ids(&pb).1);
    let apps = |v: &Value| -> Vec<String> {
        v["state"]["clientApplications"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|a| a["clientId"].to_string())
            .collect()
    };
    assert_eq!(apps(&pa), apps(&pb));
    assert_ne!(apps(&pa), apps(&pc));
    let soar = |s: &rota_sims::Sims| get(s, System::Soar).state()["state"]["apiKeys"].clone();
    let strip = |v: Value| -> Vec<(Value, Value)> {
        v.as_array()
            .into_iter()
            .flatten()
            .map(|k| (k["api_key_id"].clone(), k["secretFingerprint"].clone()))
            .collect()
    };
    assert_eq!(strip(soar(&a)), strip(soar(&b)));
    for s in [a, b, c] {
        s.shutdown().await;
    }
    Ok(())
}

#[tokio::test]
async fn reset_restores_the_fixtures() -> TestResult {
    let sims = start().await?;
    let h = get(&sims, System::Constellix);
    let before = h.state()["state"]["apiKeys"].clone();
    http()
        .post(format!("{}/admin/ui/users/103/apikeys", h.admin_origin()))
        .json(&serde_json::json!({}))
        .send()
        .await?;
    assert_ne!(h.state()["state"]["apiKeys"], before);
    http()
        .post(format!("{}/admin/reset", h.admin_origin()))
        .send()
        .await?;
    assert_eq!(h.state()["state"]["apiKeys"], before);
    sims.shutdown().await;
    Ok(())
}
