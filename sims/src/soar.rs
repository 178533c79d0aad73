//! IBM QRadar SOAR simulator: `/rest/session` with HTTP Basic
//! `api_key_id:api_key_secret` (documented), and the `[INVENTED]` API key
//! account and App Host shapes of VENDORS.md §3.4, with SOAR's result DTO
//! `{"success":false,"title","message","hints","error_code"}` for errors.
//!
//! Design decision: deployed apps log in from their App Host on every tick
//! with the `api_key_id` of their app.config and the app secret it names
//! (`api_key_secret=$name`), through the same code path as HTTP callers, so
//! an app left holding an old secret raises the account's failed-login
//! count until it locks (N = `soar_lockout_threshold`) and feeds the
//! per-IP ban (>`soar_ip_ban_threshold` failures per scaled hour).
//!
//! Modeled beyond VENDORS.md §3.4 (SOAR conventions kept: epoch-ms dates):
//! each App Secret carries `last_modified_date`, so a caller can tell which
//! apps were given a secret after the account's was regenerated; and the
//! admin API's UI stand-ins (*Undeploy*, *Deploy*, *Update* of an App Secret
//! pasting what *Copy to Clipboard* of the last *Regenerate* copied).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use axum::routing::{get, post, put};
use axum::{Extension, Router};
use base64::Engine;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};
use time::OffsetDateTime;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::System;
use crate::fault::ErrorStyle;
use crate::server::PeerAddr;
use crate::sim::{BoxFuture, Ctx, SimHandle, Simulator, launch};
use crate::util::{Gen, epoch_ms, fingerprint, iso, json, lock, parse_json};

struct SoarStyle;

impl ErrorStyle for SoarStyle {
    fn error(&self, status: StatusCode, message: &str) -> Response {
        json(
            status,
            json!({"success": false, "title": status.canonical_reason(), "message": message,
                   "hints": [], "error_code": "generic", "error_payload": {}}),
        )
    }
}

fn err(status: StatusCode, message: &str) -> Response {
    SoarStyle.error(status, message)
}

/// Org id of the fixture organisation.
pub(crate) const ORG_ID: u64 = 201;
const ONE_HOUR: u64 = 3600;
const ADMIN_NAME: &str = "admin@acme-security.example";

struct Org {
    id: u64,
    name: String,
    uuid: String,
}

struct KeyAccount {
    id: u64,
    api_key_id: String,
    secret: String,
    display_name: String,
    description: Option<String>,
    permissions: Vec<String>,
    orgs: Vec<u64>,
    locked: bool,
    enabled: bool,
    failed_logins: u32,
    created: i64,
    modified: i64,
}

impl KeyAccount {
    fn json(&self) -> Value {
        json!({
            "id": self.id, "api_key_id": self.api_key_id, "display_name": self.display_name,
            "description": self.description, "locked": self.locked, "enabled": self.enabled,
            "failed_login_count": self.failed_logins, "permissions": self.permissions, "orgs": self.orgs,
            "create_date": self.created, "last_modified_date": self.modified,
            "last_modified_by": {"id": 1, "name": ADMIN_NAME},
        })
    }
}

struct AppSecret {
    value: String,
    protected: bool,
    modified: i64,
}

impl AppSecret {
    fn json(&self, name: &str) -> Value {
        json!({"name": name, "protected": self.protected, "last_modified_date": self.modified})
    }
}

struct App {
    id: u64,
    name: String,
    display_name: String,
    uuid: String,
    inst_id: u64,
    status: String,
    host_id: String,
    host_name: String,
    host_ip: String,
    config_string: String,
    secrets: BTreeMap<String, AppSecret>,
    auth_log: Vec<Value>,
}

impl App {
    fn json(&self) -> Value {
        json!({
            "id": self.id, "name": self.name, "display_name": self.display_name, "uuid": self.uuid,
            "current_installation": {
                "id": self.inst_id, "status": self.status,
                "app_host": {"id": self.host_id, "name": self.host_name, "status": "online"},
                "executables": [{"name": self.name, "image": format!("quay.io/ibmresilient/{}:1.2.0", self.name),
                                 "config_string": self.config_string, "permission_handles": ["read_data", "read_function"],
                                 "uuid": self.uuid}],
            },
        })
    }

