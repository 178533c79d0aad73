//! Plex simulator: Plex UX client applications and their secrets (`[INVENTED]`
//! shapes of VENDORS.md §1.5), an OAuth client-credentials token endpoint,
//! and a Plex Connect resource (`GET /mdm/v1/parts`) that authenticates
//! with client id + secret.
//!
//! Design decision: a token stays tied to the secret it was issued for, so
//! deleting or expiring that secret ends the token too; a consumer that
//! still holds a dead secret fails on its next call, which is what the
//! DemandCaster connection test and sync must notice.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use axum::routing::{delete, get, post};
use base64::Engine;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};
use time::OffsetDateTime;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::System;
use crate::fault::ErrorStyle;
use crate::sim::{Ctx, SimHandle, Simulator, launch};
use crate::util::{Gen, fingerprint, json, lock, parse_json, plex_date};

/// The PCN of the customer whose DemandCaster app the seed procedure resets.
pub(crate) const MAIN_PCN: &str = "123456";
/// Name of the client application DemandCaster uses.
pub(crate) const DEMANDCASTER_APP: &str = "DemandCaster";

struct PlexStyle;

impl ErrorStyle for PlexStyle {
    fn error(&self, status: StatusCode, message: &str) -> Response {
        let code = match status.as_u16() {
            400 => "REQUEST_VALIDATION_FAILED",
            401 => "REQUEST_NOT_AUTHENTICATED",
            403 => "REQUEST_FORBIDDEN",
            404 => "RESOURCE_NOT_FOUND",
            429 => "REQUEST_USAGE_LIMITED",
            _ => "REQUEST_PROCESSING_ERROR",
        };
        json(status, json!({"code": code, "message": message}))
    }
}

fn err(status: StatusCode, message: &str) -> Response {
    PlexStyle.error(status, message)
}

fn not_authenticated() -> Response {
    err(
        StatusCode::UNAUTHORIZED,
        "The request could not be authenticated.",
    )
}

#[derive(Clone)]
pub(crate) struct Customer {
    pub(crate) pcn: String,
    pub(crate) name: String,
    pub(crate) tenant_id: String,
}

struct PortalKey {
    name: String,
    consumer_key: String,
    consumer_secret: String,
}

struct Secret {
    id: String,
    value: String,
    created: OffsetDateTime,
    valid_until: OffsetDateTime,
}

struct ClientApp {
    client_id: String,
    name: String,
    customer_id: String,
    secrets: Vec<Secret>,
}

struct Token {
    client_id: String,
    secret_id: String,
    expires: OffsetDateTime,
}

struct PlexState {
    ids: Gen,
    customers: Vec<Customer>,
    portal_keys: Vec<PortalKey>,
    apps: Vec<ClientApp>,
    tokens: HashMap<String, Token>,
    parts: Vec<Value>,
}

impl PlexState {
    fn fixtures(seed: u64, now: OffsetDateTime) -> Self {
        let mut ids = Gen::new(seed, "plex");
        let customers: Vec<Customer> = [
            (MAIN_PCN, "Acme Manufacturing"),
            ("234567", "Acme Components GmbH"),
            ("345678", "Northwind Plastics"),
        ]
        .iter()
        .map(|(pcn, name)| Customer {
            pcn: (*pcn).into(),
            name: (*name).into(),
            tenant_id: ids.uuid().to_string(),
        })
        .collect();
        let portal_keys = vec![PortalKey {
            name: "rota automation".into(),
            consumer_key: ids.alnum(32),
            consumer_secret: ids.alnum(32),
        }];
        let secret = |ids: &mut Gen, created_days_ago: i64, valid_days: i64| Secret {
            id: ids.uuid().to_string(),
            value: ids.alnum(40),
            created: now - time::Duration::days(created_days_ago),
            valid_until: now - time::Duration::days(created_days_ago) + time::Duration::days(valid_days),
        };
        let apps = vec![
            ClientApp {
                client_id: ids.uuid().to_string(),
                name: DEMANDCASTER_APP.into(),
                customer_id: MAIN_PCN.into(),
                // Expired a month ago, and the one DemandCaster uses now (valid 14 more days).
                secrets: vec![secret(&mut ids, 395, 365), secret(&mut ids, 351, 365)],
            },
            ClientApp {
                client_id: ids.uuid().to_string(),
                name: "Shop Floor Dashboard".into(),
                customer_id: MAIN_PCN.into(),
                secrets: vec![secret(&mut ids, 40, 365)],
            },
            ClientApp {
                client_id: ids.uuid().to_string(),
                name: "EDI Gateway".into(),
                customer_id: "234567".into(),
                secrets: vec![secret(&mut ids, 200, 730), secret(&mut ids, 10, 730)],
            },
        ];
        let parts = (1..=4)
            .map(|i| {
                let name = ["Bracket, steel", "Housing, ABS", "Gasket, EPDM", "Shaft, 12 mm"].get(i - 1).copied().unwrap_or("Part");
                json!({
                    "id": ids.uuid().to_string(),
                    "number": format!("AC-{:04}", 1000 + i * 7),
                    "revision": "A",
                    "name": name,
                    "status": "Production",
                    "createdDate": plex_date(now - time::Duration::days(900 - 100 * i64::try_from(i).unwrap_or(0))),
                })
            })
            .collect();
        Self {
            ids,
            customers,
            portal_keys,
            apps,
            tokens: HashMap::new(),
            parts,
        }
    }

