//! DemandCaster simulator (`[INVENTED]` shapes of VENDORS.md §1.5): a cookie
//! session, business nodes that must be entered with an explicit
//! confirmation, and Data Hub Plex PCN connections holding a Client Id and
//! a Client Secret that is never echoed. The error envelope
//! `{"error":{"code","message"}}` is invented too.
//!
//! Design decision: the connection test and the background sync really
//! call the Plex simulator over HTTP with the stored credentials (token
//! exchange, then `GET /mdm/v1/parts` for the PCN), so they see exactly
//! what Plex enforces, faults included.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};
use time::OffsetDateTime;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::System;
use crate::fault::ErrorStyle;
use crate::plex::Plex;
use crate::sim::{BoxFuture, Ctx, SimHandle, Simulator, launch};
use crate::util::{Gen, fingerprint, iso, json, lock, parse_json};

struct DcStyle;

impl ErrorStyle for DcStyle {
    fn error(&self, status: StatusCode, message: &str) -> Response {
        let code = match status.as_u16() {
            400 => "BAD_REQUEST",
            401 => "UNAUTHORIZED",
            403 => "FORBIDDEN",
            404 => "NOT_FOUND",
            428 => "CONFIRMATION_REQUIRED",
            429 => "TOO_MANY_REQUESTS",
            _ => "SERVER_ERROR",
        };
        json(status, json!({"error": {"code": code, "message": message}}))
    }
}

fn err(status: StatusCode, message: &str) -> Response {
    DcStyle.error(status, message)
}

const SESSION_COOKIE: &str = "DCSESSION";
/// The question DemandCaster asks before entering a business node.
pub(crate) const ENTER_CONFIRMATION: &str = "Are you sure you want to enter this company?";

#[derive(Clone)]
struct TestResult {
    at: OffsetDateTime,
    ok: bool,
    plex_status: Option<u16>,
    message: String,
}

impl TestResult {
    fn json(&self) -> Value {
        json!({"testedAt": iso(self.at), "ok": self.ok, "plexStatus": self.plex_status, "message": self.message})
    }
}

struct Pcn {
    id: u64,
    node_id: u64,
    pcn: String,
    name: String,
    tenant_id: String,
    client_id: String,
    client_secret: Option<String>,
    updated: OffsetDateTime,
    last_test: Option<TestResult>,
}

impl Pcn {
    fn public(&self) -> Value {
        json!({
            "id": self.id, "pcn": self.pcn, "name": self.name, "tenantId": self.tenant_id,
            "clientId": self.client_id, "hasSecret": self.client_secret.is_some(),
            "updatedAt": iso(self.updated), "lastTest": self.last_test.as_ref().map(TestResult::json),
        })
    }
}

struct Session {
    username: String,
    entered: Option<u64>,
}

struct DcState {
    ids: Gen,
    users: Vec<(String, String)>,
    sessions: HashMap<String, Session>,
    nodes: Vec<(u64, String)>,
    pcns: Vec<Pcn>,
    sync_log: Vec<Value>,
}

impl DcState {
    fn fixtures(seed: u64, now: OffsetDateTime, plex: &Plex) -> Self {
        let mut ids = Gen::new(seed, "demandcaster");
        let users = vec![("planner@acme.example".to_owned(), ids.alnum(16))];
        let nodes = vec![
            (1042, "Acme Manufacturing".to_owned()),
            (1043, "Acme Components GmbH".to_owned()),
            (1044, "Acme Sandbox".to_owned()),
        ];
        let customers = plex.customers();
        let tenant = |pcn: &str| {
            customers
                .iter()
                .find(|c| c.pcn == pcn)
                .map(|c| c.tenant_id.clone())
                .unwrap_or_default()
        };
        let mut pcns = Vec::new();
        for (id, node_id, pcn, app) in [
            (1, 1042, crate::plex::MAIN_PCN, crate::plex::DEMANDCASTER_APP),
            (2, 1043, "234567", "EDI Gateway"),
        ] {
            let (client_id, secret) = plex.app_credential(app).unwrap_or_default();
            pcns.push(Pcn {
                id,
                node_id,
                pcn: pcn.into(),
                name: customers
                    .iter()
                    .find(|c| c.pcn == pcn)
                    .map(|c| c.name.clone())
                    .unwrap_or_default(),
                tenant_id: tenant(pcn),
                client_id,
                client_secret: Some(secret),
                updated: now - time::Duration::days(351),
                last_test: None,
            });
        }
        Self {
            ids,
            users,
            sessions: HashMap::new(),
            nodes,
            pcns,
            sync_log: Vec::new(),
        }
    }
}