    /// `(api_key_id, secret reference)` from the app.config text.
    fn configured_login(&self) -> (Option<String>, Option<String>) {
        let get = |k: &str| {
            self.config_string.lines().find_map(|l| {
                let (a, b) = l.split_once('=')?;
                (a.trim() == k).then(|| b.trim().to_owned())
            })
        };
        (get("api_key_id"), get("api_key_secret"))
    }
}

#[derive(Default)]
struct IpRec {
    failures: Vec<OffsetDateTime>,
    banned_until: Option<OffsetDateTime>,
    repeat: u32,
}

struct SoarState {
    ids: Gen,
    orgs: Vec<Org>,
    keys: Vec<KeyAccount>,
    apps: Vec<App>,
    ips: HashMap<String, IpRec>,
    next_key_id: u64,
    /// What the UI's *Copy to Clipboard* last copied: `(api_key_id, secret)`.
    clipboard: Option<(String, String)>,
}

pub(crate) const OPERATOR_KEY: &str = "rota_automation";
/// The App Secret fn_misp keeps fn_soar_utils's account secret in.
const MISP_SECRET_NAME: &str = "soar_api_key_secret";

fn config_string(org: &str, api_key_id: &str, secret_name: &str, section: &str) -> String {
    format!(
        "[resilient]\nhost=soar.acme-security.example\nport=443\norg={org}\napi_key_id={api_key_id}\napi_key_secret=${secret_name}\ncafile=false\n\n[{section}]\npolling_interval=60\n"
    )
}

impl SoarState {
    fn fixtures(seed: u64, now: OffsetDateTime, lockout: u32) -> Self {
        let mut ids = Gen::new(seed, "soar");
        let org = Org {
            id: ORG_ID,
            name: "Acme Security".into(),
            uuid: ids.uuid().to_string(),
        };
        let day = 86_400_000i64;
        let base = epoch_ms(now);
        let key = |ids: &mut Gen, id: u64, name: &str, perms: &[&str], age_days: i64| KeyAccount {
            id,
            api_key_id: ids.uuid().to_string(),
            secret: ids.alnum(43),
            display_name: name.into(),
            description: Some(format!("API key for {name}")),
            permissions: perms.iter().map(|p| (*p).to_owned()).collect(),
            orgs: vec![ORG_ID],
            locked: false,
            enabled: true,
            failed_logins: 0,
            created: base - age_days * day,
            modified: base - age_days * day / 2,
        };
        let mut keys = vec![
            key(
                &mut ids,
                3,
                OPERATOR_KEY,
                &["read_data", "read_function", "api_keys", "apps"],
                120,
            ),
            key(
                &mut ids,
                12,
                "fn_soar_utils",
                &[
                    "read_data",
                    "read_function",
                    "create_incident",
                    "read_all_incidents",
                ],
                400,
            ),
            key(
                &mut ids,
                14,
                "fn_qradar_integration",
                &["read_data", "read_function", "edit_all_incidents_fields"],
                300,
            ),
            key(
                &mut ids,
                15,
                "fn_splunk_integration",
                &["read_data", "read_function"],
                700,
            ),
        ];
        if let Some(k) = keys.iter_mut().find(|k| k.id == 15) {
            k.locked = true;
            k.failed_logins = lockout;
        }
        let host_id = ids.uuid().to_string();
        let key_of = |keys: &[KeyAccount], id: u64| {
            keys.iter().find(|k| k.id == id).map(|k| {
                (
                    k.api_key_id.clone(),
                    k.display_name.clone(),
                    k.secret.clone(),
                    k.modified,
                )
            })
        };
        let mut apps = Vec::new();
        for (id, inst_id, name, display, key_id, status) in [
            (7, 9, "fn_soar_utils", "SOAR Utilities", 12, "deployed"),
            (8, 11, "fn_misp", "MISP Integration", 12, "deployed"),
            (
                9,
                13,
                "fn_qradar_integration",
                "QRadar Integration",
                14,
                "deployed",
            ),
            (10, 16, "fn_splunk_integration", "Splunk Integration", 15, "error"),
        ] {
            let (api_key_id, account_name, secret, key_modified) = key_of(&keys, key_id).unwrap_or_default();
            // The locked account's app holds a stale secret, set before the
            // account's last regeneration: that is how it got locked. The
            // others were given the current secret after it was made.
            let (value, modified) = if key_id == 15 {
                (ids.alnum(43), key_modified - 30 * day)
            } else {
                (secret, key_modified + day / 24)
            };
            // fn_misp names its App Secret its own way: only its app.config's
            // api_key_id tells that it uses fn_soar_utils's account.
            let secret_name = if name == "fn_misp" {
                MISP_SECRET_NAME.to_owned()
            } else {
                account_name
            };
            let mut secrets = BTreeMap::new();
            secrets.insert(
                secret_name.clone(),
                AppSecret {
                    value,
                    protected: true,
                    modified,
                },
            );
            apps.push(App {
                id,
                name: name.into(),
                display_name: display.into(),
                uuid: ids.uuid().to_string(),
                inst_id,
                status: status.into(),
                host_id: host_id.clone(),
                host_name: "apphost-1".into(),
                host_ip: "10.0.0.5".into(),
                config_string: config_string(&org.name, &api_key_id, &secret_name, name),
                secrets,
                auth_log: Vec::new(),
            });
        }
        Self {
            ids,
            orgs: vec![org],
            keys,
            apps,
            ips: HashMap::new(),
            next_key_id: 16,
            clipboard: None,
        }
    }
}

