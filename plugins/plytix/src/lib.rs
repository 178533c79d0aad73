//! The Plytix PIM plugin: who may manage API keys, listing keys and roles,
//! creating a key (its API password captured straight into the store),
//! changing a key's role, deleting a key, and verifying a key by the
//! documented token exchange.
//!
//! Design decision: the API key is an identifier, the API password the only
//! secret. The API tab shows every API key in clear, integrations are known
//! by it (the consumer registry lists it), and it is useless without the
//! password; so it is a plain output and the inventory's key ID, while the
//! password is captured into the store and reaches this plugin only as a
//! handle. The vendor's 24-hex key ID stays on the wire (paths, revoke).

mod api;

use api::{Key, Login, Session, inventory, pick_key, pick_key_named, pick_role};
use rota_plugin_sdk::resume::{Outcome, Reconcile, Revoke, Snapshot};
use rota_plugin_sdk::secrets::Handle;
use rota_plugin_sdk::{Context, Error, Value, json};
use serde::{Deserialize, Serialize};

rota_plugin_sdk::plugin! {
    manifest: "rota-plugin.json",
    actions: {
        "check-caller" => check_caller,
        "list-keys" => list_keys,
        "find-key" => find_key,
        "list-roles" => list_roles,
        "find-role" => find_role,
        "create-key" => create_key,
        "snapshot-keys" => snapshot_keys,
        "reconcile-create-key" => reconcile_create_key,
        "revoke-key" => revoke_key,
        "change-key-role" => change_key_role,
        "delete-key" => delete_key,
        "reconcile-delete-key" => reconcile_delete_key,
        "verify-key" => verify_key,
    },
}

/// The capture name of a new key's API password (the manifest's `captures`).
const PASSWORD: &str = "password";

/// An input of which only the login matters (the host has checked the
/// rest against the manifest's schema).
#[derive(Clone, Debug, Deserialize)]
struct LoginOnly {
    #[serde(flatten)]
    login: Login,
}

#[derive(Serialize)]
struct Caller {
    may_manage_keys: bool,
    role: Option<String>,
    name: Option<String>,
    detail: String,
}

/// Plytix lets only Owners and Admins list API keys, so the list answers
/// the question; the caller's own row names its role.
fn check_caller(ctx: &Context, input: LoginOnly) -> Result<Caller, Error> {
    let s = Session::open(ctx, &input.login)?;
    match s.keys() {
        Ok(keys) => {
            let me = keys.into_iter().find(|k| k.api_key == input.login.admin_key);
            let detail = match &me {
                Some(k) => format!("API key {:?} has role {} and may manage API keys", k.name, k.role),
                None => "Plytix lets this caller manage API keys (its own key is not in the list)".to_owned(),
            };
            Ok(Caller {
                may_manage_keys: true,
                role: me.as_ref().map(|k| k.role.clone()),
                name: me.map(|k| k.name),
                detail,
            })
        }
        Err(Error::Forbidden(m)) => Ok(Caller {
            may_manage_keys: false,
            role: None,
            name: None,
            detail: format!(
                "API key {} is not an Owner or Admin key: {m}",
                input.login.admin_key
            ),
        }),
        Err(e) => Err(e),
    }
}

#[derive(Deserialize)]
struct ListIn {
    #[serde(flatten)]
    login: Login,
    name: Option<String>,
}

fn list_keys(ctx: &Context, input: ListIn) -> Result<Value, Error> {
    let keys = Session::open(ctx, &input.login)?.keys()?;
    let name_taken = input
        .name
        .as_deref()
        .is_some_and(|n| keys.iter().any(|k| k.name == n));
    let inv: Vec<Value> = keys.iter().map(|k| inventory(k, "active", None)).collect();
    Ok(json!({"count": keys.len(), "keys": keys, "name_taken": name_taken, "inventory": inv}))
}

#[derive(Deserialize)]
struct NamedIn {
    #[serde(flatten)]
    login: Login,
    name: String,
}

/// A key's fields with extra ones beside them.
fn key_output(key: &Key, extra: Value) -> Result<Value, Error> {
    let mut v = serde_json::to_value(key).map_err(|e| Error::Internal(e.to_string()))?;
    if let (Some(map), Value::Object(more)) = (v.as_object_mut(), extra) {
        map.extend(more);
    }
    Ok(v)
}

fn find_key(ctx: &Context, input: NamedIn) -> Result<Value, Error> {
    let key = pick_key_named(Session::open(ctx, &input.login)?.keys()?, &input.name)?;
    key_output(&key, json!({"inventory": [inventory(&key, "active", None)]}))
}

fn list_roles(ctx: &Context, input: LoginOnly) -> Result<Value, Error> {
    let roles = Session::open(ctx, &input.login)?.roles()?;
    let names = |kind: &str| -> Vec<String> {
        roles
            .iter()
            .filter(|r| r.kind == kind)
            .map(|r| r.name.clone())
            .collect()
    };
    Ok(json!({"system": names("system"), "team": names("team"), "roles": roles}))
}

fn find_role(ctx: &Context, input: NamedIn) -> Result<Value, Error> {
    let role = pick_role(Session::open(ctx, &input.login)?.roles()?, &input.name)?;
    Ok(json!({"role_id": role.role_id, "name": role.name, "type": role.kind}))
}

#[derive(Clone, Debug, Deserialize)]
struct CreateIn {
    #[serde(flatten)]
    login: Login,
    name: String,
    role: String,
}

/// A created key as create-key returns it (also what a reconcile adopts).
fn created(key: &Key, password: &Handle) -> Result<Value, Error> {
    key_output(
        key,
        json!({"password": password, "inventory": [inventory(key, "pending", Some(password))]}),
    )
}

