//! The IBM QRadar SOAR plugin: API key accounts and the App Host apps that
//! authenticate with them, for regenerating an account's secret without
//! locking its apps (seed 002).
//!
//! Design decision: apps are named, not numbered, between steps. Every app
//! action takes the app's name and reads the app list itself (one GET) to
//! find its installation and the App Secret its app.config reads; so a
//! person on the guided path can type the names shown on the Apps tab and
//! the automated path passes the very same strings.
//!
//! Every call authenticates as SOAR documents it: HTTP Basic
//! `api_key_id:api_key_secret` on each request (the secret injected by the
//! host), the organization resolved once from `/rest/session`.

mod config;
mod date;
mod vendor;

use rota_plugin_sdk::resume::{Outcome, Reconcile};
use rota_plugin_sdk::secrets::Handle;
use rota_plugin_sdk::{Context, Error, Value, json};
use serde::{Deserialize, Serialize};

use crate::config::{AppConfig, SecretRef};
use crate::vendor::{App, KeyAccount, Login, Soar};

rota_plugin_sdk::plugin! {
    manifest: "rota-plugin.json",
    actions: {
        "session" => session,
        "list-api-keys" => list_api_keys,
        "get-api-key" => get_api_key,
        "find-apps" => find_apps,
        "undeploy-app" => undeploy_app,
        "regenerate-secret" => regenerate_secret,
        "reconcile-regenerate" => reconcile_regenerate,
        "update-app-secret" => update_app_secret,
        "deploy-app" => deploy_app,
        "check-login" => check_login,
        "check-account" => check_account,
        "check-app" => check_app,
        "plan-recovery" => plan_recovery,
    },
}

/// The operator's API key, and the organization every org call goes to.
#[derive(Clone, Debug, Deserialize)]
struct OrgLogin {
    login_id: String,
    login_secret: Handle,
    org_id: u64,
}