pub(crate) struct Soar {
    ctx: Ctx,
    state: Mutex<SoarState>,
}

#[derive(Debug)]
struct AuthFailure(&'static str);

impl Soar {
    /// One login attempt, from HTTP or an App Host; Ok(index of the account).
    fn authenticate(
        &self,
        st: &mut SoarState,
        id: &str,
        secret: &str,
        ip: &str,
    ) -> Result<usize, AuthFailure> {
        let now = self.ctx.clock.now();
        let window = self.ctx.scale.duration(ONE_HOUR);
        let cfg = &self.ctx.config;
        // Only failures leave a record: a good login changes nothing.
        if st
            .ips
            .get(ip)
            .and_then(|r| r.banned_until)
            .is_some_and(|t| t > now)
        {
            return Err(AuthFailure(
                "The IP address has been banned after too many failed logins",
            ));
        }
        let outcome = match st.keys.iter().position(|k| k.api_key_id == id) {
            None => Err(AuthFailure("Unknown basic authentication clientId")),
            Some(i) => match st.keys.get_mut(i) {
                Some(k) if k.locked => Err(AuthFailure("API key is locked after too many failed logins")),
                Some(k) if k.secret != secret => {
                    k.failed_logins += 1;
                    if k.failed_logins >= cfg.soar_lockout_threshold && !k.locked {
                        tracing::info!(
                            api_key = k.id,
                            failed = k.failed_logins,
                            "sims: SOAR API key account locked"
                        );
                        k.locked = true;
                    }
                    Err(AuthFailure("Invalid API key secret"))
                }
                Some(k) if !k.enabled => Err(AuthFailure("API key has no enabled orgs")),
                Some(k) => {
                    k.failed_logins = 0;
                    Ok(i)
                }
                None => Err(AuthFailure("Unknown basic authentication clientId")),
            },
        };
        if outcome.is_err() {
            let rec = st.ips.entry(ip.to_owned()).or_default();
            rec.failures.retain(|t| *t > now - window);
            rec.failures.push(now);
            if rec.failures.len() > cfg.soar_ip_ban_threshold as usize {
                rec.banned_until = Some(now + window);
                rec.repeat += 1;
                rec.failures.clear();
            }
        }
        outcome
    }

    /// Authenticates an HTTP request by its Basic header.
    fn caller(
        &self,
        headers: &HeaderMap,
        peer: PeerAddr,
    ) -> Result<(usize, std::sync::MutexGuard<'_, SoarState>), Response> {
        let creds = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Basic "))
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b.trim()).ok())
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| s.split_once(':').map(|(a, b)| (a.to_owned(), b.to_owned())));
        let Some((id, secret)) = creds else {
            return Err(err(StatusCode::UNAUTHORIZED, "Authentication required"));
        };
        let mut st = lock(&self.state);
        match self.authenticate(&mut st, &id, &secret, &peer.0.ip().to_string()) {
            Ok(i) => Ok((i, st)),
            Err(AuthFailure(m)) => Err(err(StatusCode::UNAUTHORIZED, m)),
        }
    }

    /// Authenticates and checks org membership and a permission handle.
    fn org_caller(
        &self,
        headers: &HeaderMap,
        peer: PeerAddr,
        org: u64,
        perm: &str,
    ) -> Result<std::sync::MutexGuard<'_, SoarState>, Response> {
        let (i, st) = self.caller(headers, peer)?;
        let Some(k) = st.keys.get(i) else {
            return Err(err(StatusCode::UNAUTHORIZED, "Unknown API key"));
        };
        if !st.orgs.iter().any(|o| o.id == org) {
            return Err(err(StatusCode::NOT_FOUND, "Organization not found"));
        }
        if !k.orgs.contains(&org) {
            return Err(err(
                StatusCode::FORBIDDEN,
                "This organization is not accessible to you",
            ));
        }
        if !k.permissions.iter().any(|p| p == perm) {
            return Err(err(StatusCode::FORBIDDEN, &format!("Missing permission: {perm}")));
        }
        Ok(st)
    }

    fn regenerate(&self, id: u64) -> Option<Value> {
        let now = epoch_ms(self.ctx.clock.now());
        let mut st = lock(&self.state);
        let secret = st.ids.alnum(43);
        let k = st.keys.iter_mut().find(|k| k.id == id)?;
        k.secret = secret;
        k.locked = false;
        k.failed_logins = 0;
        k.modified = now;
        let mut v = k.json();
        if let Some(o) = v.as_object_mut() {
            o.insert("api_key_secret".into(), json!(k.secret));
        }
        Some(v)
    }

    /// *Update* in an app's Configuration tab > App Secrets (API and UI).
    fn set_app_secret(
        &self,
        st: &mut SoarState,
        app: usize,
        name: &str,
        value: String,
        protected: bool,
    ) -> Response {
        if value.is_empty() {
            return err(StatusCode::BAD_REQUEST, "Secret Value is required");
        }
        let modified = epoch_ms(self.ctx.clock.now());
        let Some(a) = st.apps.get_mut(app) else {
            return err(StatusCode::NOT_FOUND, "App installation not found");
        };
        let secret = AppSecret {
            value,
            protected,
            modified,
        };
        let body = secret.json(name);
        a.secrets.insert(name.to_owned(), secret);
        json(StatusCode::OK, body)
    }
}