pub(crate) struct DemandCaster {
    ctx: Ctx,
    plex_origin: String,
    plex: Arc<Plex>,
    http: reqwest::Client,
    state: Mutex<DcState>,
}

impl DemandCaster {
    /// Token exchange then a parts read for the PCN, as DemandCaster's Plex
    /// connector does. Ok(number of parts) or (Plex status, message).
    async fn call_plex(
        &self,
        pcn: &str,
        client_id: &str,
        secret: &str,
    ) -> Result<usize, (Option<u16>, String)> {
        let tok = self
            .http
            .post(format!("{}/oauth2/token", self.plex_origin))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", client_id),
                ("client_secret", secret),
            ])
            .send()
            .await
            .map_err(|e| (None, format!("token request failed: {e}")))?;
        let status = tok.status().as_u16();
        let body: Value = tok
            .json()
            .await
            .map_err(|e| (Some(status), format!("token response unreadable: {e}")))?;
        if status != 200 {
            let msg = body
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("token refused")
                .to_owned();
            return Err((Some(status), msg));
        }
        let token = body
            .get("access_token")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let res = self
            .http
            .get(format!("{}/mdm/v1/parts", self.plex_origin))
            .bearer_auth(token)
            .header("X-Plex-Connect-Customer-Id", pcn)
            .send()
            .await
            .map_err(|e| (None, format!("parts request failed: {e}")))?;
        let status = res.status().as_u16();
        let body: Value = res
            .json()
            .await
            .map_err(|e| (Some(status), format!("parts response unreadable: {e}")))?;
        if status != 200 {
            let msg = body
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("request refused")
                .to_owned();
            return Err((Some(status), msg));
        }
        Ok(body.as_array().map_or(0, Vec::len))
    }

    async fn test_pcn(&self, id: u64) -> Option<TestResult> {
        let (pcn, client_id, secret) = {
            let st = lock(&self.state);
            let p = st.pcns.iter().find(|p| p.id == id)?;
            (p.pcn.clone(), p.client_id.clone(), p.client_secret.clone())
        };
        let outcome = match secret {
            None => Err((None, "No client secret stored".to_owned())),
            Some(secret) => self.call_plex(&pcn, &client_id, &secret).await,
        };
        let result = match outcome {
            Ok(n) => TestResult {
                at: self.ctx.clock.now(),
                ok: true,
                plex_status: Some(200),
                message: format!("Connection successful ({n} parts visible)"),
            },
            Err((status, message)) => TestResult {
                at: self.ctx.clock.now(),
                ok: false,
                plex_status: status,
                message,
            },
        };
        let mut st = lock(&self.state);
        if let Some(p) = st.pcns.iter_mut().find(|p| p.id == id) {
            p.last_test = Some(result.clone());
        }
        Some(result)
    }
}

impl Simulator for DemandCaster {
    fn operator(&self) -> Value {
        operator_view(self)
    }

    fn state(&self) -> Value {
        let st = lock(&self.state);
        json!({
            "plexOrigin": self.plex_origin,
            "users": st.users.iter().map(|(u, p)| json!({"username": u, "passwordFingerprint": fingerprint(p)})).collect::<Vec<_>>(),
            "sessions": st.sessions.values().map(|s| json!({"username": s.username, "enteredBusinessNode": s.entered})).collect::<Vec<_>>(),
            "businessNodes": st.nodes.iter().map(|(id, name)| json!({"id": id, "name": name})).collect::<Vec<_>>(),
            "pcns": st.pcns.iter().map(|p| {
                let mut v = p.public();
                if let Some(o) = v.as_object_mut() {
                    o.insert("businessNodeId".into(), json!(p.node_id));
                    o.insert("clientSecretFingerprint".into(), json!(p.client_secret.as_deref().map(fingerprint)));
                }
                v
            }).collect::<Vec<_>>(),
            "syncLog": st.sync_log,
        })
    }

    fn reset(&self) {
        *lock(&self.state) = DcState::fixtures(self.ctx.seed(), self.ctx.clock.now(), &self.plex);
    }

