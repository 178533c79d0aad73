//! The Plex plugin: the client applications of a PCN and their secrets
//! (Plex UX > Platform > Integration > Developer Portal > Client
//! Applications), and checking a client id + secret the way a Plex Connect
//! consumer signs in.
//!
//! Design decision: a secret is only ever deleted by an ID the secrets grid
//! lists at that moment (the portal's own delete confirmation names no
//! secret, so nothing here deletes "the selected row"). A call whose answer
//! was lost is settled by rota with this plugin's reconcile actions, which
//! read the grid: a delete is done when its ID is gone, and a secret added
//! since the snapshot whose value rota never stored is an orphan to revoke.

mod date;
mod portal;

use rota_plugin_sdk::resume::{Outcome, Reconcile, Revoke, Snapshot};
use rota_plugin_sdk::secrets::Handle;
use rota_plugin_sdk::{Context, Error, Value, clock, http, json};
use serde::{Deserialize, Serialize};

use crate::portal::{Deleted, Portal, SecretRow, check_id, plex_error};

rota_plugin_sdk::plugin! {
    manifest: "rota-plugin.json",
    actions: {
        "list-client-applications" => list_client_applications,
        "list-secrets" => list_secrets,
        "delete-secret" => delete_secret,
        "reconcile-delete-secret" => reconcile_delete_secret,
        "add-secret" => add_secret,
        "snapshot-secrets" => snapshot_secrets,
        "reconcile-add-secret" => reconcile_add_secret,
        "revoke-secret" => revoke_secret,
        "verify-client" => verify_client,
    },
}

/// What `list-secrets` answers when there is no such secret.
const NONE: &str = "none";
const NO_DATE: &str = "-";
const DEFAULT_VALID_DAYS: u32 = 365;
const DEFAULT_RETIRE_WITHIN_DAYS: i64 = 30;

fn now_ms() -> i64 {
    i64::try_from(clock::now_ms()).unwrap_or(i64::MAX)
}

/// A grid row with its dates read, judged against `now`.
struct Judged {
    row: SecretRow,
    created_ms: i64,
    valid_until_ms: i64,
}

impl Judged {
    fn of(row: SecretRow) -> Result<Self, Error> {
        let parse = |what: &str, text: &str| {
            date::parse_ms(text).ok_or_else(|| {
                Error::Internal(format!(
                    "Plex listed secret {} with {what} {text:?}, not a date such as 2025-01-01T00:00:00.0000000Z",
                    row.id
                ))
            })
        };
        Ok(Self {
            created_ms: parse("created date", &row.created_date)?,
            valid_until_ms: parse("valid-until date", &row.valid_until)?,
            row,
        })
    }

    fn expired(&self, now: i64) -> bool {
        self.valid_until_ms <= now
    }
}

/// Names for a message: "a, b" or "none".
fn listing<'a>(items: impl Iterator<Item = &'a str>) -> String {
    let items: Vec<&str> = items.collect();
    if items.is_empty() {
        "none".to_owned()
    } else {
        items.join(", ")
    }
}

/// ID, created and valid-until of a picked secret, or the "none" answer.
fn pick(j: Option<&Judged>) -> (&str, &str, &str) {
    match j {
        Some(j) => (&j.row.id, &j.row.created_date, &j.row.valid_until),
        None => (NONE, NO_DATE, NO_DATE),
    }
}

fn judged_grid(portal: &Portal<'_>, client_id: &str) -> Result<Vec<Judged>, Error> {
    portal.secrets(client_id)?.into_iter().map(Judged::of).collect()
}