/// An app by its id or its name, as the Apps tab shows both.
fn app_index(st: &SoarState, app: &str) -> Option<usize> {
    st.apps
        .iter()
        .position(|a| a.name == app || a.id.to_string() == app)
}

impl Simulator for Soar {
    fn operator(&self) -> Value {
        operator_view(self)
    }

    fn state(&self) -> Value {
        let st = lock(&self.state);
        let now = self.ctx.clock.now();
        json!({
            "orgs": st.orgs.iter().map(|o| json!({"id": o.id, "name": o.name, "uuid": o.uuid})).collect::<Vec<_>>(),
            "apiKeys": st.keys.iter().map(|k| {
                let mut v = k.json();
                if let Some(o) = v.as_object_mut() {
                    o.insert("secretFingerprint".into(), json!(fingerprint(&k.secret)));
                }
                v
            }).collect::<Vec<_>>(),
            "apps": st.apps.iter().map(|a| {
                let mut v = a.json();
                let secrets: Vec<Value> = a.secrets.iter().map(|(n, s)| {
                    let mut j = s.json(n);
                    if let Some(o) = j.as_object_mut() {
                        o.insert("fingerprint".into(), json!(fingerprint(&s.value)));
                    }
                    j
                }).collect();
                if let Some(inst) = v.get_mut("current_installation").and_then(Value::as_object_mut) {
                    inst.insert("secrets".into(), secrets.into());
                }
                if let Some(o) = v.as_object_mut() {
                    o.insert("authLog".into(), json!(a.auth_log));
                }
                v
            }).collect::<Vec<_>>(),
            "ipBans": st.ips.iter().map(|(ip, r)| json!({"ip": ip, "recentFailures": r.failures.len(),
                "bannedUntil": r.banned_until.map(iso), "banned": r.banned_until.is_some_and(|t| t > now),
                "ipban_repeat": r.repeat})).collect::<Vec<_>>(),
        })
    }

