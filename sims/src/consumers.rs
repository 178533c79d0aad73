//! The generic consumer service: integrations that each hold one vendor
//! credential, call that vendor's simulator when ticked (or periodically),
//! and record every failed call as downtime. `PUT
//! /v1/consumers/{id}/credential` is the modeled "update the credential this
//! integration uses" step that Plytix and Constellix rollovers switch.
//! Its error envelope `{"error":{"code","message"}}` is invented.
//!
//! Design decision: a consumer authenticates from scratch on every call
//! (token exchange or fresh signature), so a revoked credential shows up as
//! downtime on the very next call rather than after a cached token expires.

use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use time::OffsetDateTime;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::System;
use crate::fault::ErrorStyle;
use crate::sim::{BoxFuture, Ctx, SimHandle, Simulator, launch};
use crate::util::{fingerprint, iso, json, lock, parse_json};

/// A credential a consumer holds, tagged by vendor.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "vendor", rename_all = "lowercase")]
pub enum Credential {
    Plex {
        client_id: String,
        client_secret: String,
        #[serde(default)]
        customer_id: Option<String>,
    },
    Plytix {
        api_key: String,
        api_password: String,
    },
    Soar {
        api_key_id: String,
        api_key_secret: String,
    },
    Constellix {
        api_key: String,
        secret_key: String,
    },
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.public())
    }
}

/// Finds a vendor key by its ID as the credential an integration would hold
/// (the stand-in for an operator copying a key out of the vendor's portal).
pub(crate) type KeySource = Arc<dyn Fn(&str) -> Option<Credential> + Send + Sync>;

impl Credential {
    /// The key half, which integrations and the registry show in clear.
    fn key(&self) -> &str {
        match self {
            Credential::Plex { client_id, .. } => client_id,
            Credential::Plytix { api_key, .. } | Credential::Constellix { api_key, .. } => api_key,
            Credential::Soar { api_key_id, .. } => api_key_id,
        }
    }

    fn system(&self) -> System {
        match self {
            Credential::Plex { .. } => System::Plex,
            Credential::Plytix { .. } => System::Plytix,
            Credential::Soar { .. } => System::Soar,
            Credential::Constellix { .. } => System::Constellix,
        }
    }

    /// The id part in clear, the secret part as a fingerprint.
    fn public(&self) -> Value {
        match self {
            Credential::Plex {
                client_id,
                client_secret,
                customer_id,
            } => {
                json!({"vendor": "plex", "client_id": client_id, "customer_id": customer_id,
                       "secretFingerprint": fingerprint(client_secret)})
            }
            Credential::Plytix {
                api_key,
                api_password,
            } => {
                json!({"vendor": "plytix", "api_key": api_key, "secretFingerprint": fingerprint(api_password)})
            }
            Credential::Soar {
                api_key_id,
                api_key_secret,
            } => {
                json!({"vendor": "soar", "api_key_id": api_key_id, "secretFingerprint": fingerprint(api_key_secret)})
            }
            Credential::Constellix { api_key, secret_key } => {
                json!({"vendor": "constellix", "api_key": api_key, "secretFingerprint": fingerprint(secret_key)})
            }
        }
    }
}

pub(crate) struct Consumer {
    id: String,
    system: System,
    origin: String,
    credential: Credential,
    updated: Option<OffsetDateTime>,
    calls: u64,
    failures: Vec<Value>,
    last: Option<Value>,
}

impl Consumer {
    pub(crate) fn new(id: &str, system: System, origin: &str, credential: Credential) -> Self {
        Self {
            id: id.to_owned(),
            system,
            origin: origin.to_owned(),
            credential,
            updated: None,
            calls: 0,
            failures: Vec::new(),
            last: None,
        }
    }

    fn json(&self) -> Value {
        json!({
            "id": self.id, "vendor": self.system.name(), "origin": self.origin,
            "credential": self.credential.public(), "credentialUpdatedAt": self.updated.map(iso),
            "calls": self.calls, "failedCalls": self.failures.len(), "downtime": self.failures,
            "lastCall": self.last,
        })
    }
}

struct ConsumerStyle;

impl ErrorStyle for ConsumerStyle {
    fn error(&self, status: StatusCode, message: &str) -> Response {
        json(
            status,
            json!({"error": {"code": status.as_u16(), "message": message}}),
        )
    }
}

fn err(status: StatusCode, message: &str) -> Response {
    ConsumerStyle.error(status, message)
}

pub(crate) struct Consumers {
    ctx: Ctx,
    http: reqwest::Client,
    fixtures: Vec<(String, System, String, Credential)>,
    sources: std::collections::BTreeMap<System, KeySource>,
    state: Mutex<Vec<Consumer>>,
}

type CallResult = Result<String, (Option<u16>, String)>;