fn create_key(ctx: &Context, input: CreateIn) -> Result<Value, Error> {
    let s = Session::open(ctx, &input.login)?;
    let role = pick_role(s.roles()?, &input.role)?;
    let (key, password) = s.create_key(&input.name, &role, PASSWORD)?;
    created(&key, &password)
}

#[derive(Debug, Serialize, Deserialize)]
struct KeyIds {
    key_ids: Vec<String>,
}

fn snapshot_keys(ctx: &Context, s: Snapshot<LoginOnly>) -> Result<KeyIds, Error> {
    let keys = Session::open(ctx, &s.input.login)?.keys()?;
    Ok(KeyIds {
        key_ids: keys.into_iter().map(|k| k.key_id).collect(),
    })
}

/// The key whose password was captured is adopted while Plytix still has
/// it. A password captured without a key ID came from the reveal of a key
/// the call found it had made (see `Session::create_key`): the one key of
/// that name the snapshot did not list. Without a capture, such keys were
/// made by the interrupted call and their password never reached the
/// store: orphans, for rota to revoke before it creates again.
fn reconcile_create_key(ctx: &Context, r: Reconcile<CreateIn, KeyIds>) -> Result<Outcome<Value>, Error> {
    let keys = Session::open(ctx, &r.input.login)?.keys()?;
    let password = r.captured.get(PASSWORD);
    if let (Some(password), Some(id)) = (password, &r.key_id) {
        return Ok(match keys.iter().find(|k| &k.key_id == id) {
            Some(k) => Outcome::Applied {
                output: created(k, password)?,
            },
            None => Outcome::NotApplied,
        });
    }
    let snapshot = r.snapshot.ok_or_else(|| {
        Error::InvalidInput(
            "no snapshot of the keys before the create: cannot tell which key it made".to_owned(),
        )
    })?;
    let made: Vec<Key> = keys
        .into_iter()
        .filter(|k| k.name == r.input.name && !snapshot.key_ids.contains(&k.key_id))
        .collect();
    Ok(match (password, made.as_slice()) {
        (_, []) => Outcome::NotApplied,
        (Some(password), [key]) => Outcome::Applied {
            output: created(key, password)?,
        },
        _ => Outcome::Orphaned {
            key_ids: made.into_iter().map(|k| k.key_id).collect(),
        },
    })
}

fn revoke_key(ctx: &Context, r: Revoke<LoginOnly>) -> Result<Value, Error> {
    let deleted = Session::open(ctx, &r.input.login)?.delete(&r.key_id)?;
    Ok(json!({"key_id": r.key_id, "deleted": deleted}))
}

#[derive(Deserialize)]
struct ChangeIn {
    #[serde(flatten)]
    login: Login,
    api_key: String,
    role: String,
    from_role: Option<String>,
}

/// Repeating is harmless: a key that already has the role is left alone.
/// A key found with a role other than the one the operator confirmed (and
/// not the new one) is left alone too: someone changed it meanwhile.
fn change_key_role(ctx: &Context, input: ChangeIn) -> Result<Value, Error> {
    let s = Session::open(ctx, &input.login)?;
    let key = pick_key(s.keys()?, &input.api_key)?;
    let role = pick_role(s.roles()?, &input.role)?;
    if key.role == role.name {
        return key_output(
            &key,
            json!({"changed": false, "inventory": [inventory(&key, "active", None)]}),
        );
    }
    if let Some(from) = &input.from_role
        && from != &key.role
    {
        return Err(Error::Conflict(format!(
            "API key {:?} now has role {}, not the {from} that was confirmed; its role was not changed",
            key.name, key.role
        )));
    }
    let key = s.set_role(&key, &role)?;
    key_output(
        &key,
        json!({"changed": true, "inventory": [inventory(&key, "active", None)]}),
    )
}

#[derive(Clone, Debug, Deserialize)]
struct DeleteIn {
    #[serde(flatten)]
    login: Login,
    api_key: String,
}

fn deleted(api_key: &str, key: Option<&Key>) -> Value {
    match key {
        Some(k) => json!({"api_key": api_key, "key_id": k.key_id, "name": k.name, "deleted": true,
                          "inventory": [inventory(k, "revoked", None)]}),
        None => json!({"api_key": api_key, "deleted": true}),
    }
}

fn delete_key(ctx: &Context, input: DeleteIn) -> Result<Value, Error> {
    let s = Session::open(ctx, &input.login)?;
    let key = pick_key(s.keys()?, &input.api_key)?;
    if !s.delete(&key.key_id)? {
        return Err(Error::NotFound(format!(
            "API key {:?} ({}) was deleted by someone else meanwhile",
            key.name, key.api_key
        )));
    }
    Ok(deleted(&input.api_key, Some(&key)))
}

/// A delete took effect if the key is gone.
fn reconcile_delete_key(ctx: &Context, r: Reconcile<DeleteIn, Value>) -> Result<Outcome<Value>, Error> {
    let keys = Session::open(ctx, &r.input.login)?.keys()?;
    Ok(if keys.iter().any(|k| k.api_key == r.input.api_key) {
        Outcome::NotApplied
    } else {
        Outcome::Applied {
            output: deleted(&r.input.api_key, None),
        }
    })
}

#[derive(Deserialize)]
struct VerifyIn {
    api_key: String,
    api_password: Handle,
}

/// The documented token exchange proves the key and password; one product
/// read with the token shows what its role lets it see.
fn verify_key(ctx: &Context, input: VerifyIn) -> Result<Value, Error> {
    let s = Session::open(
        ctx,
        &Login {
            admin_key: input.api_key.clone(),
            admin_password: input.api_password,
        },
    )?;
    let products_readable = s.can_read_products()?;
    Ok(json!({"api_key": input.api_key, "ok": true, "products_readable": products_readable}))
}
