//! The Constellix DNS plugin: a user's API keys (list with expiry, generate
//! expiring in months or never, delete by ID), the key audit log, and a
//! signed request that proves a key works; plus the snapshot, reconcile and
//! revoke actions that make generating and deleting safe to resume.
//!
//! Design decision: no action ever reads a secret key back from Constellix.
//! The vendor logs every view of a key, and listing keys shows no secret, so
//! everything rota needs (IDs, API keys, dates) comes from the list; a new
//! key's secret is captured once, from the answer that generates it, straight
//! into the store.

mod api;

use rota_plugin_sdk::resume::{Outcome, Reconcile, Revoke, Snapshot};
use rota_plugin_sdk::secrets::Handle;
use rota_plugin_sdk::{Context, Error, Value, http, json};
use serde::Deserialize;

use crate::api::{Key, Signer, check, excerpt, id_text};

rota_plugin_sdk::plugin! {
    manifest: "rota-plugin.json",
    actions: {
        "list-keys" => list_keys,
        "snapshot-keys" => snapshot_keys,
        "generate-key" => generate_key,
        "reconcile-generate-key" => reconcile_generate_key,
        "revoke-key" => revoke_key,
        "delete-key" => delete_key,
        "reconcile-delete-key" => reconcile_delete_key,
        "export-audit-log" => export_audit_log,
        "verify-key" => verify_key,
    },
}

/// The key a request signs with, inside a larger input (snapshot, revoke).
#[derive(Debug, Deserialize)]
struct Login {
    api_key: String,
    secret_key: Handle,
}