async fn check(
    res: Result<reqwest::Response, reqwest::Error>,
    what: &str,
) -> Result<Value, (Option<u16>, String)> {
    let res = res.map_err(|e| (None, format!("{what}: {e}")))?;
    let status = res.status().as_u16();
    let text = res
        .text()
        .await
        .map_err(|e| (Some(status), format!("{what}: body unreadable: {e}")))?;
    if !(200..300).contains(&status) {
        return Err((Some(status), format!("{what}: HTTP {status}: {text}")));
    }
    serde_json::from_str(&text).map_err(|e| (Some(status), format!("{what}: invalid JSON: {e}")))
}

impl Consumers {
    /// One use of the credential against the vendor, as the integration does.
    async fn call(&self, origin: &str, cred: &Credential) -> CallResult {
        let h = &self.http;
        match cred {
            Credential::Plex {
                client_id,
                client_secret,
                customer_id,
            } => {
                let tok = check(
                    h.post(format!("{origin}/oauth2/token"))
                        .form(&[
                            ("grant_type", "client_credentials"),
                            ("client_id", client_id),
                            ("client_secret", client_secret),
                        ])
                        .send()
                        .await,
                    "token",
                )
                .await?;
                let mut req = h.get(format!("{origin}/mdm/v1/parts")).bearer_auth(
                    tok.get("access_token")
                        .and_then(Value::as_str)
                        .unwrap_or_default(),
                );
                if let Some(c) = customer_id {
                    req = req.header("X-Plex-Connect-Customer-Id", c);
                }
                check(req.send().await, "parts")
                    .await
                    .map(|_| "parts read".into())
            }
            Credential::Plytix {
                api_key,
                api_password,
            } => {
                let tok = check(
                    h.post(format!("{origin}/auth/api/get-token"))
                        .json(&json!({"api_key": api_key, "api_password": api_password}))
                        .send()
                        .await,
                    "get-token",
                )
                .await?;
                let access = tok
                    .pointer("/data/0/access_token")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                check(
                    h.post(format!("{origin}/api/v1/products/search"))
                        .bearer_auth(access)
                        .json(&json!({"filters": [], "attributes": ["sku"], "pagination": {"page": 1, "page_size": 25}}))
                        .send()
                        .await,
                    "products/search",
                )
                .await
                .map(|_| "products searched".into())
            }
            Credential::Soar {
                api_key_id,
                api_key_secret,
            } => check(
                h.get(format!("{origin}/rest/session?include_permissions=false"))
                    .basic_auth(api_key_id, Some(api_key_secret))
                    .send()
                    .await,
                "session",
            )
            .await
            .map(|_| "session opened".into()),
            Credential::Constellix { api_key, secret_key } => {
                let ts = crate::util::epoch_ms(OffsetDateTime::now_utc());
                let token = crate::constellix::security_token(api_key, secret_key, ts);
                check(
                    h.get(format!("{origin}/v4/domains"))
                        .bearer_auth(token)
                        .send()
                        .await,
                    "domains",
                )
                .await
                .map(|_| "domains listed".into())
            }
        }
    }

    /// Calls once for one consumer and records the outcome.
    async fn run_one(&self, id: &str) -> Option<Value> {
        let (origin, cred) = {
            let st = lock(&self.state);
            let c = st.iter().find(|c| c.id == id)?;
            (c.origin.clone(), c.credential.clone())
        };
        let outcome = self.call(&origin, &cred).await;
        let at = iso(self.ctx.clock.now());
        let entry = match &outcome {
            Ok(m) => json!({"at": at, "ok": true, "message": m}),
            Err((status, m)) => json!({"at": at, "ok": false, "status": status, "message": m}),
        };
        let mut st = lock(&self.state);
        let c = st.iter_mut().find(|c| c.id == id)?;
        c.calls += 1;
        if outcome.is_err() {
            c.failures.push(entry.clone());
        }
        c.last = Some(entry.clone());
        let mut v = entry;
        if let Some(o) = v.as_object_mut() {
            o.insert("consumer".into(), json!(id));
        }
        Some(v)
    }
}

impl Simulator for Consumers {
    fn state(&self) -> Value {
        json!({"consumers": lock(&self.state).iter().map(Consumer::json).collect::<Vec<_>>()})
    }

    fn reset(&self) {
        *lock(&self.state) = self
            .fixtures
            .iter()
            .map(|(id, s, o, c)| Consumer::new(id, *s, o, c.clone()))
            .collect();
    }

    fn tick(self: Arc<Self>) -> BoxFuture<Value> {
        Box::pin(async move {
            let ids: Vec<String> = lock(&self.state).iter().map(|c| c.id.clone()).collect();
            let mut calls = Vec::new();
            for id in ids {
                if let Some(v) = self.run_one(&id).await {
                    calls.push(v);
                }
            }
            json!({"calls": calls})
        })
    }
}

type S = State<Arc<Consumers>>;

async fn list(State(c): S) -> Json<Value> {
    Json(Value::Array(lock(&c.state).iter().map(Consumer::json).collect()))
}

async fn get_one(State(c): S, Path(id): Path<String>) -> Response {
    match lock(&c.state).iter().find(|x| x.id == id) {
        Some(x) => json(StatusCode::OK, x.json()),
        None => err(StatusCode::NOT_FOUND, "No such consumer"),
    }
}

