use rota_core::{ActionCatalog, ActionError, Basis};
use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn echo_round_trips_with_context() -> TestResult {
    let f = fixture(both(vec![]), None);
    let out = f.run("echo", "echo", json!({"message": "hi"})).await?;
    assert_eq!(
        out,
        json!({"message": "hi", "attempt": 1, "idempotency_key": "idem-1"})
    );
    assert_eq!(f.run("echo", "noop", json!({})).await?, json!({}));
    Ok(())
}

#[tokio::test]
async fn catalog_reads_manifests_without_running_plugins() {
    let f = fixture(both(vec![]), None);
    assert_eq!(f.host.plugins(), vec!["echo".to_owned(), "hostile".to_owned()]);
    let spec = f.host.lookup("echo", "create-key");
    assert_eq!(
        spec.as_ref().map(|s| s.captures.clone()),
        Some(vec!["secret".to_owned()])
    );
    assert_eq!(spec.as_ref().map(|s| s.read_only), Some(false));
    let signed = f.host.lookup("echo", "signed");
    assert_eq!(signed.as_ref().map(|s| s.basis), Some(Basis::Modeled));
    assert!(signed.is_some_and(|s| !f.host.is_enabled(&s)));
    assert!(f.host.lookup("echo", "nope").is_none());
}

#[tokio::test]
async fn input_is_validated_before_the_call() {
    let f = fixture(both(vec![]), None);
    let e = f.run("echo", "echo", json!({"message": 5})).await.err();
    assert!(
        matches!(&e, Some(ActionError::InvalidInput(m)) if m.contains("echo.echo") && m.contains("/message")),
        "{e:?}"
    );
    let e = f
        .run("echo", "get", json!({"url": "http://x", "token": "plain-text"}))
        .await
        .err();
    assert!(
        matches!(&e, Some(ActionError::InvalidInput(m)) if m.contains("/token") && m.contains("secret handle")),
        "{e:?}"
    );
}

#[tokio::test]
async fn output_is_validated_after_the_call() {
    let f = fixture(both(vec![]), None);
    let e = f.run("hostile", "bad-output", json!({})).await.err();
    assert!(
        matches!(&e, Some(ActionError::BadOutput(m)) if m.contains("hostile.bad-output") && m.contains("/ok")),
        "{e:?}"
    );
    f.still_works().await;
}

#[tokio::test]
async fn unknown_plugin_and_action() {
    let f = fixture(both(vec![]), None);
    let e = f.run("nope", "x", json!({})).await.err();
    assert!(
        matches!(&e, Some(ActionError::Internal(m)) if m.contains("\"nope\"") && m.contains("echo")),
        "{e:?}"
    );
    let e = f.run("echo", "nope", json!({})).await.err();
    assert!(
        matches!(&e, Some(ActionError::InvalidInput(m)) if m.contains("no action")),
        "{e:?}"
    );
}

#[tokio::test]
async fn modeled_actions_need_enabling() -> TestResult {
    let (addr, _server) = serve().await;
    let f = fixture(both(vec![origin(addr)]), None);
    let k = f.secret("k", "key", "echo", &[]);
    let input =
        json!({"url": format!("{}/echo", origin(addr)), "api_key": k.to_json(), "secret_key": k.to_json()});
    let e = f.run("echo", "signed", input.clone()).await.err();
    assert!(
        matches!(&e, Some(ActionError::Denied(m)) if m.contains("modeled")),
        "{e:?}"
    );

    let state = state_dir();
    let dir = std::path::Path::new(rota_host::test_plugins::ECHO)
        .parent()
        .ok_or("no dir")?;
    let host = rota_host::PluginHost::rehearsal(
        vec![dir.to_owned()],
        [("echo".to_owned(), vec![origin(addr)])].into_iter().collect(),
        state.path(),
    )?;
    assert!(
        host.lookup("echo", "signed")
            .is_some_and(|s| rota_core::ActionCatalog::is_enabled(&host, &s))
    );
    let out = rota_core::ActionRunner::invoke(&host, f.call("echo", "signed", input)).await?;
    assert_eq!(out, json!({"ok": true}));
    Ok(())
}

#[tokio::test]
async fn plugin_errors_are_typed() -> TestResult {
    let (addr, _server) = serve().await;
    let f = fixture(both(vec![origin(addr)]), None);
    for (code, kind) in [
        (401, "unauthorized"),
        (404, "not-found"),
        (409, "conflict"),
        (429, "rate-limited"),
        (503, "upstream"),
    ] {
        let e = f
            .run(
                "echo",
                "get",
                json!({"url": format!("{}/status/{code}", origin(addr))}),
            )
            .await
            .err();
        assert_eq!(e.as_ref().map(|e| e.kind()), Some(kind), "{code}: {e:?}");
    }
    Ok(())
}