impl Login {
    fn signer(&self) -> Signer<'_> {
        Signer::new(&self.api_key, &self.secret_key)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListIn {
    account: String,
    api_key: String,
    secret_key: Handle,
}

fn list_keys(ctx: &Context, input: ListIn) -> Result<Value, Error> {
    let signer = Signer::new(&input.api_key, &input.secret_key);
    let keys = api::list_keys(ctx, &signer)?;
    if keys.len() > 2 {
        return Err(Error::Internal(format!(
            "Constellix lists {} API keys for this user; it allows at most two",
            keys.len()
        )));
    }
    let current = keys.iter().find(|k| k.api_key == input.api_key).ok_or_else(|| {
        Error::Internal(format!(
            "Constellix accepted API key {} but does not list it among the signed-in user's keys",
            input.api_key
        ))
    })?;
    let other = keys.iter().find(|k| k.id != current.id);
    let none = || "none".to_owned();
    Ok(json!({
        "count": keys.len(),
        "current_id": current.id,
        "current_created": current.created,
        "current_expires": current.expires_text(),
        "other_id": other.map_or_else(none, |k| k.id.clone()),
        "other_api_key": other.map_or_else(none, |k| k.api_key.clone()),
        "other_created": other.map_or_else(none, |k| k.created.clone()),
        "other_expires": other.map_or_else(none, Key::expires_text),
        "keys": keys.iter().map(Key::json).collect::<Vec<_>>(),
        "inventory": keys.iter().map(|k| k.inventory(&input.account, "active")).collect::<Vec<_>>(),
    }))
}

#[derive(Debug, serde::Serialize, Deserialize)]
struct KeyIds {
    ids: Vec<String>,
}

fn snapshot_keys(ctx: &Context, s: Snapshot<Login>) -> Result<KeyIds, Error> {
    let ids = api::list_keys(ctx, &s.input.signer())?
        .into_iter()
        .map(|k| k.id)
        .collect();
    Ok(KeyIds { ids })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GenerateIn {
    account: String,
    api_key: String,
    secret_key: Handle,
    expiry: String,
}

/// `"never"` or a number of months, as the Add API Key window offers.
fn months(expiry: &str) -> Result<Option<u32>, Error> {
    if expiry == "never" {
        return Ok(None);
    }
    match expiry.parse::<u32>() {
        Ok(m) if m >= 1 => Ok(Some(m)),
        _ => Err(Error::InvalidInput(format!(
            "expiry {expiry:?}: expected a number of months (1, 5, 10, 18, ...) or never"
        ))),
    }
}

/// What generate-key returns, for a key and the handle of its secret key.
fn generated(key: &Key, secret: &Handle, account: &str) -> Value {
    json!({
        "key_id": key.id,
        "api_key": key.api_key,
        "created": key.created,
        "expires_at": key.expires_text(),
        "secret": secret,
        "inventory": [key.inventory(account, "pending")],
    })
}

fn generate_key(ctx: &Context, input: GenerateIn) -> Result<Value, Error> {
    let months = months(&input.expiry)?;
    let signer = Signer::new(&input.api_key, &input.secret_key);
    let req = http::post(&ctx.url("/v4/users/me/apikeys")?)
        .json(&json!({"expiresInMonths": months}))?
        // Shown once, at generation: straight into the store.
        .capture_json("/data/secretKey", "secret");
    let resp = check(signer.sign(req)?.send()?, "generating an API key")?;
    let body: Value = resp.json()?;
    let data = body.get("data").unwrap_or(&Value::Null);
    let key = Key::parse(data)?;
    let secret = resp.captured("secret").ok_or_else(|| {
        Error::Internal(format!(
            "Constellix generated API key {} but its answer held no secret key",
            key.id
        ))
    })?;
    Ok(generated(&key, &secret, &input.account))
}

fn reconcile_generate_key(ctx: &Context, r: Reconcile<GenerateIn, KeyIds>) -> Result<Outcome<Value>, Error> {
    let signer = Signer::new(&r.input.api_key, &r.input.secret_key);
    let keys = api::list_keys(ctx, &signer)?;
    if let (Some(secret), Some(id)) = (r.captured.get("secret"), &r.key_id) {
        return Ok(match keys.iter().find(|k| &k.id == id) {
            Some(k) => Outcome::Applied {
                output: generated(k, secret, &r.input.account),
            },
            // Stored, but deleted at Constellix since: make another.
            None => Outcome::NotApplied,
        });
    }
    let snapshot = r.snapshot.ok_or_else(|| {
        Error::InvalidInput(
            "no snapshot of the user's keys before the interrupted generate: cannot tell which key it made; \
             compare the user's keys in the portal and delete the one rota holds no secret for"
                .to_owned(),
        )
    })?;
    let made: Vec<String> = keys
        .into_iter()
        .filter(|k| !snapshot.ids.contains(&k.id))
        .map(|k| k.id)
        .collect();
    Ok(if made.is_empty() {
        Outcome::NotApplied
    } else {
        Outcome::Orphaned { key_ids: made }
    })
}

#[derive(Debug, serde::Serialize)]
struct Revoked {
    key_id: String,
    deleted: bool,
}

fn revoke_key(ctx: &Context, r: Revoke<Login>) -> Result<Revoked, Error> {
    let deleted = api::delete_key(ctx, &r.input.signer(), &r.key_id)?;
    Ok(Revoked {
        key_id: r.key_id,
        deleted,
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeleteIn {
    account: String,
    api_key: String,
    secret_key: Handle,
    key_id: String,
}

fn revoked(account: &str, key_id: &str) -> Value {
    json!({"key_id": key_id, "inventory": [{"account": account, "key_id": key_id, "status": "revoked"}]})
}

fn delete_key(ctx: &Context, input: DeleteIn) -> Result<Value, Error> {
    let signer = Signer::new(&input.api_key, &input.secret_key);
    let keys = api::list_keys(ctx, &signer)?;
    let target = keys.iter().find(|k| k.id == input.key_id).ok_or_else(|| {
        Error::NotFound(format!(
            "API key {} is not one of the signed-in user's keys ({}); nothing was deleted",
            input.key_id,
            keys.iter().map(|k| k.id.as_str()).collect::<Vec<_>>().join(", ")
        ))
    })?;
    if target.api_key == input.api_key {
        return Err(Error::InvalidInput(format!(
            "refusing to delete API key {}: it is the key this request signs with; sign with the user's other key",
            input.key_id
        )));
    }
    if !api::delete_key(ctx, &signer, &input.key_id)? {
        return Err(Error::NotFound(format!(
            "API key {} was deleted by someone else just now",
            input.key_id
        )));
    }
    let mut out = revoked(&input.account, &input.key_id);
    out["inventory"] = json!([target.inventory(&input.account, "revoked")]);
    Ok(out)
}

fn reconcile_delete_key(ctx: &Context, r: Reconcile<DeleteIn, Value>) -> Result<Outcome<Value>, Error> {
    let signer = Signer::new(&r.input.api_key, &r.input.secret_key);
    let listed = api::list_keys(ctx, &signer)?
        .iter()
        .any(|k| k.id == r.input.key_id);
    Ok(if listed {
        Outcome::NotApplied
    } else {
        Outcome::Applied {
            output: revoked(&r.input.account, &r.input.key_id),
        }
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditIn {
    api_key: String,
    secret_key: Handle,
    #[serde(default)]
    key_ids: Option<Vec<String>>,
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    to: Option<String>,
}

/// A query value, percent-encoded (an RFC 3339 offset's `+` included).
fn query_value(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b':' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn export_audit_log(ctx: &Context, input: AuditIn) -> Result<Value, Error> {
    let signer = Signer::new(&input.api_key, &input.secret_key);
    let query: Vec<String> = [("from", &input.from), ("to", &input.to)]
        .into_iter()
        .filter_map(|(k, v)| v.as_deref().map(|v| format!("{k}={}", query_value(v))))
        .collect();
    let rows = api::all_pages(
        ctx,
        &signer,
        "/v4/audit/apikeys",
        &query.join("&"),
        "exporting the key audit log",
    )
    .map_err(|e| match e {
        Error::Forbidden(m) => Error::Forbidden(format!(
            "{m}: only an account administrator may export the key audit log; sign with an administrator's key"
        )),
        other => other,
    })?;
    let mut entries = Vec::new();
    for row in &rows {
        let bad = || {
            Error::Internal(format!(
                "Constellix returned an audit entry rota cannot read: {}",
                excerpt(row)
            ))
        };
        let text = |f: &str| {
            row.get(f)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(bad)
        };
        let entry = json!({
            "id": id_text(row.get("id")).ok_or_else(bad)?,
            "user_id": id_text(row.get("userId")).ok_or_else(bad)?,
            "key_id": id_text(row.get("apiKeyId")).ok_or_else(bad)?,
            "action": text("action")?,
            "ip": text("ip")?,
            "at": text("createdAt")?,
        });
        let wanted = input
            .key_ids
            .as_ref()
            .is_none_or(|ids| ids.iter().any(|id| entry["key_id"] == id.as_str()));
        if wanted {
            entries.push(entry);
        }
    }
    let count = |action: &str| entries.iter().filter(|e| e["action"] == action).count();
    Ok(json!({
        "creates": count("create"),
        "views": count("view"),
        "deletes": count("delete"),
        "entries": entries,
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct VerifyIn {
    api_key: String,
    secret_key: Handle,
}

fn verify_key(ctx: &Context, input: VerifyIn) -> Result<Value, Error> {
    let signer = Signer::new(&input.api_key, &input.secret_key);
    let url = ctx.url("/v4/domains?page=1&perPage=1")?;
    let what = format!("verifying API key {}", input.api_key);
    let resp = check(signer.sign(http::get(&url))?.send()?, &what)?;
    let body: Value = resp.json()?;
    let domains = body
        .pointer("/meta/pagination/total")
        .and_then(Value::as_u64)
        .or_else(|| body.get("data").and_then(Value::as_array).map(|d| d.len() as u64))
        .ok_or_else(|| {
            Error::Internal(format!(
                "{what}: Constellix answered without a domain list: {}",
                excerpt(&body)
            ))
        })?;
    Ok(json!({"ok": true, "api_key": input.api_key, "domains": domains}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_is_months_or_never() {
        assert_eq!(months("never"), Ok(None));
        assert_eq!(months("18"), Ok(Some(18)));
        assert!(months("0").is_err());
        assert!(months("soon").is_err());
    }

    #[test]
    fn query_values_encode_offsets() {
        assert_eq!(
            query_value("2025-01-01T00:00:00+02:00"),
            "2025-01-01T00:00:00%2B02:00"
        );
    }
}