impl OrgLogin {
    fn soar<'a>(&'a self, ctx: &'a Context) -> Soar<'a> {
        Soar::new(
            ctx,
            Login {
                id: &self.login_id,
                secret: &self.login_secret,
            },
            self.org_id,
        )
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SessionIn {
    login_id: String,
    login_secret: Handle,
    #[serde(default)]
    org: Option<String>,
}

/// Signs in and picks the organization as the SOAR SDK does: by id, name,
/// uuid or cloud account; without one, the key's only organization.
fn session(ctx: &Context, input: SessionIn) -> Result<Value, Error> {
    let login = Login {
        id: &input.login_id,
        secret: &input.login_secret,
    };
    let s = vendor::session(ctx, &login)?;
    let orgs = s
        .get("orgs")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let wanted = input.org.as_deref().map(str::trim).filter(|o| !o.is_empty());
    let field = |o: &Value, k: &str| match o.get(k) {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    let named: Vec<String> = orgs
        .iter()
        .map(|o| {
            format!(
                "{} ({})",
                field(o, "name").unwrap_or_default(),
                field(o, "id").unwrap_or_default()
            )
        })
        .collect();
    let candidates: Vec<&Value> = match wanted {
        Some(w) => orgs
            .iter()
            .filter(|o| {
                ["id", "name", "uuid", "cloud_account"]
                    .iter()
                    .any(|k| field(o, k).as_deref() == Some(w))
            })
            .collect(),
        None => orgs.iter().collect(),
    };
    let org = match candidates.as_slice() {
        [one] => *one,
        [] => {
            return Err(Error::NotFound(format!(
                "API key {} is in no organization matching {:?}; it is in: {}",
                input.login_id,
                wanted.unwrap_or_default(),
                named.join(", ")
            )));
        }
        _ => {
            return Err(Error::InvalidInput(format!(
                "API key {} is in several organizations ({}): say which one with `org`",
                input.login_id,
                named.join(", ")
            )));
        }
    };
    if org.get("enabled") == Some(&Value::Bool(false)) {
        return Err(Error::Forbidden(format!(
            "This organization is not accessible to you: {} is disabled",
            field(org, "name").unwrap_or_default()
        )));
    }
    let org_id = org
        .get("id")
        .and_then(Value::as_u64)
        .ok_or_else(|| Error::Internal(format!("SOAR listed an organization without an id: {org}")))?;
    Ok(json!({
        "org_id": org_id,
        "org_name": field(org, "name").unwrap_or_default(),
        "api_key_handle": s.get("api_key_handle").and_then(Value::as_u64).unwrap_or(0),
        "session_ip": s.get("session_ip").and_then(Value::as_str).unwrap_or_default(),
    }))
}

/// One account as the API Keys tab lists it (no secret: SOAR shows it once).
#[derive(Clone, Debug, Serialize)]
struct AccountOut {
    id: u64,
    api_key_id: String,
    display_name: String,
    locked: bool,
    enabled: bool,
    failed_login_count: u64,
    created: String,
    last_modified_date: i64,
}

impl From<&KeyAccount> for AccountOut {
    fn from(k: &KeyAccount) -> Self {
        AccountOut {
            id: k.id,
            api_key_id: k.api_key_id.clone(),
            display_name: k.display_name.clone(),
            locked: k.locked,
            enabled: k.enabled,
            failed_login_count: k.failed_login_count,
            created: date::rfc3339(k.create_date),
            last_modified_date: k.last_modified_date,
        }
    }
}

/// The inventory entry of an account: SOAR secrets never expire; the apps
/// whose app.config names the account are its consumers.
fn inventory(k: &KeyAccount, consumers: Vec<String>) -> Value {
    json!({"account": k.display_name, "key_id": k.api_key_id, "created": date::rfc3339(k.create_date),
           "expires": null, "consumers": consumers, "status": "active"})
}

/// Every account, with the apps whose app.config names it (by api_key_id,
/// or by the account's name as its secret), for the inventory.
fn accounts_and_users(soar: &Soar) -> Result<(Vec<KeyAccount>, Vec<Value>), Error> {
    let keys = soar.api_keys()?;
    let apps = soar.apps()?;
    let report = keys
        .iter()
        .map(|k| {
            let users = apps
                .iter()
                .filter(|a| a.config().names_account(&k.api_key_id, &k.display_name))
                .map(|a| a.name.clone())
                .collect();
            inventory(k, users)
        })
        .collect();
    Ok((keys, report))
}

fn list_api_keys(ctx: &Context, input: OrgLogin) -> Result<Value, Error> {
    let (keys, inventory) = accounts_and_users(&input.soar(ctx))?;
    let locked: Vec<&str> = keys
        .iter()
        .filter(|k| k.locked)
        .map(|k| k.display_name.as_str())
        .collect();
    let accounts: Vec<AccountOut> = keys.iter().map(AccountOut::from).collect();
    Ok(json!({"accounts": accounts, "locked": locked, "inventory": inventory}))
}

#[derive(Deserialize)]
struct GetKeyIn {
    #[serde(flatten)]
    login: OrgLogin,
    account: String,
}

/// An account by its name, its API key ID or its numeric id.
fn get_api_key(ctx: &Context, input: GetKeyIn) -> Result<Value, Error> {
    let (keys, inventory) = accounts_and_users(&input.login.soar(ctx))?;
    let wanted = input.account.trim();
    let found: Vec<&KeyAccount> = keys
        .iter()
        .filter(|k| k.display_name == wanted || k.api_key_id == wanted || k.id.to_string() == wanted)
        .collect();
    let k = match found.as_slice() {
        [k] => *k,
        [] => {
            let names: Vec<&str> = keys.iter().map(|k| k.display_name.as_str()).collect();
            return Err(Error::NotFound(format!(
                "no API key account {wanted:?} in organization {}; there are: {}",
                input.login.org_id,
                names.join(", ")
            )));
        }
        _ => {
            return Err(Error::Conflict(format!(
                "{wanted:?} names more than one API key account; give its numeric id"
            )));
        }
    };
    let mut out = serde_json::to_value(AccountOut::from(k)).map_err(|e| Error::Internal(e.to_string()))?;
    if let Some(o) = out.as_object_mut() {
        o.insert("inventory".into(), Value::Array(inventory));
    }
    Ok(out)
}

#[derive(Clone, Debug, Deserialize)]
struct AccountRef {
    /// The account's display name (its App Secret's usual name).
    account: String,
    api_key_id: String,
}

#[derive(Deserialize)]
struct FindIn {
    #[serde(flatten)]
    login: OrgLogin,
    #[serde(flatten)]
    account: AccountRef,
}

/// Why an app counts as a user of the account (the seed's methods).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum MatchedBy {
    /// app.config's `api_key_id` is the account's.
    ApiKeyId,
    /// app.config reads its secret from the App Secret named after the account.
    ConfigSecretName,
    /// The app's App Secrets list has one named after the account.
    AppSecretName,
}

#[derive(Debug, Serialize)]
struct AppUse {
    name: String,
    display_name: String,
    app_id: u64,
    inst_id: u64,
    status: String,
    /// The App Secret that holds the account's secret for this app.
    secret_name: Option<String>,
    matched_by: Vec<MatchedBy>,
}

fn join(names: &[&str]) -> String {
    names.join(",")
}

/// Finds every app that authenticates with the account: by its API key ID
/// in app.config, or by the account's name as an App Secret (read from the
/// app's secrets only when its app.config did not already tell).
fn find_apps(ctx: &Context, input: FindIn) -> Result<Value, Error> {
    let soar = input.login.soar(ctx);
    let target = &input.account;
    let mut users: Vec<AppUse> = Vec::new();
    let mut hints: Vec<String> = Vec::new();
    for app in soar.apps()? {
        if app.name.contains(',') {
            return Err(Error::Internal(format!(
                "SOAR lists an app named {:?}: a name with a comma cannot be passed between steps",
                app.name
            )));
        }
        let cfg = app.config();
        let mut matched_by = Vec::new();
        if cfg.api_key_id() == Some(target.api_key_id.as_str()) {
            matched_by.push(MatchedBy::ApiKeyId);
        }
        if cfg.secret_ref().as_ref().and_then(SecretRef::name) == Some(target.account.as_str()) {
            matched_by.push(MatchedBy::ConfigSecretName);
        }
        if matched_by.is_empty() && soar.app_secret_names(&app)?.contains(&target.account) {
            matched_by.push(MatchedBy::AppSecretName);
        }
        if matched_by.is_empty() {
            if target.account.contains(&app.name) || app.name.contains(&target.account) {
                hints.push(app.name.clone());
            }
            continue;
        }
        users.push(AppUse {
            secret_name: secret_name_for(&cfg, target, &matched_by),
            name: app.name.clone(),
            display_name: app.display_name.clone(),
            app_id: app.id,
            inst_id: app.inst_id,
            status: app.status.clone(),
            matched_by,
        });
    }
    let names: Vec<&str> = users.iter().map(|u| u.name.as_str()).collect();
    let active: Vec<&str> = users
        .iter()
        .filter(|u| u.status != "undeployed")
        .map(|u| u.name.as_str())
        .collect();
    let summary: Vec<String> = users
        .iter()
        .map(|u| {
            format!(
                "{} (app {}, installation {}, {})",
                u.name, u.app_id, u.inst_id, u.status
            )
        })
        .collect();
    Ok(json!({
        "apps": join(&names),
        "active": join(&active),
        "count": users.len(),
        "summary": if summary.is_empty() { "no app".to_owned() } else { summary.join(", ") },
        "name_hints": hints.join(","),
        "details": users,
    }))
}

/// The App Secret an app reads the account's secret from.
fn secret_name_for(cfg: &AppConfig, target: &AccountRef, matched_by: &[MatchedBy]) -> Option<String> {
    match cfg.secret_ref() {
        Some(r)
            if matched_by.contains(&MatchedBy::ApiKeyId)
                || matched_by.contains(&MatchedBy::ConfigSecretName) =>
        {
            r.name().map(str::to_owned)
        }
        _ => Some(target.account.clone()),
    }
}

#[derive(Deserialize)]
struct AppIn {
    #[serde(flatten)]
    login: OrgLogin,
    app: String,
}

fn set_status(ctx: &Context, input: AppIn, wanted: &str, requested: &str) -> Result<Value, Error> {
    let soar = input.login.soar(ctx);
    let app = soar.app(&input.app)?;
    let status = if app.status == wanted {
        app.status.clone()
    } else {
        soar.set_installation(&app, requested)?.status
    };
    Ok(json!({"app": app.name, "app_id": app.id, "inst_id": app.inst_id, "status": status}))
}

fn undeploy_app(ctx: &Context, input: AppIn) -> Result<Value, Error> {
    set_status(ctx, input, "undeployed", "undeploying")
}

fn deploy_app(ctx: &Context, input: AppIn) -> Result<Value, Error> {
    set_status(ctx, input, "deployed", "deploying")
}

#[derive(Clone, Debug, Deserialize)]
struct RegenerateIn {
    #[serde(flatten)]
    login: OrgLogin,
    account_id: u64,
    /// The ID the account has now; regenerating must keep it.
    api_key_id: String,
    #[serde(default)]
    consumers: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
struct Regenerated {
    account_id: u64,
    api_key_id: String,
    display_name: String,
    secret: Handle,
    regenerated_at: i64,
    inventory: Vec<Value>,
}

fn regenerated(input: &RegenerateIn, k: &KeyAccount, secret: Handle) -> Result<Regenerated, Error> {
    if k.api_key_id != input.api_key_id {
        return Err(Error::Conflict(format!(
            "account {} now has API key ID {}, not {}: every app.config naming the old ID must be edited",
            k.id, k.api_key_id, input.api_key_id
        )));
    }
    Ok(Regenerated {
        account_id: k.id,
        api_key_id: k.api_key_id.clone(),
        display_name: k.display_name.clone(),
        secret,
        regenerated_at: k.last_modified_date,
        inventory: vec![inventory(k, input.consumers.clone())],
    })
}

/// Regenerates the account's secret in place: same ID, new secret captured
/// straight into the store. The old secret stops working at once.
fn regenerate_secret(ctx: &Context, input: RegenerateIn) -> Result<Regenerated, Error> {
    let (k, secret) = input.login.soar(ctx).regenerate(input.account_id)?;
    regenerated(&input, &k, secret)
}

/// No snapshot is needed: the ID does not change and nothing is created. A
/// captured secret is adopted once it signs in (it is the account's current
/// one); without one the old secret may already be gone, and regenerating
/// again is the only way back.
fn reconcile_regenerate(
    ctx: &Context,
    r: Reconcile<RegenerateIn, Value>,
) -> Result<Outcome<Regenerated>, Error> {
    let Some(secret) = r.captured.get("secret").cloned() else {
        return Ok(Outcome::NotApplied);
    };
    let soar = r.input.login.soar(ctx);
    let k = soar.api_key(r.input.account_id)?;
    let works = vendor::try_session(
        ctx,
        &Login {
            id: &k.api_key_id,
            secret: &secret,
        },
    )?;
    if !works {
        return Ok(Outcome::NotApplied);
    }
    Ok(Outcome::Applied {
        output: regenerated(&r.input, &k, secret)?,
    })
}

#[derive(Deserialize)]
struct UpdateIn {
    #[serde(flatten)]
    login: OrgLogin,
    app: String,
    #[serde(flatten)]
    account: AccountRef,
    secret: Handle,
}

/// Sets the App Secret the app reads the account's secret from (the host
/// puts the value in the request; SOAR never echoes it).
fn update_app_secret(ctx: &Context, input: UpdateIn) -> Result<Value, Error> {
    let soar = input.login.soar(ctx);
    let app = soar.app(&input.app)?;
    let cfg = app.config();
    let name = match cfg.secret_ref() {
        Some(SecretRef::Plain) => {
            return Err(Error::InvalidInput(format!(
                "app {}'s app.config holds api_key_secret in clear, not as an App Secret: edit app.config on its Configuration tab",
                app.name
            )));
        }
        Some(SecretRef::Pam(n)) => {
            return Err(Error::InvalidInput(format!(
                "app {} reads api_key_secret from the PAM secret ^{n}: update it in the PAM vault",
                app.name
            )));
        }
        Some(r @ SecretRef::App(_))
            if cfg.api_key_id() == Some(input.account.api_key_id.as_str())
                || r.name() == Some(input.account.account.as_str()) =>
        {
            r.name().unwrap_or_default().to_owned()
        }
        _ if soar.app_secret_names(&app)?.contains(&input.account.account) => input.account.account.clone(),
        _ => {
            return Err(Error::NotFound(format!(
                "app {} has no App Secret for API key account {} (its app.config names neither the account's ID nor an App Secret of that name)",
                app.name, input.account.account
            )));
        }
    };
    let updated_at = soar.put_app_secret(&app, &name, &input.secret)?;
    Ok(
        json!({"app": app.name, "app_id": app.id, "inst_id": app.inst_id, "secret_name": name,
              "updated_at": updated_at}),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckLoginIn {
    api_key_id: String,
    secret: Handle,
    #[serde(default)]
    org_id: Option<u64>,
}

/// Signs in with an account's own credentials (`GET /rest/session`, as the
/// SOAR SDK does): proves the secret is current and the account not locked.
fn check_login(ctx: &Context, input: CheckLoginIn) -> Result<Value, Error> {
    let s = vendor::session(
        ctx,
        &Login {
            id: &input.api_key_id,
            secret: &input.secret,
        },
    )?;
    let orgs: Vec<u64> = s
        .get("orgs")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|o| o.get("id").and_then(Value::as_u64))
        .collect();
    if let Some(org) = input.org_id
        && !orgs.contains(&org)
    {
        return Err(Error::Forbidden(format!(
            "API key {} signs in but is not in organization {org}",
            input.api_key_id
        )));
    }
    Ok(json!({"ok": true, "api_key_id": input.api_key_id,
              "api_key_handle": s.get("api_key_handle").and_then(Value::as_u64).unwrap_or(0), "orgs": orgs}))
}

#[derive(Deserialize)]
struct CheckAccountIn {
    #[serde(flatten)]
    login: OrgLogin,
    account_id: u64,
}

/// The account is unlocked, enabled, and nothing failed to sign in with it
/// since its secret was regenerated (an app still on the old secret would).
fn check_account(ctx: &Context, input: CheckAccountIn) -> Result<Value, Error> {
    let k = input.login.soar(ctx).api_key(input.account_id)?;
    if k.locked {
        return Err(Error::Conflict(format!(
            "API key account {} ({}) is locked after {} failed logins: an app still signs in with an old secret",
            k.display_name, k.id, k.failed_login_count
        )));
    }
    if !k.enabled {
        return Err(Error::Conflict(format!(
            "API key account {} ({}) is disabled",
            k.display_name, k.id
        )));
    }
    if k.failed_login_count > 0 {
        return Err(Error::Conflict(format!(
            "API key account {} ({}) has {} failed logins since its secret was regenerated: an app still signs in with an old secret",
            k.display_name, k.id, k.failed_login_count
        )));
    }
    Ok(
        json!({"id": k.id, "api_key_id": k.api_key_id, "display_name": k.display_name,
              "locked": false, "failed_login_count": 0}),
    )
}

/// The app is deployed and its App Host online.
fn check_app(ctx: &Context, input: AppIn) -> Result<Value, Error> {
    let app = input.login.soar(ctx).app(&input.app)?;
    match app.status.as_str() {
        "deployed" => {}
        // Still on its way: worth a retry.
        "deploying" | "installing" => {
            return Err(Error::Upstream {
                status: 503,
                body_excerpt: format!("app {} is still {}", app.name, app.status),
            });
        }
        other => {
            return Err(Error::Conflict(format!(
                "app {} (installation {}) is {other}, not deployed",
                app.name, app.inst_id
            )));
        }
    }
    if app.host_status != "online" {
        return Err(Error::Conflict(format!(
            "app {}'s App Host {} is {}, not online",
            app.name, app.host_name, app.host_status
        )));
    }
    Ok(json!({"app": app.name, "status": "deployed", "app_host": app.host_name, "app_host_status": "online"}))
}

#[derive(Deserialize)]
struct RecoveryIn {
    #[serde(flatten)]
    login: OrgLogin,
    account_id: u64,
    /// The account's `last_modified_date` before the run changed anything.
    modified_before: i64,
    /// Every app using the account, and those that were not undeployed
    /// when the run started (comma-separated names, as `find-apps` gives).
    apps: String,
    active: String,
}

fn names(list: &str) -> Vec<&str> {
    list.split(',').map(str::trim).filter(|n| !n.is_empty()).collect()
}

/// After a failure midway: which apps may be deployed again, and what to do
/// for the others. Read from SOAR itself, not from what the run believes:
/// an App Secret updated after the account's secret was regenerated holds
/// the new one; deploying an app that does not would lock the account.
fn plan_recovery(ctx: &Context, input: RecoveryIn) -> Result<Value, Error> {
    let soar = input.login.soar(ctx);
    let k = soar.api_key(input.account_id)?;
    let active = names(&input.active);
    let mut redeploy: Vec<String> = Vec::new();
    let mut report: Vec<String> = Vec::new();
    let regenerated = k.last_modified_date != input.modified_before;
    if k.locked {
        for app in names(&input.apps) {
            report.push(format!(
                "{app}: left undeployed: account {} is locked; regenerate its secret again (re-run this playbook), which updates and deploys {app}",
                k.display_name
            ));
        }
    } else {
        let listed = soar.apps()?;
        for name in names(&input.apps) {
            let Some(app) = listed.iter().find(|a| a.name == name) else {
                report.push(format!("{name}: no longer on the Apps tab; nothing to do"));
                continue;
            };
            let was_active = active.contains(&name);
            let holds_new = !regenerated || holds_secret_since(&soar, app, &k)?;
            match (holds_new, was_active) {
                (true, true) => redeploy.push(name.to_owned()),
                (true, false) => {}
                (false, was_active) => report.push(format!(
                    "{name}: {}its App Secret still holds the old secret of {}, which no longer works; \
                     re-run this playbook, or paste the new secret (`rota secrets get <the playbook's secret> --reveal`) into \
                     its Configuration tab > App Secrets and click Update{}",
                    if was_active { "left undeployed: " } else { "" },
                    k.display_name,
                    if was_active { ", then Deploy on its Details tab" } else { "" }
                )),
            }
        }
    }
    Ok(json!({
        "regenerated": regenerated,
        "locked": k.locked,
        "redeploy": redeploy.join(","),
        "report": if report.is_empty() { "every app that was running can run again".to_owned() } else { report.join("\n") },
        "stranded": report.len(),
    }))
}

fn holds_secret_since(soar: &Soar, app: &App, k: &KeyAccount) -> Result<bool, Error> {
    let cfg = app.config();
    let wanted = match cfg.secret_ref() {
        Some(r @ SecretRef::App(_)) => r.name().unwrap_or_default().to_owned(),
        _ => k.display_name.clone(),
    };
    Ok(soar
        .app_secrets(app)?
        .iter()
        .any(|s| s.name == wanted && s.last_modified_date >= k.last_modified_date))
}
