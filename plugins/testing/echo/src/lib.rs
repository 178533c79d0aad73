//! A well-behaved test plugin.

use rota_plugin_sdk::http::{self, HmacAlgorithm, SignatureEncoding};
use rota_plugin_sdk::secrets::Handle;
use rota_plugin_sdk::{Context, Error, Value, json};
use serde::Deserialize;

rota_plugin_sdk::plugin! {
    manifest: "rota-plugin.json",
    actions: {
        "echo" => echo,
        "noop" => noop,
        "get" => get,
        "create-key" => create_key,
        "signed" => signed,
        "session" => session,
    },
}

#[derive(Deserialize)]
struct EchoIn {
    message: String,
}

fn echo(ctx: &Context, input: EchoIn) -> Result<Value, Error> {
    rota_plugin_sdk::log::info("echoing", &[("len", &input.message.len().to_string())]);
    Ok(json!({"message": input.message, "attempt": ctx.attempt, "idempotency_key": ctx.idempotency_key}))
}

fn noop(_ctx: &Context, _input: Value) -> Result<Value, Error> {
    Ok(json!({}))
}

#[derive(Deserialize)]
struct GetIn {
    url: String,
    token: Option<Handle>,
}

fn get(_ctx: &Context, input: GetIn) -> Result<Value, Error> {
    let mut req = http::get(&input.url);
    if let Some(token) = &input.token {
        req = req.bearer(token);
    }
    let resp = req.send()?.error_for_status()?;
    let body: Value = resp.json().unwrap_or(Value::Null);
    Ok(json!({"status": resp.status(), "body": body}))
}

#[derive(Deserialize)]
struct CreateIn {
    url: String,
    id: String,
    admin: Handle,
}

fn create_key(ctx: &Context, input: CreateIn) -> Result<Value, Error> {
    let resp = http::post(&input.url)
        .header("idempotency-key", &ctx.idempotency_key)
        .basic(&input.id, &input.admin)
        .json(&json!({"name": "rota"}))?
        .capture_json("/secret", "secret")
        .send()?
        .error_for_status()?;
    let body: Value = resp.json()?;
    let key_id = body
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let secret = resp
        .captured("secret")
        .ok_or_else(|| Error::Internal("no secret captured".to_owned()))?;
    Ok(json!({"key_id": key_id, "secret": secret, "body": body}))
}

#[derive(Deserialize)]
struct SignedIn {
    url: String,
    api_key: Handle,
    secret_key: Handle,
}

fn signed(_ctx: &Context, input: SignedIn) -> Result<Value, Error> {
    let resp = http::post(&input.url)
        .signed_header(
            "x-cns-security-token",
            HmacAlgorithm::Sha1,
            &input.secret_key,
            "{timestamp-ms}",
            SignatureEncoding::Base64,
            "{secret.0}:{signature}:{timestamp-ms}",
            &[&input.api_key],
        )
        .secret_header("x-api-key", "Key ", &input.api_key)
        .json(&json!({"key": input.api_key}))?
        .json_secret(&input.api_key)
        .send()?
        .error_for_status()?;
    resp.json()
}

#[derive(Deserialize)]
struct SessionIn {
    url: String,
    password: Handle,
}

fn session(_ctx: &Context, input: SessionIn) -> Result<Value, Error> {
    let login = http::post(&format!("{}/login", input.url))
        .json(&json!({"password": input.password}))?
        .json_secret(&input.password)
        .capture_ephemeral("/token", "token")
        .send()?
        .error_for_status()?;
    let token = login
        .captured("token")
        .ok_or_else(|| Error::Internal("no token".to_owned()))?;
    let resp = http::get(&format!("{}/me", input.url))
        .bearer(&token)
        .send()?
        .error_for_status()?;
    resp.json()
}
