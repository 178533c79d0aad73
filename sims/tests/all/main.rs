//! Integration tests for the simulators: every seed procedure's happy path
//! and every seed rule, by raw HTTP against in-process simulators.

mod constellix;
mod consumers;
mod demandcaster;
mod faults;
mod plex;
mod plytix;
mod requests;
mod serve;
mod soar;

use rota_sims::{SimHandle, Sims, SimsConfig, System};
use serde_json::Value;

pub(crate) type TestResult = anyhow::Result<()>;

pub(crate) async fn start() -> anyhow::Result<Sims> {
    Ok(Sims::start(SimsConfig::default()).await?)
}

pub(crate) async fn start_with(config: SimsConfig) -> anyhow::Result<Sims> {
    Ok(Sims::start(config).await?)
}

pub(crate) fn http() -> reqwest::Client {
    reqwest::Client::new()
}

/// A JSON GET on a system's admin API.
pub(crate) async fn admin_get(h: &SimHandle, path: &str) -> anyhow::Result<Value> {
    let r = http().get(format!("{}{path}", h.admin_origin())).send().await?;
    anyhow::ensure!(r.status().is_success(), "GET {path}: {}", r.status());
    Ok(r.json().await?)
}

/// A JSON POST on a system's admin API.
pub(crate) async fn admin_post(h: &SimHandle, path: &str, body: Value) -> anyhow::Result<Value> {
    let r = http()
        .post(format!("{}{path}", h.admin_origin()))
        .json(&body)
        .send()
        .await?;
    anyhow::ensure!(r.status().is_success(), "POST {path}: {}", r.status());
    Ok(r.json().await?)
}

/// Reads a string at a JSON pointer.
pub(crate) fn s(v: &Value, pointer: &str) -> anyhow::Result<String> {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| anyhow::anyhow!("no string at {pointer} in {v}"))
}

/// Reads an unsigned number at a JSON pointer.
pub(crate) fn u(v: &Value, pointer: &str) -> anyhow::Result<u64> {
    v.pointer(pointer)
        .and_then(Value::as_u64)
        .ok_or_else(|| anyhow::anyhow!("no number at {pointer} in {v}"))
}

pub(crate) fn get(sims: &Sims, system: System) -> &SimHandle {
    sims.get(system)
}