    fn reset(&self) {
        *lock(&self.state) = SoarState::fixtures(
            self.ctx.seed(),
            self.ctx.clock.now(),
            self.ctx.config.soar_lockout_threshold,
        );
    }

    /// Every deployed app logs in once from its App Host.
    fn tick(self: Arc<Self>) -> BoxFuture<Value> {
        Box::pin(async move {
            let now = self.ctx.clock.now();
            let mut st = lock(&self.state);
            let mut results = Vec::new();
            for i in 0..st.apps.len() {
                let Some(app) = st.apps.get(i) else { continue };
                if app.status != "deployed" {
                    continue;
                }
                // Any app.config value may be `$NAME` / `${NAME}`: the App Secret NAME.
                let resolve = |r: &str| {
                    let name = r
                        .trim_start_matches('$')
                        .trim_start_matches('{')
                        .trim_end_matches('}');
                    if r.starts_with('$') {
                        app.secrets.get(name).map(|s| s.value.clone())
                    } else {
                        Some(r.to_owned())
                    }
                };
                let (key_ref, secret_ref) = app.configured_login();
                let key_id = key_ref.as_deref().and_then(resolve);
                let secret = secret_ref.as_deref().and_then(resolve);
                let ip = app.host_ip.clone();
                let name = app.name.clone();
                let outcome = match (key_id, secret) {
                    (Some(id), Some(secret)) => self.authenticate(&mut st, &id, &secret, &ip).map(|_| ()),
                    _ => Err(AuthFailure(
                        "app.config has no usable api_key_id / api_key_secret",
                    )),
                };
                let entry = json!({"at": iso(now), "app": name, "ok": outcome.is_ok(),
                                   "message": outcome.err().map(|e| e.0)});
                if let Some(app) = st.apps.get_mut(i) {
                    app.auth_log.push(entry.clone());
                }
                results.push(entry);
            }
            json!({"logins": results})
        })
    }
}

type S = State<Arc<Soar>>;

async fn session(State(s): S, Extension(peer): Extension<PeerAddr>, headers: HeaderMap) -> Response {
    let (i, mut st) = match s.caller(&headers, peer) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let csrf = st.ids.hex(16);
    let Some(k) = st.keys.get(i) else {
        return err(StatusCode::UNAUTHORIZED, "Unknown API key");
    };
    let orgs: Vec<Value> = st
        .orgs
        .iter()
        .filter(|o| k.orgs.contains(&o.id))
        .map(|o| {
            json!({"id": o.id, "name": o.name, "uuid": o.uuid, "cloud_account": null, "enabled": true,
                   "perms": {"administrator": false, "master_administrator": false},
                   "has_saml": false, "require_saml": false, "twofactor_cookie_lifetime_secs": 0})
        })
        .collect();
    json(
        StatusCode::OK,
        json!({"api_key_handle": k.id, "user_id": k.id, "user_email": null, "user_fname": k.display_name,
               "user_lname": "", "csrf_token": csrf, "session_ip": peer.0.ip().to_string(),
               "is_ldap": false, "is_saml": false, "saml_alias": null, "orgs": orgs}),
    )
}

async fn list_keys(
    State(s): S,
    Extension(peer): Extension<PeerAddr>,
    headers: HeaderMap,
    Path(org): Path<u64>,
) -> Response {
    match s.org_caller(&headers, peer, org, "api_keys") {
        Ok(st) => json(
            StatusCode::OK,
            Value::Array(
                st.keys
                    .iter()
                    .filter(|k| k.orgs.contains(&org))
                    .map(KeyAccount::json)
                    .collect(),
            ),
        ),
        Err(r) => r,
    }
}