    fn app_mut(&mut self, client_id: &str) -> Option<&mut ClientApp> {
        self.apps.iter_mut().find(|a| a.client_id == client_id)
    }

    fn create_secret(&mut self, client_id: &str, valid_days: i64, now: OffsetDateTime) -> Option<Value> {
        let id = self.ids.uuid().to_string();
        let value = self.ids.alnum(40);
        let app = self.app_mut(client_id)?;
        let s = Secret {
            id,
            value,
            created: now,
            valid_until: now + time::Duration::days(valid_days),
        };
        let body = json!({
            "id": s.id,
            "secret": s.value,
            "createdDate": plex_date(s.created),
            "validUntil": plex_date(s.valid_until),
        });
        app.secrets.push(s);
        Some(body)
    }

    /// Deletes one secret by ID, and the tokens issued for it; Err is the
    /// 404 message.
    fn delete_secret(&mut self, client_id: &str, secret_id: &str) -> Result<(), &'static str> {
        let app = self.app_mut(client_id).ok_or("Client application not found.")?;
        let before = app.secrets.len();
        app.secrets.retain(|s| s.id != secret_id);
        if app.secrets.len() == before {
            return Err("Secret not found.");
        }
        self.tokens.retain(|_, t| t.secret_id != secret_id);
        Ok(())
    }

    /// Checks a client id + secret: Ok(secret id) or the 401 message.
    fn check_client(
        &self,
        client_id: &str,
        secret: &str,
        now: OffsetDateTime,
    ) -> Result<String, &'static str> {
        let app = self
            .apps
            .iter()
            .find(|a| a.client_id == client_id)
            .ok_or("Invalid client id")?;
        let s = app
            .secrets
            .iter()
            .find(|s| s.value == secret)
            .ok_or("Invalid client secret")?;
        if s.valid_until <= now {
            return Err("Expired client secret");
        }
        Ok(s.id.clone())
    }
}

pub(crate) struct Plex {
    ctx: Ctx,
    state: Mutex<PlexState>,
}

impl Plex {
    pub(crate) fn customers(&self) -> Vec<Customer> {
        lock(&self.state).customers.clone()
    }

    /// The value of one secret of a client application: what an operator
    /// who copied it from the *New Secret* box pastes elsewhere.
    pub(crate) fn secret_value(&self, client_id: &str, secret_id: &str) -> Option<String> {
        let st = lock(&self.state);
        let app = st.apps.iter().find(|a| a.client_id == client_id)?;
        app.secrets
            .iter()
            .find(|s| s.id == secret_id)
            .map(|s| s.value.clone())
    }

    /// A client application's id and its newest secret, for the fixtures of
    /// the systems that hold them (DemandCaster's PCN connections).
    pub(crate) fn app_credential(&self, name: &str) -> Option<(String, String)> {
        let st = lock(&self.state);
        let app = st.apps.iter().find(|a| a.name == name)?;
        let s = app.secrets.last()?;
        Some((app.client_id.clone(), s.value.clone()))
    }
}

impl Simulator for Plex {
    fn operator(&self) -> Value {
        operator_view(self)
    }

