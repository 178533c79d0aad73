//! HTTP through the host: injection, capture, ephemeral tokens.

use std::collections::BTreeMap;

use rota_core::{ActionCall, ActionError, ActionRunner, CaptureTarget, SecretRef, SecretStore};
use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn bearer_injection_reaches_the_vendor() -> TestResult {
    let (addr, server) = serve().await;
    let f = fixture(both(vec![origin(addr)]), None);
    let h = f.secret("vendor/token", "BEARER-VALUE", "echo", &[]);
    let out = f
        .run(
            "echo",
            "get",
            json!({"url": format!("{}/json", origin(addr)), "token": h.to_json()}),
        )
        .await?;
    assert_eq!(out["status"], json!(200));
    assert_eq!(out["body"], json!({"ok": true}));
    assert_eq!(
        server.header("authorization").as_deref(),
        Some("Bearer BEARER-VALUE")
    );
    assert_eq!(server.hits(), 1);
    Ok(())
}

/// The echo plugin's create-key at the test server, its secret captured into
/// `vendor/acme/new-key` (sent on to `send_to`).
fn create_key(f: &Fixture, url: &str, admin: &SecretRef, send_to: &[&str]) -> ActionCall {
    let mut call = f.call(
        "echo",
        "create-key",
        json!({"url": url, "id": "acct", "admin": admin.to_json()}),
    );
    call.captures = BTreeMap::from([(
        "secret".to_owned(),
        CaptureTarget {
            name: "vendor/acme/new-key".into(),
            send_to: send_to.iter().map(|s| (*s).to_owned()).collect(),
            ephemeral: false,
        },
    )]);
    call
}

#[tokio::test]
async fn create_key_captures_into_the_step_target() -> TestResult {
    let (addr, _server) = serve().await;
    let f = fixture(both(vec![origin(addr)]), None);
    let admin = f.secret("vendor/admin", "admin-token", "echo", &[]);
    let call = create_key(&f, &format!("{}/keys", origin(addr)), &admin, &["other"]);
    let out = f.host.invoke(call).await?;
    assert_eq!(out["key_id"], json!("key-1"));
    let handle = SecretRef::from_json(&out["secret"]).ok_or("no handle in output")?;
    assert_eq!(handle.name, "vendor/acme/new-key");
    // Stored durably, pending, with provenance; never in the output body.
    assert_eq!(f.store.get(&handle)?.expose(), "NEW-SECRET-VALUE");
    assert!(out["body"].get("secret").is_none(), "{out}");
    assert!(!out.to_string().contains("NEW-SECRET-VALUE"));
    let versions = f.store.versions("vendor/acme/new-key")?;
    assert_eq!(
        versions.first().and_then(|v| v.provenance.source.clone()),
        Some("echo".to_owned())
    );
    assert!(
        f.scope
            .binding("vendor/acme/new-key")
            .is_some_and(|b| b.send_to.contains("other"))
    );
    Ok(())
}

/// Regression: an error answer to a capturing call carries no secret; the
/// plugin sees the vendor's status (here 401) as its typed error, instead of
/// a capture failure that hides it, and nothing is stored. A capture the
/// step does not map fails before the request is sent, so no vendor ever
/// mints a secret rota could not keep.
#[tokio::test]
async fn an_error_answer_is_not_captured_and_a_bad_capture_is_not_sent() -> TestResult {
    let (addr, server) = serve().await;
    let f = fixture(both(vec![origin(addr)]), None);
    let wrong = f.secret("vendor/wrong-admin", "wrong-token", "echo", &[]);
    let keys = format!("{}/keys", origin(addr));
    let e = f.host.invoke(create_key(&f, &keys, &wrong, &[])).await.err();
    assert!(
        matches!(&e, Some(ActionError::Unauthorized(m)) if m.contains("bad credentials")),
        "{e:?}"
    );
    assert!(
        f.store
            .versions("vendor/acme/new-key")
            .map_or(true, |v| v.is_empty()),
        "nothing was stored"
    );
    let seen = server.hits();
    let admin = f.secret("vendor/admin", "admin-token", "echo", &[]);
    let unmapped = f
        .run(
            "echo",
            "create-key",
            json!({"url": format!("{}/keys", origin(addr)), "id": "acct", "admin": admin.to_json()}),
        )
        .await
        .err();
    assert!(
        matches!(&unmapped, Some(ActionError::Internal(m)) if m.contains("maps no secret")),
        "{unmapped:?}"
    );
    assert_eq!(server.hits(), seen, "the unmapped capture was never sent");
    Ok(())
}