/// One inventory entry (`docs/plugins.md`, "Reporting credentials").
fn inventory_entry(
    account: &str,
    key_id: &str,
    dates: Option<(&str, &str)>,
    consumers: &[String],
    status: &str,
) -> Value {
    json!({
        "account": account,
        "key_id": key_id,
        "created": dates.map(|d| d.0),
        "expires": dates.map(|d| d.1),
        "consumers": consumers,
        "status": status,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListAppsIn {
    portal_key: Handle,
    customer: String,
    name: Option<String>,
}

fn list_client_applications(ctx: &Context, input: ListAppsIn) -> Result<Value, Error> {
    let apps = Portal::new(ctx, &input.portal_key).applications(&input.customer)?;
    let listed: Vec<Value> = apps
        .iter()
        .filter(|a| a.customer_id == input.customer)
        .map(|a| json!({"client_id": a.client_id, "name": a.name, "secret_count": a.secret_count}))
        .collect();
    let mut out = json!({"customer": input.customer, "applications": listed});
    if let Some(name) = &input.name {
        let found: Vec<_> = apps
            .iter()
            .filter(|a| a.customer_id == input.customer && &a.name == name)
            .collect();
        let app = match found.as_slice() {
            [one] => *one,
            [] => {
                return Err(Error::NotFound(format!(
                    "PCN {} has no client application named {name:?} (it has: {})",
                    input.customer,
                    listing(apps.iter().map(|a| a.name.as_str()))
                )));
            }
            many => {
                return Err(Error::Conflict(format!(
                    "PCN {} has {} client applications named {name:?} ({}); rota will not guess which one",
                    input.customer,
                    many.len(),
                    listing(many.iter().map(|a| a.client_id.as_str()))
                )));
            }
        };
        if let Some(map) = out.as_object_mut() {
            map.insert("client_id".into(), json!(app.client_id));
            map.insert("name".into(), json!(app.name));
            map.insert("secret_count".into(), json!(app.secret_count));
        }
    }
    Ok(out)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListSecretsIn {
    portal_key: Handle,
    client_id: String,
    retire_within_days: Option<i64>,
    account: Option<String>,
    #[serde(default)]
    consumers: Vec<String>,
}

#[derive(Serialize)]
struct SecretView<'a> {
    id: &'a str,
    created: &'a str,
    valid_until: &'a str,
    expired: bool,
    days_left: i64,
}

fn list_secrets(ctx: &Context, input: ListSecretsIn) -> Result<Value, Error> {
    let grid = judged_grid(&Portal::new(ctx, &input.portal_key), &input.client_id)?;
    let now = now_ms();
    let window = date::days_ms(input.retire_within_days.unwrap_or(DEFAULT_RETIRE_WITHIN_DAYS));
    let account = input.account.as_deref().unwrap_or(&input.client_id);
    let views: Vec<SecretView<'_>> = grid
        .iter()
        .map(|j| SecretView {
            id: &j.row.id,
            created: &j.row.created_date,
            valid_until: &j.row.valid_until,
            expired: j.expired(now),
            days_left: date::days_between(now, j.valid_until_ms),
        })
        .collect();
    // The procedure deletes the expired secret that expired first, and
    // replaces the valid secret that expires first (the one running out).
    let expired = grid
        .iter()
        .filter(|j| j.expired(now))
        .min_by_key(|j| (j.valid_until_ms, j.created_ms));
    let old = grid
        .iter()
        .filter(|j| !j.expired(now))
        .min_by_key(|j| (j.valid_until_ms, j.created_ms));
    let (expired_id, expired_created, expired_valid_until) = pick(expired);
    let (old_id, old_created, old_valid_until) = pick(old);
    let inventory: Vec<Value> = grid
        .iter()
        .map(|j| {
            inventory_entry(
                account,
                &j.row.id,
                Some((&j.row.created_date, &j.row.valid_until)),
                &input.consumers,
                if j.expired(now) { "expired" } else { "active" },
            )
        })
        .collect();
    Ok(json!({
        "client_id": input.client_id,
        "secrets": views,
        "expired_count": grid.iter().filter(|j| j.expired(now)).count(),
        "expired_id": expired_id,
        "expired_created": expired_created,
        "expired_valid_until": expired_valid_until,
        "old_id": old_id,
        "old_created": old_created,
        "old_valid_until": old_valid_until,
        "old_expiring": old.is_some_and(|j| j.valid_until_ms <= now.saturating_add(window)),
        "inventory": inventory,
    }))
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeleteIn {
    portal_key: Handle,
    client_id: String,
    secret_id: String,
    #[serde(default)]
    only_if_expired: bool,
    account: Option<String>,
    #[serde(default)]
    consumers: Vec<String>,
}

impl DeleteIn {
    fn deleted(&self, dates: Option<(&str, &str)>) -> Value {
        let account = self.account.as_deref().unwrap_or(&self.client_id);
        json!({
            "client_id": self.client_id,
            "secret_id": self.secret_id,
            "created": dates.map(|d| d.0),
            "valid_until": dates.map(|d| d.1),
            "deleted": true,
            "inventory": [inventory_entry(account, &self.secret_id, dates, &self.consumers, "revoked")],
        })
    }
}

fn delete_secret(ctx: &Context, input: DeleteIn) -> Result<Value, Error> {
    check_id("secret id", &input.secret_id)?;
    let portal = Portal::new(ctx, &input.portal_key);
    let grid = judged_grid(&portal, &input.client_id)?;
    let matching: Vec<&Judged> = grid.iter().filter(|j| j.row.id == input.secret_id).collect();
    let target = match matching.as_slice() {
        [one] => *one,
        [] => {
            return Err(Error::NotFound(format!(
                "client {} has no secret {} (its secrets: {}); nothing was deleted",
                input.client_id,
                input.secret_id,
                listing(grid.iter().map(|j| j.row.id.as_str()))
            )));
        }
        many => {
            return Err(Error::Conflict(format!(
                "the secrets grid of client {} lists ID {} {} times; rota cannot tell which one to delete, so it deletes none",
                input.client_id,
                input.secret_id,
                many.len()
            )));
        }
    };
    if input.only_if_expired && !target.expired(now_ms()) {
        return Err(Error::Conflict(format!(
            "secret {} of client {} is valid until {}: it was to be deleted as expired, so nothing was deleted",
            input.secret_id, input.client_id, target.row.valid_until
        )));
    }
    let dates = (target.row.created_date.clone(), target.row.valid_until.clone());
    match portal.delete(&input.client_id, &input.secret_id)? {
        Deleted::Deleted => Ok(input.deleted(Some((&dates.0, &dates.1)))),
        Deleted::Gone => Err(Error::NotFound(format!(
            "secret {} of client {} disappeared while rota was deleting it",
            input.secret_id, input.client_id
        ))),
    }
}

/// A delete was interrupted: it took effect exactly when the ID is gone.
fn reconcile_delete_secret(ctx: &Context, r: Reconcile<DeleteIn, Value>) -> Result<Outcome<Value>, Error> {
    let grid = Portal::new(ctx, &r.input.portal_key).secrets(&r.input.client_id)?;
    Ok(if grid.iter().any(|s| s.id == r.input.secret_id) {
        Outcome::NotApplied
    } else {
        Outcome::Applied {
            output: r.input.deleted(None),
        }
    })
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct AddIn {
    portal_key: Handle,
    client_id: String,
    valid_days: Option<u32>,
    account: Option<String>,
    #[serde(default)]
    consumers: Vec<String>,
}

impl AddIn {
    fn added(&self, row: &SecretRow, secret: &Handle) -> Value {
        let account = self.account.as_deref().unwrap_or(&self.client_id);
        let mut entry = inventory_entry(
            account,
            &row.id,
            Some((&row.created_date, &row.valid_until)),
            &self.consumers,
            "pending",
        );
        if let (Some(map), Some((name, _))) = (entry.as_object_mut(), secret.as_str().rsplit_once('@')) {
            map.insert("secret".into(), json!(name));
        }
        json!({
            "client_id": self.client_id,
            "secret_id": row.id,
            "secret": secret,
            "created": row.created_date,
            "valid_until": row.valid_until,
            "inventory": [entry],
        })
    }
}

fn add_secret(ctx: &Context, input: AddIn) -> Result<Value, Error> {
    let created = Portal::new(ctx, &input.portal_key)
        .create(&input.client_id, input.valid_days.unwrap_or(DEFAULT_VALID_DAYS))?;
    Ok(input.added(&created.row, &created.secret))
}

#[derive(Serialize, Deserialize)]
struct SecretIds {
    secret_ids: Vec<String>,
}

fn snapshot_secrets(ctx: &Context, s: Snapshot<AddIn>) -> Result<SecretIds, Error> {
    let grid = Portal::new(ctx, &s.input.portal_key).secrets(&s.input.client_id)?;
    Ok(SecretIds {
        secret_ids: grid.into_iter().map(|r| r.id).collect(),
    })
}

/// An add was interrupted. rota stored a secret with its ID: adopt it if
/// Plex still lists that ID. Otherwise any secret added since the snapshot
/// holds a value rota never got: orphans, to revoke before adding again.
fn reconcile_add_secret(ctx: &Context, r: Reconcile<AddIn, SecretIds>) -> Result<Outcome<Value>, Error> {
    let grid = Portal::new(ctx, &r.input.portal_key).secrets(&r.input.client_id)?;
    if let (Some(secret), Some(id)) = (r.captured.get("secret"), &r.key_id) {
        return Ok(match grid.iter().find(|row| &row.id == id) {
            Some(row) => Outcome::Applied {
                output: r.input.added(row, secret),
            },
            None => Outcome::NotApplied,
        });
    }
    let snapshot = r.snapshot.ok_or_else(|| {
        Error::InvalidInput(
            "no snapshot of the secrets grid before the add: cannot tell which secret it added".to_owned(),
        )
    })?;
    let orphans: Vec<String> = grid
        .into_iter()
        .map(|row| row.id)
        .filter(|id| !snapshot.secret_ids.contains(id))
        .collect();
    Ok(if orphans.is_empty() {
        Outcome::NotApplied
    } else {
        Outcome::Orphaned { key_ids: orphans }
    })
}

fn revoke_secret(ctx: &Context, r: Revoke<AddIn>) -> Result<Value, Error> {
    match Portal::new(ctx, &r.input.portal_key).delete(&r.input.client_id, &r.key_id)? {
        Deleted::Deleted => Ok(json!({"key_id": r.key_id, "deleted": true})),
        Deleted::Gone => Err(Error::NotFound(format!(
            "client {} has no secret {}",
            r.input.client_id, r.key_id
        ))),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VerifyIn {
    client_id: String,
    client_secret: Handle,
    customer: Option<String>,
}

/// A part number no PCN uses, so the check reads an empty list instead of
/// the whole (unpaginated, megabytes) parts collection.
const PROBE_PART: &str = "rota-connectivity-check";

fn verify_client(ctx: &Context, input: VerifyIn) -> Result<Value, Error> {
    check_id("client id", &input.client_id)?;
    let refused = |what: &str, resp: &http::Response| match plex_error(what, resp) {
        // A refused credential is final; anything else may pass on a retry.
        Error::Unauthorized(m) | Error::Forbidden(m) => Error::Unauthorized(m),
        other => other,
    };
    // OAuth 2.0 client credentials, client_secret_basic (RFC 6749 §2.3.1):
    // the token is captured as a run-only secret, never seen here.
    let token = http::post(&ctx.url("/oauth2/token")?)
        .basic(&input.client_id, &input.client_secret)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("accept", "application/json")
        .body(b"grant_type=client_credentials".to_vec())
        .capture_ephemeral("/access_token", "access-token")
        .send()?;
    if token.status() != 200 {
        return Err(refused(
            &format!("signing in as client {} (OAuth token exchange)", input.client_id),
            &token,
        ));
    }
    let expires_in = serde_json::from_slice::<Value>(token.body())
        .ok()
        .and_then(|v| v.get("expires_in").and_then(Value::as_i64));
    let mut read = http::get(&ctx.url(&format!("/mdm/v1/parts?number={PROBE_PART}"))?)
        .header("X-Plex-Connect-Api-Key", &input.client_id)
        .secret_header("X-Plex-Connect-Api-Secret", "", &input.client_secret)
        .header("accept", "application/json");
    if let Some(pcn) = &input.customer {
        if pcn.is_empty() || !pcn.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Error::InvalidInput(format!(
                "customer {pcn:?} is not a PCN (digits only)"
            )));
        }
        read = read.header("X-Plex-Connect-Customer-Id", pcn);
    }
    let resp = read.send()?;
    if resp.status() != 200 {
        let what = match &input.customer {
            Some(pcn) => format!("reading PCN {pcn} as client {}", input.client_id),
            None => format!("reading Plex Connect as client {}", input.client_id),
        };
        return Err(refused(&what, &resp));
    }
    Ok(json!({
        "client_id": input.client_id,
        "customer": input.customer,
        "ok": true,
        "token_expires_in": expires_in,
    }))
}
