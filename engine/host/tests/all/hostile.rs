//! Every hostile behaviour is stopped with an error naming plugin, action and
//! limit, and the next call still works.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use rota_core::ActionError;
use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn infinite_loop_hits_the_cpu_limit() {
    let f = fixture(both(vec![]), None);
    let t = Instant::now();
    let e = f.run("hostile", "spin", json!({})).await.err();
    assert!(
        matches!(&e, Some(ActionError::Limit(m)) if m.contains("hostile.spin") && m.contains("CPU limit of 300 ms")),
        "{e:?}"
    );
    assert!(t.elapsed().as_secs() < 5);
    f.still_works().await;
}

#[tokio::test]
async fn wall_clock_limit_stops_a_call() {
    let mut targets = both(vec![]);
    if let Some(t) = targets.get_mut("hostile") {
        t.limits.cpu_ms = 60_000;
        t.limits.wall_ms = 200;
    }
    let f = fixture(targets, None);
    let e = f.run("hostile", "spin", json!({})).await.err();
    assert!(
        matches!(&e, Some(ActionError::Limit(m)) if m.contains("hostile.spin") && m.contains("wall-clock limit of 200 ms")),
        "{e:?}"
    );
    f.still_works().await;
}

#[tokio::test]
async fn memory_bomb_hits_the_memory_limit() {
    let f = fixture(both(vec![]), None);
    let e = f.run("hostile", "memory-bomb", json!({})).await.err();
    assert!(
        matches!(&e, Some(ActionError::Limit(m)) if m.contains("hostile.memory-bomb") && m.contains("memory limit of 32 MiB")),
        "{e:?}"
    );
    f.still_works().await;
}

#[tokio::test]
async fn deep_recursion_is_stopped() {
    let f = fixture(both(vec![]), None);
    let e = f.run("hostile", "recurse", json!({})).await.err();
    assert!(
        matches!(&e, Some(ActionError::Limit(m) | ActionError::Internal(m))
            if m.contains("hostile.recurse") && (m.contains("call stack") || m.contains("stack overflow"))),
        "{e:?}"
    );
    f.still_works().await;
}

#[tokio::test]
async fn panic_is_a_trap_with_the_panic_message() {
    let f = fixture(both(vec![]), None);
    let e = f.run("hostile", "panic", json!({})).await.err();
    assert!(
        matches!(&e, Some(ActionError::Internal(m)) if m.contains("hostile.panic") && m.contains("panics on purpose")),
        "{e:?}"
    );
    f.still_works().await;
}

#[tokio::test]
async fn request_to_a_non_granted_origin_is_denied() {
    let (granted, _g) = serve().await;
    let (other, other_server) = serve().await;
    let f = fixture(both(vec![origin(granted)]), None);
    let (logs, _guard) = capture_logs();
    let e = f
        .run(
            "hostile",
            "fetch",
            json!({"url": format!("{}/json", origin(other))}),
        )
        .await
        .err();
    assert!(
        matches!(&e, Some(ActionError::Denied(m)) if m.contains("hostile.fetch") && m.contains(&origin(other)) && m.contains("not granted")),
        "{e:?}"
    );
    assert_eq!(other_server.hits(), 0);
    let logs = logs.text();
    assert!(
        logs.contains("plugin HTTP request denied")
            && logs.contains(&format!("refused_origin={}", origin(other))),
        "{logs}"
    );
    f.still_works().await;
}

#[tokio::test]
async fn undeclared_origin_is_denied_even_if_granted() {
    let f = fixture(both(vec!["https://example.com".into()]), None);
    let e = f
        .run("hostile", "fetch", json!({"url": "https://example.com/"}))
        .await
        .err();
    assert!(
        matches!(&e, Some(ActionError::Denied(m)) if m.contains("not declared")),
        "{e:?}"
    );
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let (granted, _g) = serve().await;
    let (other, other_server) = serve().await;
    let f = fixture(both(vec![origin(granted)]), None);
    let out = f
        .run(
            "hostile",
            "fetch",
            json!({"url": format!("{}/redirect/{}", origin(granted), other.port())}),
        )
        .await;
    assert_eq!(out.ok().map(|v| v["status"].clone()), Some(json!(302)));
    assert_eq!(
        other_server.hits(),
        0,
        "the redirect target must not be contacted"
    );
    f.still_works().await;
}

#[tokio::test]
async fn a_name_resolving_to_a_private_address_is_denied() {
    let private: IpAddr = [10, 0, 0, 7].into();
    let resolver = rota_host::StaticResolver::default().with("api.hostile.test", &[private]);
    let f = fixture(
        both(vec!["http://*.hostile.test:*".into()]),
        Some(Arc::new(resolver)),
    );
    let e = f
        .run(
            "hostile",
            "fetch",
            json!({"url": "http://api.hostile.test:8080/"}),
        )
        .await
        .err();
    assert!(
        matches!(&e, Some(ActionError::Denied(m)) if m.contains("hostile.fetch") && m.contains("10.0.0.7") && m.contains("internal address")),
        "{e:?}"
    );
    // Loopback by IP under a wildcard grant is refused too.
    let f = fixture(both(vec!["http://127.0.0.1:*".into()]), None);
    let e = f
        .run("hostile", "fetch", json!({"url": "http://127.0.0.1:9/"}))
        .await
        .err();
    assert!(
        matches!(&e, Some(ActionError::Denied(m)) if m.contains("internal address")),
        "{e:?}"
    );
    f.still_works().await;
}