    fn state(&self) -> Value {
        let st = lock(&self.state);
        let now = self.ctx.clock.now();
        json!({
            "customers": st.customers.iter().map(|c| json!({"customerId": c.pcn, "name": c.name, "tenantId": c.tenant_id})).collect::<Vec<_>>(),
            "portalKeys": st.portal_keys.iter().map(|k| json!({
                // The consumer key alone authenticates (X-Plex-Connect-Api-Key): a secret.
                "name": k.name, "consumerKeyFingerprint": fingerprint(&k.consumer_key),
                "consumerSecretFingerprint": fingerprint(&k.consumer_secret)})).collect::<Vec<_>>(),
            "clientApplications": st.apps.iter().map(|a| json!({
                "clientId": a.client_id, "name": a.name, "customerId": a.customer_id,
                "secrets": a.secrets.iter().map(|s| json!({
                    "id": s.id, "createdDate": plex_date(s.created), "validUntil": plex_date(s.valid_until),
                    "expired": s.valid_until <= now, "fingerprint": fingerprint(&s.value)})).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "activeTokens": st.tokens.values().filter(|t| t.expires > now).count(),
        })
    }

    fn reset(&self) {
        *lock(&self.state) = PlexState::fixtures(self.ctx.seed(), self.ctx.clock.now());
    }
}

type S = State<Arc<Plex>>;

fn portal_auth(p: &Plex, headers: &HeaderMap) -> Result<(), Response> {
    let key = headers
        .get("x-plex-connect-api-key")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(not_authenticated)?;
    if lock(&p.state).portal_keys.iter().any(|k| k.consumer_key == key) {
        Ok(())
    } else {
        Err(not_authenticated())
    }
}

#[derive(Deserialize)]
struct ListQuery {
    #[serde(rename = "customerId")]
    customer_id: Option<String>,
}

async fn list_apps(State(p): S, headers: HeaderMap, Query(q): Query<ListQuery>) -> Response {
    if let Err(r) = portal_auth(&p, &headers) {
        return r;
    }
    let st = lock(&p.state);
    let list: Vec<Value> = st
        .apps
        .iter()
        .filter(|a| q.customer_id.as_ref().is_none_or(|c| *c == a.customer_id))
        .map(|a| json!({"clientId": a.client_id, "name": a.name, "customerId": a.customer_id, "secretCount": a.secrets.len()}))
        .collect();
    json(StatusCode::OK, Value::Array(list))
}

async fn list_secrets(State(p): S, headers: HeaderMap, Path(client_id): Path<String>) -> Response {
    if let Err(r) = portal_auth(&p, &headers) {
        return r;
    }
    let st = lock(&p.state);
    let Some(app) = st.apps.iter().find(|a| a.client_id == client_id) else {
        return err(StatusCode::NOT_FOUND, "Client application not found.");
    };
    let list: Vec<Value> = app
        .secrets
        .iter()
        .map(|s| json!({"id": s.id, "createdDate": plex_date(s.created), "validUntil": plex_date(s.valid_until)}))
        .collect();
    json(StatusCode::OK, Value::Array(list))
}

#[derive(Deserialize, Default)]
struct CreateSecret {
    #[serde(rename = "validDays")]
    valid_days: Option<i64>,
}

fn create_secret_response(p: &Plex, client_id: &str, body: &[u8]) -> Response {
    let req: CreateSecret = match parse_json(body) {
        Ok(r) => r,
        Err(e) => return err(StatusCode::BAD_REQUEST, &format!("Malformed request: {e}")),
    };
    let days = req.valid_days.unwrap_or(365);
    if !(1..=3650).contains(&days) {
        return err(StatusCode::BAD_REQUEST, "validDays must be between 1 and 3650.");
    }
    let now = p.ctx.clock.now();
    match lock(&p.state).create_secret(client_id, days, now) {
        Some(body) => json(StatusCode::CREATED, body),
        None => err(StatusCode::NOT_FOUND, "Client application not found."),
    }
}

async fn create_secret(
    State(p): S,
    headers: HeaderMap,
    Path(client_id): Path<String>,
    body: Bytes,
) -> Response {
    if let Err(r) = portal_auth(&p, &headers) {
        return r;
    }
    create_secret_response(&p, &client_id, &body)
}

async fn delete_secret(
    State(p): S,
    headers: HeaderMap,
    Path((client_id, secret_id)): Path<(String, String)>,
) -> Response {
    if let Err(r) = portal_auth(&p, &headers) {
        return r;
    }
    if let Err(message) = lock(&p.state).delete_secret(&client_id, &secret_id) {
        return err(StatusCode::NOT_FOUND, message);
    }
    Response::builder()
        .status(StatusCode::NO_CONTENT)
        .body(axum::body::Body::empty())
        .unwrap_or_default()
}

#[derive(Deserialize)]
struct TokenForm {
    grant_type: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

async fn token(State(p): S, headers: HeaderMap, body: Bytes) -> Response {
    let Ok(form) = serde_urlencoded::from_bytes::<TokenForm>(&body) else {
        return err(StatusCode::BAD_REQUEST, "Malformed request.");
    };
    if form.grant_type.as_deref() != Some("client_credentials") {
        return err(
            StatusCode::BAD_REQUEST,
            "Unsupported grant_type; expected client_credentials.",
        );
    }
    // client_secret_basic or client_secret_post (RFC 6749 §2.3.1).
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.split_once(':').map(|(a, b)| (a.to_owned(), b.to_owned())));
    let (id, secret) = match (basic, form.client_id, form.client_secret) {
        (Some(pair), _, _) => pair,
        (None, Some(i), Some(s)) => (i, s),
        _ => return err(StatusCode::UNAUTHORIZED, "Invalid client secret"),
    };
    let now = p.ctx.clock.now();
    let mut st = lock(&p.state);
    match st.check_client(&id, &secret, now) {
        Ok(secret_id) => {
            let tok = st.ids.alnum(48);
            st.tokens.insert(
                tok.clone(),
                Token {
                    client_id: id,
                    secret_id,
                    expires: now + time::Duration::seconds(3600),
                },
            );
            json(
                StatusCode::OK,
                json!({"access_token": tok, "token_type": "Bearer", "expires_in": 3600}),
            )
        }
        Err(msg) => err(StatusCode::UNAUTHORIZED, msg),
    }
}

/// Authenticates a Connect call: a bearer token from `/oauth2/token`, or the
/// client id and secret in `X-Plex-Connect-Api-Key` / `-Api-Secret`.
fn resource_auth(p: &Plex, headers: &HeaderMap) -> Result<(), Response> {
    let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let now = p.ctx.clock.now();
    let st = lock(&p.state);
    let client_id = if let Some(tok) =
        h("authorization").and_then(|a| a.strip_prefix("Bearer ").map(str::to_owned))
    {
        let t = st
            .tokens
            .get(&tok)
            .filter(|t| t.expires > now)
            .ok_or_else(not_authenticated)?;
        let app = st
            .apps
            .iter()
            .find(|a| a.client_id == t.client_id)
            .ok_or_else(not_authenticated)?;
        let live = app
            .secrets
            .iter()
            .any(|s| s.id == t.secret_id && s.valid_until > now);
        if !live {
            return Err(not_authenticated());
        }
        t.client_id.clone()
    } else {
        let (Some(key), Some(secret)) = (h("x-plex-connect-api-key"), h("x-plex-connect-api-secret")) else {
            return Err(not_authenticated());
        };
        st.check_client(&key, &secret, now)
            .map_err(|_| not_authenticated())?;
        key
    };
    // Tenant headers select a tenant; the app may only reach its own customer's.
    let app = st
        .apps
        .iter()
        .find(|a| a.client_id == client_id)
        .ok_or_else(not_authenticated)?;
    if let Some(pcn) = h("x-plex-connect-customer-id")
        && app.customer_id != pcn
    {
        return Err(not_authenticated());
    }
    if let Some(tenant) = h("x-plex-connect-tenant-id") {
        let own = st
            .customers
            .iter()
            .find(|c| c.pcn == app.customer_id)
            .map(|c| c.tenant_id.as_str());
        if own != Some(tenant.as_str()) {
            return Err(not_authenticated());
        }
    }
    Ok(())
}

#[derive(Deserialize)]
struct PartsQuery {
    number: Option<String>,
}

/// The parts collection, filtered by `?number=` as Plex Connect collections
/// filter by a field (VENDORS.md §1.2: `?lastName=smith`).
async fn parts(State(p): S, headers: HeaderMap, Query(q): Query<PartsQuery>) -> Response {
    if let Err(r) = resource_auth(&p, &headers) {
        return r;
    }
    let all = lock(&p.state).parts.clone();
    let list = all
        .into_iter()
        .filter(|part| {
            q.number
                .as_ref()
                .is_none_or(|n| part.get("number").and_then(Value::as_str) == Some(n))
        })
        .collect();
    json(StatusCode::OK, Value::Array(list))
}

async fn ui_add_secret(State(p): S, Path(client_id): Path<String>, body: Bytes) -> Response {
    create_secret_response(&p, &client_id, &body)
}

#[derive(Deserialize)]
struct ScreenQuery {
    #[serde(rename = "customerId")]
    customer_id: String,
    name: String,
}

/// The Client Applications screen after *Search*, as the operator reads the
/// row of the application they need (the guided path's stand-in).
async fn ui_find_app(State(p): S, Query(q): Query<ScreenQuery>) -> Response {
    let st = lock(&p.state);
    match st
        .apps
        .iter()
        .find(|a| a.customer_id == q.customer_id && a.name == q.name)
    {
        Some(a) => json(
            StatusCode::OK,
            json!({"clientId": a.client_id, "name": a.name, "customerId": a.customer_id, "secretCount": a.secrets.len()}),
        ),
        None => err(StatusCode::NOT_FOUND, "No such client application."),
    }
}

/// The secrets grid as the operator reads it: every row, plus the rows the
/// seed procedure cares about (the expired one that expired first, the valid
/// one that expires first; `"none"` and `"-"` when there is no such row).
async fn ui_secrets_grid(State(p): S, Path(client_id): Path<String>) -> Response {
    let now = p.ctx.clock.now();
    let st = lock(&p.state);
    let Some(app) = st.apps.iter().find(|a| a.client_id == client_id) else {
        return err(StatusCode::NOT_FOUND, "Client application not found.");
    };
    let rows: Vec<Value> = app
        .secrets
        .iter()
        .map(|s| json!({"id": s.id, "createdDate": plex_date(s.created), "validUntil": plex_date(s.valid_until), "expired": s.valid_until <= now}))
        .collect();
    let expired = app
        .secrets
        .iter()
        .filter(|s| s.valid_until <= now)
        .min_by_key(|s| (s.valid_until, s.created));
    let next_to_expire = app
        .secrets
        .iter()
        .filter(|s| s.valid_until > now)
        .min_by_key(|s| (s.valid_until, s.created));
    let described = |s: Option<&Secret>| match s {
        Some(s) => (
            s.id.clone(),
            plex_date(s.created),
            plex_date(s.valid_until),
            (s.valid_until - now).whole_days(),
        ),
        None => ("none".to_owned(), "-".to_owned(), "-".to_owned(), 0),
    };
    let (eid, ecreated, euntil, _) = described(expired);
    let (vid, vcreated, vuntil, vdays) = described(next_to_expire);
    json(
        StatusCode::OK,
        json!({
            "rows": rows,
            "expiredId": eid, "expiredCreated": ecreated, "expiredValidUntil": euntil,
            "nextToExpireId": vid, "nextToExpireCreated": vcreated, "nextToExpireValidUntil": vuntil,
            "nextToExpireDaysLeft": vdays,
        }),
    )
}

/// Selecting a secret's row and clicking *Delete*, then OK.
async fn ui_delete_secret(State(p): S, Path((client_id, secret_id)): Path<(String, String)>) -> Response {
    match lock(&p.state).delete_secret(&client_id, &secret_id) {
        Ok(()) => json(StatusCode::OK, json!({"deleted": secret_id})),
        Err(message) => err(StatusCode::NOT_FOUND, message),
    }
}

fn operator_view(p: &Plex) -> Value {
    let st = lock(&p.state);
    json!({
        "portalKeys": st.portal_keys.iter().map(|k| json!({"name": k.name, "consumerKey": k.consumer_key, "consumerSecret": k.consumer_secret})).collect::<Vec<_>>(),
        "customers": st.customers.iter().map(|c| json!({"customerId": c.pcn, "name": c.name, "tenantId": c.tenant_id})).collect::<Vec<_>>(),
    })
}

pub(crate) async fn start(
    ctx: Ctx,
    shutdown: &watch::Receiver<bool>,
    tasks: &mut Vec<JoinHandle<()>>,
) -> std::io::Result<(SimHandle, Arc<Plex>)> {
    let state = PlexState::fixtures(ctx.seed(), ctx.clock.now());
    let p = Arc::new(Plex {
        ctx: ctx.clone(),
        state: Mutex::new(state),
    });
    let api = Router::new()
        .route("/platform/v1/client-applications", get(list_apps))
        .route(
            "/platform/v1/client-applications/{client_id}/secrets",
            get(list_secrets).post(create_secret),
        )
        .route(
            "/platform/v1/client-applications/{client_id}/secrets/{secret_id}",
            delete(delete_secret),
        )
        .route("/oauth2/token", post(token))
        .route("/mdm/v1/parts", get(parts))
        .fallback(|| async { err(StatusCode::NOT_FOUND, "Resource not found.") })
        .with_state(p.clone());
    let admin = Router::new()
        .route("/admin/ui/client-applications", get(ui_find_app))
        .route(
            "/admin/ui/client-applications/{client_id}/secrets",
            get(ui_secrets_grid).post(ui_add_secret),
        )
        .route(
            "/admin/ui/client-applications/{client_id}/secrets/{secret_id}",
            delete(ui_delete_secret),
        )
        .with_state(p.clone());
    let h = launch(
        System::Plex,
        &ctx,
        p.clone(),
        Arc::new(PlexStyle),
        api,
        admin,
        shutdown,
        tasks,
    )
    .await?;
    Ok((h, p))
}