async fn update_credential(State(c): S, Path(id): Path<String>, body: Bytes) -> Response {
    let now = c.ctx.clock.now();
    let mut st = lock(&c.state);
    let Some(x) = st.iter_mut().find(|x| x.id == id) else {
        return err(StatusCode::NOT_FOUND, "No such consumer");
    };
    let mut v: Value = match parse_json(&body) {
        Ok(v) => v,
        Err(e) => return err(StatusCode::BAD_REQUEST, &e),
    };
    if let Some(o) = v.as_object_mut() {
        o.insert("vendor".into(), json!(x.system.name()));
    }
    match serde_json::from_value::<Credential>(v) {
        Ok(cred) => {
            x.credential = cred;
            x.updated = Some(now);
            json(
                StatusCode::OK,
                json!({"id": x.id, "credential": x.credential.public(), "credentialUpdatedAt": iso(now)}),
            )
        }
        Err(e) => err(
            StatusCode::BAD_REQUEST,
            &format!("credential for {}: {e}", x.system.name()),
        ),
    }
}

async fn check_now(State(c): S, Path(id): Path<String>) -> Response {
    match c.run_one(&id).await {
        Some(v) => json(StatusCode::OK, v),
        None => err(StatusCode::NOT_FOUND, "No such consumer"),
    }
}

/// The operator's hands on a rollover without a registry API: every
/// integration of `vendor` holding key `from_key` gets the vendor's key
/// `to_key_id` pasted in (both halves, as copied from the vendor's portal).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Switch {
    vendor: System,
    from_key: String,
    to_key_id: String,
}

async fn switch_by_hand(State(c): S, body: Bytes) -> Response {
    let sw = match parse_json::<Switch>(&body) {
        Ok(sw) => sw,
        Err(e) => return err(StatusCode::BAD_REQUEST, &e),
    };
    let Some(source) = c.sources.get(&sw.vendor) else {
        return err(
            StatusCode::NOT_FOUND,
            &format!("no {} keys can be copied by hand here", sw.vendor.name()),
        );
    };
    let Some(cred) = source(&sw.to_key_id) else {
        return err(
            StatusCode::NOT_FOUND,
            &format!("{} has no key {}", sw.vendor.name(), sw.to_key_id),
        );
    };
    let now = c.ctx.clock.now();
    let mut st = lock(&c.state);
    let mut switched = Vec::new();
    for x in st
        .iter_mut()
        .filter(|x| x.system == sw.vendor && x.credential.key() == sw.from_key)
    {
        x.credential = cred.clone();
        x.updated = Some(now);
        switched.push(x.id.clone());
    }
    json(StatusCode::OK, json!({"switched": switched}))
}

#[derive(Deserialize)]
struct NewConsumer {
    id: String,
    origin: String,
    credential: Credential,
}

async fn add(State(c): S, body: Bytes) -> Response {
    let n = match parse_json::<NewConsumer>(&body) {
        Ok(n) => n,
        Err(e) => return err(StatusCode::BAD_REQUEST, &e),
    };
    let mut st = lock(&c.state);
    if st.iter().any(|x| x.id == n.id) {
        return err(StatusCode::CONFLICT, "A consumer with this id exists");
    }
    let x = Consumer::new(
        &n.id,
        n.credential.system(),
        n.origin.trim_end_matches('/'),
        n.credential,
    );
    let v = x.json();
    st.push(x);
    json(StatusCode::CREATED, v)
}

pub(crate) async fn start(
    ctx: Ctx,
    fixtures: Vec<Consumer>,
    sources: std::collections::BTreeMap<System, KeySource>,
    shutdown: &watch::Receiver<bool>,
    tasks: &mut Vec<JoinHandle<()>>,
) -> std::io::Result<SimHandle> {
    let http = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .map_err(std::io::Error::other)?;
    let seeds = fixtures
        .iter()
        .map(|c| (c.id.clone(), c.system, c.origin.clone(), c.credential.clone()))
        .collect();
    let c = Arc::new(Consumers {
        ctx: ctx.clone(),
        http,
        fixtures: seeds,
        sources,
        state: Mutex::new(fixtures),
    });
    let api = Router::new()
        .route("/v1/consumers", get(list))
        .route("/v1/consumers/{id}", get(get_one))
        .route("/v1/consumers/{id}/credential", put(update_credential))
        .route("/v1/consumers/{id}/check", post(check_now))
        .fallback(|| async { err(StatusCode::NOT_FOUND, "Not found") })
        .with_state(c.clone());
    let admin = Router::new()
        .route("/admin/consumers", post(add))
        .route("/admin/consumers/{id}/tick", post(check_now))
        .route("/admin/ui/consumers/switch", post(switch_by_hand))
        .with_state(c.clone());
    launch(
        System::Consumers,
        &ctx,
        c,
        Arc::new(ConsumerStyle),
        api,
        admin,
        shutdown,
        tasks,
    )
    .await
}