#[tokio::test]
async fn a_capture_the_step_did_not_map_fails() {
    let (addr, _server) = serve().await;
    let f = fixture(both(vec![origin(addr)]), None);
    let admin = f.secret("vendor/admin", "admin-token", "echo", &[]);
    let e = f
        .run(
            "echo",
            "create-key",
            json!({"url": format!("{}/keys", origin(addr)), "id": "acct", "admin": admin.to_json()}),
        )
        .await
        .err();
    assert!(
        matches!(&e, Some(ActionError::Internal(m)) if m.contains("maps no secret")),
        "{e:?}"
    );
    // A plugin cannot pick a capture name it did not declare.
    let e = f
        .run(
            "hostile",
            "capture-undeclared",
            json!({"url": format!("{}/keys", origin(addr))}),
        )
        .await
        .err();
    assert!(
        matches!(&e, Some(ActionError::Internal(m)) if m.contains("not declared")),
        "{e:?}"
    );
}

#[tokio::test]
async fn signed_named_and_json_body_injection() -> TestResult {
    use base64::Engine as _;
    use hmac::Mac as _;
    let (addr, server) = serve().await;
    let mut t = target(vec![origin(addr)]);
    t.modeled = rota_host::Modeled::Enabled;
    let f = fixture(BTreeMap::from([("echo", t)]), None);
    let api = f.secret("constellix/api", "API-KEY", "echo", &[]);
    let sk = f.secret("constellix/secret", "SECRET-KEY", "echo", &[]);
    let out = f
        .run(
            "echo",
            "signed",
            json!({"url": format!("{}/echo", origin(addr)), "api_key": api.to_json(), "secret_key": sk.to_json()}),
        )
        .await?;
    assert_eq!(out, json!({"ok": true}));
    let token = server.header("x-cns-security-token").ok_or("no token header")?;
    let parts: Vec<&str> = token.split(':').collect();
    assert_eq!(parts.len(), 3, "{token}");
    assert_eq!(parts[0], "API-KEY");
    let mut mac = hmac::Hmac::<sha1::Sha1>::new_from_slice(b"SECRET-KEY")?;
    mac.update(parts[2].as_bytes());
    let want = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    assert_eq!(parts[1], want);
    assert_eq!(server.header("x-api-key").as_deref(), Some("Key API-KEY"));
    assert_eq!(server.body(), json!({"key": "API-KEY"}));
    Ok(())
}

#[tokio::test]
async fn a_vendor_echoing_a_secret_never_reaches_the_output() -> TestResult {
    let (addr, _server) = serve().await;
    let f = fixture(both(vec![origin(addr)]), None);
    let h = f.secret("vendor/token", "ECHOED-VALUE", "echo", &[]);
    // /leak answers with the Authorization header it got; `get` returns the body.
    let e = f
        .run(
            "echo",
            "get",
            json!({"url": format!("{}/leak", origin(addr)), "token": h.to_json()}),
        )
        .await
        .err();
    assert!(
        matches!(&e, Some(ActionError::BadOutput(m)) if m.contains("echo.get") && m.contains("secret value")),
        "{e:?}"
    );
    Ok(())
}

#[tokio::test]
async fn ephemeral_tokens_live_for_the_run_only() -> TestResult {
    let (addr, _server) = serve().await;
    let f = fixture(both(vec![origin(addr)]), None);
    let pw = f.secret("plytix/password", "pw", "echo", &[]);
    let before = f.store.list()?.len();
    let out = f
        .run(
            "echo",
            "session",
            json!({"url": origin(addr), "password": pw.to_json()}),
        )
        .await?;
    assert_eq!(out, json!({"authenticated": true}));
    assert_eq!(f.store.list()?.len(), before, "ephemeral tokens are never stored");
    assert_eq!(f.scope.redact("SESSION-JWT"), "<redacted>");
    Ok(())
}

/// Regression: an error answer to a capturing call was searched for the
/// secret, so a 503 or a 429 became a non-retryable capture failure.
#[tokio::test]
async fn an_error_answer_is_not_captured_from_and_keeps_its_status() -> TestResult {
    let (addr, _server) = serve().await;
    let f = fixture(both(vec![origin(addr)]), None);
    let admin = f.secret("vendor/admin", "admin-token", "echo", &[]);
    let call = create_key(&f, &format!("{}/status/503", origin(addr)), &admin, &[]);
    let e = f.host.invoke(call).await.err();
    assert!(
        matches!(&e, Some(ActionError::Upstream { status: 503, .. })),
        "{e:?}"
    );
    assert!(
        f.store.versions("vendor/acme/new-key").is_err(),
        "nothing was stored under the capture's name"
    );
    Ok(())
}