async fn get_key(
    State(s): S,
    Extension(peer): Extension<PeerAddr>,
    headers: HeaderMap,
    Path((org, id)): Path<(u64, u64)>,
) -> Response {
    match s.org_caller(&headers, peer, org, "api_keys") {
        Ok(st) => match st.keys.iter().find(|k| k.id == id && k.orgs.contains(&org)) {
            Some(k) => json(StatusCode::OK, k.json()),
            None => err(StatusCode::NOT_FOUND, "API key not found"),
        },
        Err(r) => r,
    }
}

#[derive(Deserialize)]
struct CreateKey {
    display_name: String,
    description: Option<String>,
    #[serde(default)]
    permissions: Vec<String>,
    #[serde(default)]
    orgs: Vec<u64>,
}

async fn create_key(
    State(s): S,
    Extension(peer): Extension<PeerAddr>,
    headers: HeaderMap,
    Path(org): Path<u64>,
    body: Bytes,
) -> Response {
    let b = match parse_json::<CreateKey>(&body) {
        Ok(b) => b,
        Err(e) => return err(StatusCode::BAD_REQUEST, &e),
    };
    let now = epoch_ms(s.ctx.clock.now());
    let mut st = match s.org_caller(&headers, peer, org, "api_keys") {
        Ok(st) => st,
        Err(r) => return r,
    };
    if b.display_name.trim().is_empty() || st.keys.iter().any(|k| k.display_name == b.display_name) {
        return err(
            StatusCode::BAD_REQUEST,
            "The display name must be unique and not empty",
        );
    }
    let mut orgs = b.orgs;
    if !orgs.contains(&org) {
        orgs.push(org);
    }
    let k = KeyAccount {
        id: st.next_key_id,
        api_key_id: st.ids.uuid().to_string(),
        secret: st.ids.alnum(43),
        display_name: b.display_name,
        description: b.description,
        permissions: b.permissions,
        orgs,
        locked: false,
        enabled: true,
        failed_logins: 0,
        created: now,
        modified: now,
    };
    st.next_key_id += 1;
    let mut v = k.json();
    if let Some(o) = v.as_object_mut() {
        o.insert("api_key_secret".into(), json!(k.secret));
    }
    st.keys.push(k);
    json(StatusCode::OK, v)
}

async fn regenerate(
    State(s): S,
    Extension(peer): Extension<PeerAddr>,
    headers: HeaderMap,
    Path((org, id)): Path<(u64, u64)>,
) -> Response {
    match s.org_caller(&headers, peer, org, "api_keys") {
        Ok(st) => {
            if !st.keys.iter().any(|k| k.id == id && k.orgs.contains(&org)) {
                return err(StatusCode::NOT_FOUND, "API key not found");
            }
        }
        Err(r) => return r,
    }
    match s.regenerate(id) {
        Some(v) => json(StatusCode::OK, v),
        None => err(StatusCode::NOT_FOUND, "API key not found"),
    }
}

async fn delete_key(
    State(s): S,
    Extension(peer): Extension<PeerAddr>,
    headers: HeaderMap,
    Path((org, id)): Path<(u64, u64)>,
) -> Response {
    let mut st = match s.org_caller(&headers, peer, org, "api_keys") {
        Ok(st) => st,
        Err(r) => return r,
    };
    let before = st.keys.len();
    st.keys.retain(|k| !(k.id == id && k.orgs.contains(&org)));
    if st.keys.len() == before {
        return err(StatusCode::NOT_FOUND, "API key not found");
    }
    json(
        StatusCode::OK,
        json!({"success": true, "title": null, "message": null, "hints": []}),
    )
}

async fn list_apps(
    State(s): S,
    Extension(peer): Extension<PeerAddr>,
    headers: HeaderMap,
    Path(org): Path<u64>,
) -> Response {
    match s.org_caller(&headers, peer, org, "apps") {
        Ok(st) => json(
            StatusCode::OK,
            Value::Array(st.apps.iter().map(App::json).collect()),
        ),
        Err(r) => r,
    }
}

async fn get_app(
    State(s): S,
    Extension(peer): Extension<PeerAddr>,
    headers: HeaderMap,
    Path((org, app)): Path<(u64, u64)>,
) -> Response {
    match s.org_caller(&headers, peer, org, "apps") {
        Ok(st) => match st.apps.iter().find(|a| a.id == app) {
            Some(a) => json(StatusCode::OK, a.json()),
            None => err(StatusCode::NOT_FOUND, "App not found"),
        },
        Err(r) => r,
    }
}

