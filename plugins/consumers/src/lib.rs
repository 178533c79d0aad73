//! The consumer registry plugin: which integrations hold which vendor
//! credential, switching one to a new credential, and checking it works.
//!
//! Design decision: the registry only ever sees the key ID in clear; the
//! secret half of a credential reaches it as a handle the host injects into
//! the request body, so this plugin never holds a secret value.

use rota_plugin_sdk::secrets::Handle;
use rota_plugin_sdk::{Context, Error, Value, http, json};
use serde::{Deserialize, Serialize};

rota_plugin_sdk::plugin! {
    manifest: "rota-plugin.json",
    actions: {
        "list-consumers" => list_consumers,
        "set-credential" => set_credential,
        "verify" => verify,
    },
}

/// The registry's field names for the key half of a credential, by vendor.
const KEY_FIELDS: &[&str] = &["api_key", "api_key_id", "client_id"];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListIn {
    vendor: Option<String>,
    key: Option<String>,
}

#[derive(Serialize)]
struct Consumer {
    id: String,
    vendor: String,
    key: String,
    credential_updated_at: Option<String>,
    failed_calls: u64,
}

fn path_segment(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn key_of(credential: &Value) -> String {
    KEY_FIELDS
        .iter()
        .find_map(|f| credential.get(*f).and_then(Value::as_str))
        .unwrap_or_default()
        .to_owned()
}

fn list_consumers(ctx: &Context, input: ListIn) -> Result<Value, Error> {
    let resp = http::get(&ctx.url("/v1/consumers")?)
        .header("accept", "application/json")
        .send()?
        .error_for_status()?;
    let all: Vec<Value> = resp.json()?;
    let mut consumers = Vec::new();
    for c in &all {
        let text = |f: &str| c.get(f).and_then(Value::as_str).unwrap_or_default().to_owned();
        let credential = c.get("credential").cloned().unwrap_or(Value::Null);
        let consumer = Consumer {
            id: text("id"),
            vendor: text("vendor"),
            key: key_of(&credential),
            credential_updated_at: c
                .get("credentialUpdatedAt")
                .and_then(Value::as_str)
                .map(str::to_owned),
            failed_calls: c.get("failedCalls").and_then(Value::as_u64).unwrap_or(0),
        };
        if consumer.id.is_empty() {
            return Err(Error::Internal(format!(
                "the registry listed a consumer without an id: {c}"
            )));
        }
        let vendor_ok = input.vendor.as_deref().is_none_or(|v| v == consumer.vendor);
        let key_ok = input.key.as_deref().is_none_or(|k| k == consumer.key);
        if vendor_ok && key_ok {
            consumers.push(consumer);
        }
    }
    let ids: Vec<&str> = consumers.iter().map(|c| c.id.as_str()).collect();
    Ok(json!({"ids": ids, "consumers": consumers}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetIn {
    consumer: String,
    key_field: String,
    key: String,
    secret_field: String,
    secret: Handle,
}

fn set_credential(ctx: &Context, input: SetIn) -> Result<Value, Error> {
    let url = ctx.url(&format!(
        "/v1/consumers/{}/credential",
        path_segment(&input.consumer)
    ))?;
    let mut body = serde_json::Map::new();
    body.insert(input.key_field.clone(), json!(input.key));
    body.insert(input.secret_field.clone(), json!(input.secret));
    let resp = http::put(&url)
        .json(&Value::Object(body))?
        .json_secret(&input.secret)
        .send()?
        .error_for_status()?;
    let answer: Value = resp.json()?;
    let held = answer.get("credential").map(key_of).unwrap_or_default();
    if held != input.key {
        return Err(Error::Internal(format!(
            "consumer {} answered with key {held:?}, not the {:?} it was given",
            input.consumer, input.key
        )));
    }
    Ok(json!({
        "consumer": input.consumer,
        "key": held,
        "credential_updated_at": answer.get("credentialUpdatedAt").cloned().unwrap_or(Value::Null),
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VerifyIn {
    consumer: String,
}

fn verify(ctx: &Context, input: VerifyIn) -> Result<Value, Error> {
    let url = ctx.url(&format!("/v1/consumers/{}/check", path_segment(&input.consumer)))?;
    let resp = http::post(&url).send()?.error_for_status()?;
    let answer: Value = resp.json()?;
    let message = answer
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    if answer.get("ok") == Some(&Value::Bool(true)) {
        return Ok(json!({"consumer": input.consumer, "ok": true, "message": message}));
    }
    // The integration's own call to its vendor failed: transient vendor
    // trouble is worth a retry, a refused credential is not.
    let upstream = |status: u16| Error::Upstream {
        status,
        body_excerpt: format!("consumer {}: {message}", input.consumer),
    };
    match answer.get("status").and_then(Value::as_u64) {
        Some(429) => Err(Error::RateLimited { retry_after_ms: None }),
        Some(status @ 500..=599) => Err(upstream(status as u16)),
        // No answer from the vendor at all (connection refused or dropped).
        None => Err(upstream(502)),
        _ => Err(Error::Unauthorized(format!(
            "consumer {} cannot use its credential: {message}",
            input.consumer
        ))),
    }
}