    /// The Data Connector's periodic pull: every PCN with a secret calls
    /// Plex once; each outcome (failures are downtime) goes to `syncLog`.
    fn tick(self: Arc<Self>) -> BoxFuture<Value> {
        Box::pin(async move {
            let ids: Vec<u64> = lock(&self.state)
                .pcns
                .iter()
                .filter(|p| p.client_secret.is_some())
                .map(|p| p.id)
                .collect();
            let mut results = Vec::new();
            for id in ids {
                if let Some(r) = self.test_pcn(id).await {
                    let mut entry = r.json();
                    if let Some(o) = entry.as_object_mut() {
                        o.insert("pcnId".into(), json!(id));
                    }
                    lock(&self.state).sync_log.push(entry.clone());
                    results.push(entry);
                }
            }
            json!({"sync": results})
        })
    }
}

type S = State<Arc<DemandCaster>>;

/// The session of the request, by its `DCSESSION` cookie.
fn session_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| {
            let (k, v) = c.trim().split_once('=')?;
            (k == SESSION_COOKIE).then(|| v.to_owned())
        })
}

fn with_session<T>(
    dc: &DemandCaster,
    headers: &HeaderMap,
    f: impl FnOnce(&mut DcState, &str) -> T,
) -> Result<T, Response> {
    let tok = session_token(headers).ok_or_else(|| err(StatusCode::UNAUTHORIZED, "Please sign in."))?;
    let mut st = lock(&dc.state);
    if !st.sessions.contains_key(&tok) {
        return Err(err(
            StatusCode::UNAUTHORIZED,
            "Your session has expired. Please sign in.",
        ));
    }
    Ok(f(&mut st, &tok))
}

/// The business node entered in this session, or the error to answer.
fn entered_node(st: &DcState, tok: &str) -> Result<u64, Response> {
    st.sessions
        .get(tok)
        .and_then(|s| s.entered)
        .ok_or_else(|| err(StatusCode::FORBIDDEN, "Enter a business node first."))
}

#[derive(Deserialize)]
struct Login {
    username: String,
    password: String,
}