async fn set_installation(
    State(s): S,
    Extension(peer): Extension<PeerAddr>,
    headers: HeaderMap,
    Path((org, app, inst)): Path<(u64, u64, u64)>,
    body: Bytes,
) -> Response {
    #[derive(Deserialize)]
    struct B {
        status: String,
    }
    let b = match parse_json::<B>(&body) {
        Ok(b) => b,
        Err(e) => return err(StatusCode::BAD_REQUEST, &e),
    };
    let mut st = match s.org_caller(&headers, peer, org, "apps") {
        Ok(st) => st,
        Err(r) => return r,
    };
    let Some(a) = st.apps.iter_mut().find(|a| a.id == app && a.inst_id == inst) else {
        return err(StatusCode::NOT_FOUND, "App installation not found");
    };
    set_status(a, &b.status)
}

fn set_status(a: &mut App, requested: &str) -> Response {
    a.status = match requested {
        "deploying" | "deployed" => "deployed".into(),
        "undeploying" | "undeployed" => "undeployed".into(),
        other => {
            return err(
                StatusCode::BAD_REQUEST,
                &format!("Unsupported installation status '{other}'"),
            );
        }
    };
    json(StatusCode::OK, a.json())
}

async fn list_app_secrets(
    State(s): S,
    Extension(peer): Extension<PeerAddr>,
    headers: HeaderMap,
    Path((org, app, inst)): Path<(u64, u64, u64)>,
) -> Response {
    match s.org_caller(&headers, peer, org, "apps") {
        Ok(st) => match st.apps.iter().find(|a| a.id == app && a.inst_id == inst) {
            Some(a) => json(
                StatusCode::OK,
                Value::Array(a.secrets.iter().map(|(n, s)| s.json(n)).collect()),
            ),
            None => err(StatusCode::NOT_FOUND, "App installation not found"),
        },
        Err(r) => r,
    }
}

async fn put_app_secret(
    State(s): S,
    Extension(peer): Extension<PeerAddr>,
    headers: HeaderMap,
    Path((org, app, inst, name)): Path<(u64, u64, u64, String)>,
    body: Bytes,
) -> Response {
    #[derive(Deserialize)]
    struct B {
        value: String,
        #[serde(default = "yes")]
        protected: bool,
    }
    fn yes() -> bool {
        true
    }
    let b = match parse_json::<B>(&body) {
        Ok(b) => b,
        Err(e) => return err(StatusCode::BAD_REQUEST, &e),
    };
    let mut st = match s.org_caller(&headers, peer, org, "apps") {
        Ok(st) => st,
        Err(r) => return r,
    };
    let Some(i) = st.apps.iter().position(|a| a.id == app && a.inst_id == inst) else {
        return err(StatusCode::NOT_FOUND, "App installation not found");
    };
    s.set_app_secret(&mut st, i, &name, b.value, b.protected)
}

/// *Regenerate API Key Secret*, then *Copy to Clipboard* of the API Key
/// Credentials it shows.
async fn ui_regenerate(State(s): S, Path(id): Path<u64>) -> Response {
    match s.regenerate(id) {
        Some(v) => {
            let copied = v
                .get("api_key_id")
                .and_then(Value::as_str)
                .zip(v.get("api_key_secret").and_then(Value::as_str))
                .map(|(a, b)| (a.to_owned(), b.to_owned()));
            lock(&s.state).clipboard = copied;
            json(StatusCode::OK, v)
        }
        None => err(StatusCode::NOT_FOUND, "API key not found"),
    }
}

/// *Undeploy* / *Deploy* on an app's Details tab.
async fn ui_app_status(State(s): S, Path((app, action)): Path<(String, String)>) -> Response {
    let requested = match action.as_str() {
        "undeploy" => "undeploying",
        "deploy" => "deploying",
        _ => return err(StatusCode::NOT_FOUND, "Not found"),
    };
    let mut st = lock(&s.state);
    let Some(a) = app_index(&st, &app).and_then(|i| st.apps.get_mut(i)) else {
        return err(StatusCode::NOT_FOUND, "App not found");
    };
    set_status(a, requested)
}

