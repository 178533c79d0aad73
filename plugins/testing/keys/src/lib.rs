//! A test vendor plugin for resume: a key whose secret the vendor shows once
//! (`create-key`), made safe to interrupt by a snapshot (`key-ids`), a
//! reconcile action (`find-key`) and a revoke action (`revoke-key`); and two
//! actions that are safe to repeat (`delete-key`, `set-credential`). It talks
//! to `rota_testkit::KeysVendor`.

use rota_plugin_sdk::resume::{Outcome, Reconcile, Revoke, Snapshot};
use rota_plugin_sdk::secrets::Handle;
use rota_plugin_sdk::{Context, Error, http, json};
use serde::{Deserialize, Serialize};

rota_plugin_sdk::plugin! {
    manifest: "rota-plugin.json",
    actions: {
        "create-key" => create_key,
        "key-ids" => key_ids,
        "find-key" => find_key,
        "revoke-key" => revoke_key,
        "delete-key" => delete_key,
        "set-credential" => set_credential,
    },
}

#[derive(Clone, Debug, Deserialize)]
struct CreateIn {
    token: Handle,
    name: String,
}

#[derive(Clone, Debug, Serialize)]
struct Created {
    key_id: String,
    secret: Handle,
    created: u64,
}

#[derive(Debug, Deserialize)]
struct Key {
    id: String,
    name: String,
    created: u64,
}

#[derive(Debug, Deserialize)]
struct Keys {
    keys: Vec<Key>,
}

fn list(ctx: &Context, token: &Handle) -> Result<Vec<Key>, Error> {
    let resp = http::get(&ctx.url("/keys")?)
        .bearer(token)
        .send()?
        .error_for_status()?;
    Ok(resp.json::<Keys>()?.keys)
}

fn create_key(ctx: &Context, input: CreateIn) -> Result<Created, Error> {
    let resp = http::post(&ctx.url("/keys")?)
        .bearer(&input.token)
        .json(&json!({"name": input.name}))?
        .capture_json("/secret", "secret")
        .send()?
        .error_for_status()?;
    let key: Key = resp.json()?;
    let secret = resp
        .captured("secret")
        .ok_or_else(|| Error::Internal("the vendor returned no secret".to_owned()))?;
    Ok(Created {
        key_id: key.id,
        secret,
        created: key.created,
    })
}

#[derive(Clone, Debug, Deserialize)]
struct TokenOnly {
    token: Handle,
}

#[derive(Debug, Serialize, Deserialize)]
struct KeyIds {
    ids: Vec<String>,
}

fn key_ids(ctx: &Context, input: Snapshot<TokenOnly>) -> Result<KeyIds, Error> {
    let ids = list(ctx, &input.input.token)?.into_iter().map(|k| k.id).collect();
    Ok(KeyIds { ids })
}

/// The captured key is adopted while the vendor still has it. Without a
/// capture, keys of the same name that the snapshot did not list were made
/// by the interrupted call (the name, not only the diff, tells concurrent
/// calls apart): their secret is lost, so they are orphans.
fn find_key(ctx: &Context, r: Reconcile<CreateIn, KeyIds>) -> Result<Outcome<Created>, Error> {
    let keys = list(ctx, &r.input.token)?;
    if let (Some(secret), Some(id)) = (r.captured.get("secret"), &r.key_id) {
        return Ok(match keys.iter().find(|k| &k.id == id) {
            Some(k) => Outcome::Applied {
                output: Created {
                    key_id: k.id.clone(),
                    secret: secret.clone(),
                    created: k.created,
                },
            },
            None => Outcome::NotApplied,
        });
    }
    let snapshot = r.snapshot.ok_or_else(|| {
        Error::InvalidInput(
            "no snapshot of the keys before the call: cannot tell which key it created".to_owned(),
        )
    })?;
    let new: Vec<String> = keys
        .into_iter()
        .filter(|k| k.name == r.input.name && !snapshot.ids.contains(&k.id))
        .map(|k| k.id)
        .collect();
    Ok(if new.is_empty() {
        Outcome::NotApplied
    } else {
        Outcome::Orphaned { key_ids: new }
    })
}

#[derive(Debug, Serialize)]
struct Deleted {
    key_id: String,
    deleted: bool,
}

fn delete(ctx: &Context, token: &Handle, key_id: &str) -> Result<http::Response, Error> {
    http::delete(&ctx.url(&format!("/keys/{key_id}"))?)
        .bearer(token)
        .send()
}

fn revoke_key(ctx: &Context, r: Revoke<TokenOnly>) -> Result<Deleted, Error> {
    delete(ctx, &r.input.token, &r.key_id)?.error_for_status()?;
    Ok(Deleted {
        key_id: r.key_id,
        deleted: true,
    })
}

#[derive(Debug, Deserialize)]
struct DeleteIn {
    token: Handle,
    key_id: String,
}

fn delete_key(ctx: &Context, input: DeleteIn) -> Result<Deleted, Error> {
    let resp = delete(ctx, &input.token, &input.key_id)?;
    let deleted = resp.status() != 404;
    if deleted {
        resp.error_for_status()?;
    }
    Ok(Deleted {
        key_id: input.key_id,
        deleted,
    })
}

#[derive(Debug, Deserialize)]
struct SetIn {
    token: Handle,
    consumer: String,
    key_id: String,
    secret: Handle,
}

#[derive(Debug, Serialize)]
struct Set {
    consumer: String,
    key_id: String,
}

fn set_credential(ctx: &Context, input: SetIn) -> Result<Set, Error> {
    http::put(&ctx.url(&format!("/consumers/{}/credential", input.consumer))?)
        .bearer(&input.token)
        .json(&json!({"key_id": input.key_id, "secret": input.secret}))?
        .json_secret(&input.secret)
        .send()?
        .error_for_status()?;
    Ok(Set {
        consumer: input.consumer,
        key_id: input.key_id,
    })
}