#[tokio::test]
async fn huge_response_hits_the_size_limit() {
    let (addr, _s) = serve().await;
    let f = fixture(both(vec![origin(addr)]), None);
    let e = f
        .run(
            "hostile",
            "fetch",
            json!({"url": format!("{}/huge", origin(addr))}),
        )
        .await
        .err();
    assert!(
        matches!(&e, Some(ActionError::Internal(m)) if m.contains("hostile.fetch") && m.contains("64 KiB response limit")),
        "{e:?}"
    );
    f.still_works().await;
}

#[tokio::test]
async fn a_secret_not_bound_to_the_plugin_is_not_sent() {
    let (addr, server) = serve().await;
    let f = fixture(both(vec![origin(addr)]), None);
    let h = f.secret("vendor/admin", "TOP-SECRET", "echo", &[]);
    let e = f
        .run(
            "hostile",
            "fetch",
            json!({"url": format!("{}/json", origin(addr)), "token": h.to_json()}),
        )
        .await
        .err();
    assert!(
        matches!(&e, Some(ActionError::Denied(m)) if m.contains("hostile.fetch") && m.contains("vendor/admin") && m.contains("bound to echo")),
        "{e:?}"
    );
    assert_eq!(server.hits(), 0);
    // Bound to the plugin, but toward an origin not granted: refused before injection.
    let (other, other_server) = serve().await;
    let h2 = f.secret("vendor/hostile", "ALSO-SECRET", "hostile", &[]);
    let e = f
        .run(
            "hostile",
            "fetch",
            json!({"url": format!("{}/json", origin(other)), "token": h2.to_json()}),
        )
        .await
        .err();
    assert!(
        matches!(&e, Some(ActionError::Denied(m)) if m.contains("not granted")),
        "{e:?}"
    );
    assert_eq!(other_server.hits(), 0);
    f.still_works().await;
}

#[tokio::test]
async fn logging_a_secret_is_redacted_and_reveal_is_refused() -> TestResult {
    let f = fixture(both(vec![]), None);
    let h = f.secret("vendor/key", "HUNTER2-VALUE", "hostile", &[]);
    // The scope has handled the value (e.g. a captured key): the backstop knows it.
    f.scope.remember(&rota_core::Secret::new("HUNTER2-VALUE"));
    let (logs, _guard) = capture_logs();
    let out = f
        .run(
            "hostile",
            "log-secret",
            json!({"handle": h.to_json(), "text": "HUNTER2-VALUE"}),
        )
        .await?;
    assert_eq!(out, json!({"revealed": false}));
    let logs = logs.text();
    assert!(!logs.contains("HUNTER2-VALUE"), "{logs}");
    assert!(logs.contains("leaking <redacted>"), "{logs}");
    assert!(
        logs.contains("stdout leak <redacted>") && logs.contains("stderr leak <redacted>"),
        "{logs}"
    );
    assert!(logs.contains("may not reveal secrets"), "{logs}");
    f.still_works().await;
    Ok(())
}

#[tokio::test]
async fn reveal_works_only_when_granted() -> TestResult {
    let mut targets = both(vec![]);
    if let Some(t) = targets.get_mut("hostile") {
        t.reveal = true;
    }
    let f = fixture(targets, None);
    let h = f.secret("vendor/key", "VISIBLE", "hostile", &[]);
    let (logs, _guard) = capture_logs();
    let out = f
        .run(
            "hostile",
            "log-secret",
            json!({"handle": h.to_json(), "text": "x"}),
        )
        .await?;
    assert_eq!(out, json!({"revealed": true}));
    assert!(
        !logs.text().contains("VISIBLE"),
        "revealed values are still redacted in logs"
    );
    Ok(())
}

#[tokio::test]
async fn a_chatty_plugin_is_truncated_not_killed() -> TestResult {
    let f = fixture(both(vec![]), None);
    let (logs, _guard) = capture_logs();
    let out = f.run("hostile", "chatty", json!({})).await?;
    assert_eq!(out, json!({"printed": 64 * 16 * 1024}));
    let logs = logs.text();
    assert!(
        logs.contains("output beyond 64 KiB was dropped"),
        "{}",
        &logs[logs.len().saturating_sub(500)..]
    );
    assert!(logs.len() < 1 << 20, "the host kept only the capped output");
    f.still_works().await;
    Ok(())
}

#[tokio::test]
async fn a_request_flood_hits_the_request_limit() -> TestResult {
    let (addr, server) = serve().await;
    let mut targets = both(vec![origin(addr)]);
    if let Some(t) = targets.get_mut("hostile") {
        t.limits.requests = 5;
    }
    let f = fixture(targets, None);
    let e = f
        .run(
            "hostile",
            "flood",
            json!({"url": format!("{}/json", origin(addr))}),
        )
        .await
        .err();
    assert!(
        matches!(&e, Some(ActionError::Limit(m)) if m.contains("hostile.flood") && m.contains("limit of 5 HTTP requests")),
        "{e:?}"
    );
    assert_eq!(server.hits(), 5);
    f.still_works().await;
    Ok(())
}