/// Editing app.config on the app's Configuration tab (`{"config_string"}`).
async fn ui_app_config(State(s): S, Path(app): Path<String>, body: Bytes) -> Response {
    #[derive(Deserialize)]
    struct B {
        config_string: String,
    }
    let b = match parse_json::<B>(&body) {
        Ok(b) => b,
        Err(e) => return err(StatusCode::BAD_REQUEST, &e),
    };
    let mut st = lock(&s.state);
    let Some(a) = app_index(&st, &app).and_then(|i| st.apps.get_mut(i)) else {
        return err(StatusCode::NOT_FOUND, "App not found");
    };
    a.config_string = b.config_string;
    json(StatusCode::OK, a.json())
}

/// *Update* of an App Secret: the Secret Value typed (`{"value"}`), or
/// without one, pasted from what *Copy to Clipboard* copied last.
async fn ui_app_secret(State(s): S, Path((app, name)): Path<(String, String)>, body: Bytes) -> Response {
    #[derive(Deserialize)]
    struct B {
        value: Option<String>,
    }
    let b = match parse_json::<B>(&body) {
        Ok(b) => b,
        Err(e) => return err(StatusCode::BAD_REQUEST, &e),
    };
    let mut st = lock(&s.state);
    let Some(i) = app_index(&st, &app) else {
        return err(StatusCode::NOT_FOUND, "App not found");
    };
    let Some(value) = b.value.or_else(|| st.clipboard.as_ref().map(|(_, v)| v.clone())) else {
        return err(
            StatusCode::BAD_REQUEST,
            "Secret Value is required (the clipboard is empty: regenerate a secret first)",
        );
    };
    s.set_app_secret(&mut st, i, &name, value, true)
}

fn operator_view(s: &Soar) -> Value {
    let st = lock(&s.state);
    let k = st.keys.iter().find(|k| k.display_name == OPERATOR_KEY);
    json!({"org_id": ORG_ID,
                "apiKey": k.map(|k| json!({"id": k.id, "api_key_id": k.api_key_id, "api_key_secret": k.secret}))})
}

pub(crate) async fn start(
    ctx: Ctx,
    shutdown: &watch::Receiver<bool>,
    tasks: &mut Vec<JoinHandle<()>>,
) -> std::io::Result<SimHandle> {
    let state = SoarState::fixtures(ctx.seed(), ctx.clock.now(), ctx.config.soar_lockout_threshold);
    let s = Arc::new(Soar {
        ctx: ctx.clone(),
        state: Mutex::new(state),
    });
    let api = Router::new()
        .route("/rest/session", get(session))
        .route("/rest/orgs/{org}/api_keys", get(list_keys).post(create_key))
        .route("/rest/orgs/{org}/api_keys/{id}", get(get_key).delete(delete_key))
        .route(
            "/rest/orgs/{org}/api_keys/{id}/regenerate_secret",
            post(regenerate),
        )
        .route("/rest/orgs/{org}/apps", get(list_apps))
        .route("/rest/orgs/{org}/apps/{app}", get(get_app))
        .route(
            "/rest/orgs/{org}/apps/{app}/installations/{inst}",
            put(set_installation),
        )
        .route(
            "/rest/orgs/{org}/apps/{app}/installations/{inst}/secrets",
            get(list_app_secrets),
        )
        .route(
            "/rest/orgs/{org}/apps/{app}/installations/{inst}/secrets/{name}",
            put(put_app_secret),
        )
        .fallback(|| async { err(StatusCode::NOT_FOUND, "Not found") })
        .with_state(s.clone());
    let admin = Router::new()
        .route("/admin/ui/api_keys/{id}/regenerate", post(ui_regenerate))
        .route("/admin/ui/apps/{app}/{action}", post(ui_app_status))
        .route("/admin/ui/apps/{app}/secrets/{name}", put(ui_app_secret))
        .route("/admin/ui/apps/{app}/config", put(ui_app_config))
        .with_state(s.clone());
    launch(
        System::Soar,
        &ctx,
        s,
        Arc::new(SoarStyle),
        api,
        admin,
        shutdown,
        tasks,
    )
    .await
}