async fn login(State(dc): S, body: Bytes) -> Response {
    let Ok(l) = parse_json::<Login>(&body) else {
        return err(StatusCode::BAD_REQUEST, "username and password are required.");
    };
    let mut st = lock(&dc.state);
    if !st.users.iter().any(|(u, p)| *u == l.username && *p == l.password) {
        return err(StatusCode::UNAUTHORIZED, "Invalid username or password.");
    }
    let tok = st.ids.alnum(32);
    st.sessions.insert(
        tok.clone(),
        Session {
            username: l.username.clone(),
            entered: None,
        },
    );
    let mut r = json(
        StatusCode::OK,
        json!({"username": l.username, "businessNode": null}),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("{SESSION_COOKIE}={tok}; Path=/; HttpOnly; SameSite=Lax")) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

/// Sign out: the session ends (idempotent, as a web app's log-out link is).
async fn logout(State(dc): S, headers: HeaderMap) -> Response {
    if let Some(tok) = session_token(&headers) {
        lock(&dc.state).sessions.remove(&tok);
    }
    StatusCode::NO_CONTENT.into_response()
}

async fn nodes(State(dc): S, headers: HeaderMap) -> Response {
    match with_session(&dc, &headers, |st, _| {
        st.nodes
            .iter()
            .map(|(id, name)| json!({"id": id, "name": name, "enterUrl": format!("/api/business-nodes/{id}/enter")}))
            .collect::<Vec<_>>()
    }) {
        Ok(list) => json(StatusCode::OK, Value::Array(list)),
        Err(r) => r,
    }
}

#[derive(Deserialize, Default)]
struct Enter {
    #[serde(default)]
    confirm: bool,
}

async fn enter(State(dc): S, headers: HeaderMap, Path(id): Path<u64>, body: Bytes) -> Response {
    let confirm = match parse_json::<Enter>(&body) {
        Ok(e) => e.confirm,
        Err(e) => return err(StatusCode::BAD_REQUEST, &e),
    };
    let r = with_session(&dc, &headers, |st, tok| {
        let Some((_, name)) = st.nodes.iter().find(|(n, _)| *n == id).cloned() else {
            return err(StatusCode::NOT_FOUND, "Business node not found.");
        };
        if !confirm {
            return json(
                StatusCode::PRECONDITION_REQUIRED,
                json!({"error": {"code": "CONFIRMATION_REQUIRED", "message": ENTER_CONFIRMATION}, "confirmationRequired": true}),
            );
        }
        if let Some(s) = st.sessions.get_mut(tok) {
            s.entered = Some(id);
        }
        json(
            StatusCode::OK,
            json!({"id": id, "name": name, "entered": true, "landing": "Requirement Plan"}),
        )
    });
    r.unwrap_or_else(|e| e)
}

async fn list_pcns(State(dc): S, headers: HeaderMap) -> Response {
    with_session(&dc, &headers, |st, tok| {
        let node = entered_node(st, tok)?;
        Ok(Value::Array(
            st.pcns
                .iter()
                .filter(|p| p.node_id == node)
                .map(Pcn::public)
                .collect(),
        ))
    })
    .and_then(|r| r)
    .map_or_else(|e| e, |v| json(StatusCode::OK, v))
}

async fn get_pcn(State(dc): S, headers: HeaderMap, Path(id): Path<u64>) -> Response {
    with_session(&dc, &headers, |st, tok| {
        let node = entered_node(st, tok)?;
        st.pcns
            .iter()
            .find(|p| p.id == id && p.node_id == node)
            .map(Pcn::public)
            .ok_or_else(|| err(StatusCode::NOT_FOUND, "PCN connection not found."))
    })
    .and_then(|r| r)
    .map_or_else(|e| e, |v| json(StatusCode::OK, v))
}

#[derive(Deserialize)]
struct UpdatePcn {
    #[serde(rename = "clientId")]
    client_id: Option<String>,
    #[serde(rename = "clientSecret")]
    client_secret: Option<String>,
}

async fn update_pcn(State(dc): S, headers: HeaderMap, Path(id): Path<u64>, body: Bytes) -> Response {
    let upd = match parse_json::<UpdatePcn>(&body) {
        Ok(u) => u,
        Err(e) => return err(StatusCode::BAD_REQUEST, &e),
    };
    let now = dc.ctx.clock.now();
    with_session(&dc, &headers, |st, tok| {
        let node = entered_node(st, tok)?;
        let p = st
            .pcns
            .iter_mut()
            .find(|p| p.id == id && p.node_id == node)
            .ok_or_else(|| err(StatusCode::NOT_FOUND, "PCN connection not found."))?;
        if let Some(c) = upd.client_id.filter(|c| !c.trim().is_empty()) {
            p.client_id = c;
        }
        if let Some(s) = upd.client_secret {
            if s.trim().is_empty() {
                return Err(err(StatusCode::BAD_REQUEST, "Client Secret cannot be empty."));
            }
            p.client_secret = Some(s);
        }
        p.updated = now;
        Ok(p.public())
    })
    .and_then(|r| r)
    .map_or_else(|e| e, |v| json(StatusCode::OK, v))
}

async fn test_pcn(State(dc): S, headers: HeaderMap, Path(id): Path<u64>) -> Response {
    let allowed = with_session(&dc, &headers, |st, tok| {
        let node = entered_node(st, tok)?;
        if st.pcns.iter().any(|p| p.id == id && p.node_id == node) {
            Ok(())
        } else {
            Err(err(StatusCode::NOT_FOUND, "PCN connection not found."))
        }
    })
    .and_then(|r| r);
    if let Err(r) = allowed {
        return r;
    }
    match dc.test_pcn(id).await {
        Some(r) => json(StatusCode::OK, r.json()),
        None => err(StatusCode::NOT_FOUND, "PCN connection not found."),
    }
}

/// A business node's row on the page after sign-in (guided stand-in).
async fn ui_node(State(dc): S, Path(id): Path<u64>) -> Response {
    let st = lock(&dc.state);
    match st.nodes.iter().find(|(n, _)| *n == id) {
        Some((id, name)) => json(StatusCode::OK, json!({"id": id, "name": name})),
        None => err(StatusCode::NOT_FOUND, "Business node not found."),
    }
}

/// Where the secret typed into *Client Secret* comes from: as typed, or
/// pasted after copying a Plex secret from its *New Secret* box.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UiEdit {
    #[serde(rename = "clientId")]
    client_id: Option<String>,
    #[serde(rename = "clientSecret")]
    client_secret: Option<String>,
    #[serde(rename = "pasteFromPlex")]
    paste_from_plex: Option<PlexSecretRef>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PlexSecretRef {
    #[serde(rename = "clientId")]
    client_id: String,
    #[serde(rename = "secretId")]
    secret_id: String,
}

fn ui_pcn_id(st: &DcState, node: u64, pcn: &str) -> Result<u64, Response> {
    st.pcns
        .iter()
        .find(|p| p.node_id == node && p.pcn == pcn)
        .map(|p| p.id)
        .ok_or_else(|| err(StatusCode::NOT_FOUND, "PCN connection not found."))
}

/// The edit icon next to a PCN in a node's Data Hub, then *Save*.
async fn ui_edit_pcn(State(dc): S, Path((node, pcn)): Path<(u64, String)>, body: Bytes) -> Response {
    let edit = match parse_json::<UiEdit>(&body) {
        Ok(e) => e,
        Err(e) => return err(StatusCode::BAD_REQUEST, &e),
    };
    let pasted = match &edit.paste_from_plex {
        Some(r) => match dc.plex.secret_value(&r.client_id, &r.secret_id) {
            Some(v) => Some(v),
            None => return err(StatusCode::NOT_FOUND, "There is no such Plex secret to paste."),
        },
        None => None,
    };
    let now = dc.ctx.clock.now();
    let mut st = lock(&dc.state);
    let id = match ui_pcn_id(&st, node, &pcn) {
        Ok(id) => id,
        Err(r) => return r,
    };
    let Some(p) = st.pcns.iter_mut().find(|p| p.id == id) else {
        return err(StatusCode::NOT_FOUND, "PCN connection not found.");
    };
    if let Some(c) = edit.client_id.filter(|c| !c.trim().is_empty()) {
        p.client_id = c;
    }
    if let Some(secret) = pasted.or(edit.client_secret) {
        if secret.trim().is_empty() {
            return err(StatusCode::BAD_REQUEST, "Client Secret cannot be empty.");
        }
        p.client_secret = Some(secret);
    }
    p.updated = now;
    json(StatusCode::OK, p.public())
}

/// The connection test button next to a PCN.
async fn ui_test_pcn(State(dc): S, Path((node, pcn)): Path<(u64, String)>) -> Response {
    let id = match ui_pcn_id(&lock(&dc.state), node, &pcn) {
        Ok(id) => id,
        Err(r) => return r,
    };
    match dc.test_pcn(id).await {
        Some(r) => json(StatusCode::OK, r.json()),
        None => err(StatusCode::NOT_FOUND, "PCN connection not found."),
    }
}

fn operator_view(dc: &DemandCaster) -> Value {
    let st = lock(&dc.state);
    json!({"users": st.users.iter().map(|(u, p)| json!({"username": u, "password": p})).collect::<Vec<_>>()})
}

pub(crate) async fn start(
    ctx: Ctx,
    plex: Arc<Plex>,
    plex_origin: &str,
    shutdown: &watch::Receiver<bool>,
    tasks: &mut Vec<JoinHandle<()>>,
) -> std::io::Result<SimHandle> {
    let state = DcState::fixtures(ctx.seed(), ctx.clock.now(), &plex);
    let http = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .map_err(std::io::Error::other)?;
    let dc = Arc::new(DemandCaster {
        ctx: ctx.clone(),
        plex_origin: plex_origin.to_owned(),
        plex,
        http,
        state: Mutex::new(state),
    });
    let api = Router::new()
        .route("/api/session", post(login).delete(logout))
        .route("/api/business-nodes", get(nodes))
        .route("/api/business-nodes/{id}/enter", post(enter))
        .route("/api/datahub/plex/pcns", get(list_pcns))
        .route("/api/datahub/plex/pcns/{id}", get(get_pcn).put(update_pcn))
        .route("/api/datahub/plex/pcns/{id}/test", post(test_pcn))
        .fallback(|| async { err(StatusCode::NOT_FOUND, "Not found.") })
        .with_state(dc.clone());
    let admin = Router::new()
        .route("/admin/ui/business-nodes/{id}", get(ui_node))
        .route(
            "/admin/ui/business-nodes/{node}/pcns/{pcn}",
            axum::routing::put(ui_edit_pcn),
        )
        .route(
            "/admin/ui/business-nodes/{node}/pcns/{pcn}/test",
            post(ui_test_pcn),
        )
        .with_state(dc.clone());
    launch(
        System::DemandCaster,
        &ctx,
        dc,
        Arc::new(DcStyle),
        api,
        admin,
        shutdown,
        tasks,
    )
    .await
}
