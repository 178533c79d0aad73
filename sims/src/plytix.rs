//! Plytix simulator: the documented token exchange
//! (`POST /auth/api/get-token`, 15-minute JWTs), the PIM v1 products
//! endpoints, and the `[INVENTED]` account endpoints of VENDORS.md §2.4 (API
//! keys with name + role + password, roles, users). Errors use the v3
//! envelope `{"data":[],"errors":[{"name","description"}]}`; the 401 of the
//! token exchange uses the live `{"error":{"msg","errors"}}` shape.
//!
//! Design decision: a bearer token resolves to its key (or user) on every
//! call and the CURRENT role decides, so re-roling a live key changes what
//! its tokens can do at once. `POST /auth/user/get-token` (email +
//! password) is invented: it models the signed-in accounts.plytix.com UI,
//! so user roles can be tested on key management.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use axum::routing::{get, post};
use base64::Engine;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::Sha256;
use time::OffsetDateTime;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::System;
use crate::consumers::Credential;
use crate::fault::ErrorStyle;
use crate::sim::{Ctx, SimHandle, Simulator, launch};
use crate::util::{Gen, fingerprint, iso, json, lock, parse_json};

struct PlytixStyle;

impl ErrorStyle for PlytixStyle {
    fn error(&self, status: StatusCode, message: &str) -> Response {
        let name = match status.as_u16() {
            400 => "InvalidFieldError",
            401 => "Unauthorized",
            403 => "PermissionError",
            404 => "NotFoundError",
            405 => "MethodNotAllowed",
            409 => "AlreadyExists",
            422 => "InputDTOValidationError",
            429 => "TooManyRequests",
            _ => "InternalServerError",
        };
        json(
            status,
            json!({"data": [], "errors": [{"name": name, "description": message}]}),
        )
    }

    fn rate_limited(&self, retry_after_secs: u64) -> Response {
        let mut r = json(
            StatusCode::TOO_MANY_REQUESTS,
            json!({"error": {"msg": "Rate limit exceeded", "retry_after": retry_after_secs}}),
        );
        let h = r.headers_mut();
        h.insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
        h.insert("ratelimit-limit", HeaderValue::from_static("20"));
        h.insert("ratelimit-remaining", HeaderValue::from_static("0"));
        r
    }
}

fn err(status: StatusCode, message: &str) -> Response {
    PlytixStyle.error(status, message)
}

const TOKEN_SECS: i64 = 900;

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Perm {
    None,
    View,
    Edit,
}

impl Perm {
    fn name(self) -> &'static str {
        match self {
            Perm::None => "None",
            Perm::View => "View",
            Perm::Edit => "Edit",
        }
    }
}

#[derive(Clone)]
struct Role {
    id: String,
    name: String,
    team: bool,
    account_management: bool,
    products: Perm,
    assets: Perm,
}

impl Role {
    fn brief(&self) -> Value {
        json!({"id": self.id, "name": self.name, "type": if self.team { "team" } else { "system" }})
    }

    fn full(&self) -> Value {
        json!({
            "id": self.id, "name": self.name, "type": if self.team { "team" } else { "system" },
            "permissions": {"account_management": self.account_management,
                            "products": self.products.name(), "assets": self.assets.name()},
        })
    }
}

struct User {
    id: String,
    email: String,
    name: String,
    password: String,
    role_id: String,
}

struct ApiKey {
    id: String,
    api_key: String,
    api_password: String,
    name: String,
    role_id: String,
    created: OffsetDateTime,
}

#[derive(Clone, PartialEq, Eq)]
enum Principal {
    User(String),
    Key(String),
}

struct TokenRec {
    principal: Principal,
    role_at_issue: String,
    expires: OffsetDateTime,
}

struct PlytixState {
    ids: Gen,
    /// Token IDs draw from their own stream, so the keys a run creates get
    /// the same IDs and passwords however many sign-ins came before them.
    token_ids: Gen,
    account_id: String,
    account_name: String,
    signing_key: Vec<u8>,
    roles: Vec<Role>,
    users: Vec<User>,
    keys: Vec<ApiKey>,
    tokens: HashMap<String, TokenRec>,
    products: Vec<Value>,
    windows: HashMap<String, VecDeque<Instant>>,
}

/// Names of fixture keys other modules refer to.
pub(crate) const OPERATOR_KEY: &str = "rota automation";
pub(crate) const CONSUMER_KEY: &str = "ERP integration";

impl PlytixState {
    fn fixtures(seed: u64, now: OffsetDateTime) -> Self {
        let mut ids = Gen::new(seed, "plytix");
        let role = |ids: &mut Gen, name: &str, team: bool, am: bool, products: Perm, assets: Perm| Role {
            id: ids.hex(12),
            name: name.into(),
            team,
            account_management: am,
            products,
            assets,
        };
        let roles = vec![
            role(&mut ids, "Owner", false, true, Perm::Edit, Perm::Edit),
            role(&mut ids, "Admin", false, true, Perm::Edit, Perm::Edit),
            role(&mut ids, "Editor", false, false, Perm::Edit, Perm::Edit),
            role(&mut ids, "Viewer", false, false, Perm::View, Perm::View),
            role(&mut ids, "Catalog Import", true, false, Perm::Edit, Perm::None),
            role(&mut ids, "Assets Only", true, false, Perm::None, Perm::View),
        ];
        let rid = |n: &str| {
            roles
                .iter()
                .find(|r| r.name == n)
                .map(|r| r.id.clone())
                .unwrap_or_default()
        };
        let users = [
            ("owner@acme-home.example", "Olivia Owner", "Owner"),
            ("admin@acme-home.example", "Adam Admin", "Admin"),
            ("editor@acme-home.example", "Eddie Editor", "Editor"),
            ("viewer@acme-home.example", "Vera Viewer", "Viewer"),
        ]
        .iter()
        .map(|(email, name, r)| User {
            id: ids.hex(12),
            email: (*email).into(),
            name: (*name).into(),
            password: ids.alnum(16),
            role_id: rid(r),
        })
        .collect();
        let keys = [
            (OPERATOR_KEY, "Admin", 90),
            (CONSUMER_KEY, "Editor", 400),
            ("Shopify feed", "Viewer", 200),
            ("Legacy importer", "Catalog Import", 700),
        ]
        .iter()
        .map(|(name, r, age)| ApiKey {
            id: ids.hex(12),
            api_key: ids.hex(16),
            api_password: ids.alnum(24),
            name: (*name).into(),
            role_id: rid(r),
            created: now - time::Duration::days(*age),
        })
        .collect();
        let products = [("CHAIR-OAK-01", "Oak dining chair"), ("TABLE-OAK-02", "Oak table 180 cm"), ("LAMP-BR-03", "Brass floor lamp"), ("RUG-WL-04", "Wool rug 200x300")]
            .iter()
            .enumerate()
            .map(|(i, (sku, label))| {
                let t = now - time::Duration::days(300 - 40 * i64::try_from(i).unwrap_or(0));
                json!({"id": ids.hex(12), "sku": sku, "label": label, "status": "Completed", "created": iso(t), "modified": iso(t)})
            })
            .collect();
        Self {
            account_id: ids.hex(12),
            account_name: "Acme Home Goods".into(),
            signing_key: ids.bytes::<32>().to_vec(),
            ids,
            token_ids: Gen::new(seed, "plytix-tokens"),
            roles,
            users,
            keys,
            tokens: HashMap::new(),
            products,
            windows: HashMap::new(),
        }
    }

    fn role(&self, id: &str) -> Option<&Role> {
        self.roles.iter().find(|r| r.id == id)
    }

    fn key_json(&self, k: &ApiKey, with_password: bool) -> Value {
        let mut v = json!({
            "id": k.id, "api_key": k.api_key, "name": k.name,
            "role": self.role(&k.role_id).map(Role::brief), "created": iso(k.created),
        });
        if with_password && let Some(o) = v.as_object_mut() {
            o.insert("api_password".into(), json!(k.api_password));
        }
        v
    }

    fn issue(&mut self, principal: Principal, role_id: String, subject: &str, now: OffsetDateTime) -> Value {
        let role_name = self
            .role(&role_id)
            .map(|r| r.name.to_uppercase())
            .unwrap_or_default();
        let header = json!({"alg": "HS256", "typ": "JWT"});
        let claims = json!({
            "account_id": self.account_id, "user": subject, "role": role_name,
            "iat": now.unix_timestamp(), "exp": now.unix_timestamp() + TOKEN_SECS,
            "jti": self.token_ids.hex(8),
            "rate_limit": [{"limit": 20, "window_size": 10}, {"limit": 2000, "window_size": 3600}],
        });
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let signing_input = format!(
            "{}.{}",
            b64.encode(header.to_string()),
            b64.encode(claims.to_string())
        );
        let sig = Hmac::<Sha256>::new_from_slice(&self.signing_key)
            .map(|mut m| {
                m.update(signing_input.as_bytes());
                m.finalize().into_bytes().to_vec()
            })
            .unwrap_or_default();
        let token = format!("{signing_input}.{}", b64.encode(sig));
        self.tokens.insert(
            token.clone(),
            TokenRec {
                principal,
                role_at_issue: role_id,
                expires: now + time::Duration::seconds(TOKEN_SECS),
            },
        );
        json!({"data": [{"access_token": token, "refresh_token": self.token_ids.hex(32)}]})
    }
}

pub(crate) struct Plytix {
    ctx: Ctx,
    state: Mutex<PlytixState>,
}

impl Plytix {
    /// The credential the fixture ERP consumer holds.
    pub(crate) fn consumer_credential(&self) -> Credential {
        let st = lock(&self.state);
        let k = st.keys.iter().find(|k| k.name == CONSUMER_KEY);
        Credential::Plytix {
            api_key: k.map(|k| k.api_key.clone()).unwrap_or_default(),
            api_password: k.map(|k| k.api_password.clone()).unwrap_or_default(),
        }
    }

    /// Resolves a bearer token to the CURRENT role of its principal.
    fn authorize(&self, headers: &HeaderMap) -> Result<Role, Response> {
        let unauthorized = || err(StatusCode::UNAUTHORIZED, "Token is invalid or expired");
        let tok = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(unauthorized)?;
        let now = self.ctx.clock.now();
        let mut st = lock(&self.state);
        let rec = st
            .tokens
            .get(tok)
            .filter(|t| t.expires > now)
            .ok_or_else(unauthorized)?;
        let pid = match &rec.principal {
            Principal::Key(id) | Principal::User(id) => id.clone(),
        };
        let role_id = match &rec.principal {
            Principal::Key(id) => match st.keys.iter().find(|k| k.id == *id) {
                Some(k) => k.role_id.clone(),
                None if self.ctx.config.plytix_tokens_survive_key_delete => rec.role_at_issue.clone(),
                None => return Err(unauthorized()),
            },
            Principal::User(id) => st
                .users
                .iter()
                .find(|u| u.id == *id)
                .map(|u| u.role_id.clone())
                .ok_or_else(unauthorized)?,
        };
        let role = st.role(&role_id).cloned().ok_or_else(unauthorized)?;
        self.rate_check(&mut st.windows, &pid)?;
        Ok(role)
    }

    /// Plytix's per-credential windows (10 s and 1 h, scaled): 429 with
    /// `Retry-After` once either is full.
    fn rate_check(
        &self,
        windows: &mut HashMap<String, VecDeque<Instant>>,
        pid: &str,
    ) -> Result<(), Response> {
        let now = Instant::now();
        let cfg = &self.ctx.config;
        let q = windows.entry(pid.to_owned()).or_default();
        let longest = self.ctx.scale.std_duration(3600);
        while q.front().is_some_and(|t| now.duration_since(*t) >= longest) {
            q.pop_front();
        }
        for (nominal, limit) in [
            (10, cfg.plytix_requests_per_10s),
            (3600, cfg.plytix_requests_per_hour),
        ] {
            let window = self.ctx.scale.std_duration(nominal);
            let mut recent = q.iter().filter(|t| now.duration_since(**t) < window);
            let oldest = recent.next().copied();
            let count = oldest.map_or(0, |_| 1 + recent.count());
            if let Some(oldest) = oldest
                && count >= limit as usize
            {
                let wait = window.saturating_sub(now.duration_since(oldest));
                #[allow(
                    clippy::cast_possible_truncation,
                    clippy::cast_sign_loss,
                    reason = "small, positive"
                )]
                let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
                return Err(PlytixStyle.rate_limited(secs));
            }
        }
        q.push_back(now);
        Ok(())
    }

    fn manager(&self, headers: &HeaderMap) -> Result<Role, Response> {
        let role = self.authorize(headers)?;
        if role.account_management {
            Ok(role)
        } else {
            Err(json(
                StatusCode::FORBIDDEN,
                json!({"data": [], "errors": [{"name": "Forbidden", "description": "Only Owners and Admins can manage API keys"}]}),
            ))
        }
    }

    fn create_key(&self, body: &[u8]) -> Response {
        #[derive(Deserialize)]
        struct B {
            name: String,
            role_id: String,
        }
        match parse_json::<B>(body) {
            Ok(b) => self.insert_key(b.name, &b.role_id),
            Err(e) => err(StatusCode::UNPROCESSABLE_ENTITY, &e),
        }
    }

    fn insert_key(&self, name: String, role_id: &str) -> Response {
        if name.trim().is_empty() {
            return err(StatusCode::UNPROCESSABLE_ENTITY, "name: Field required");
        }
        let now = self.ctx.clock.now();
        let mut st = lock(&self.state);
        if st.role(role_id).is_none() {
            return err(StatusCode::UNPROCESSABLE_ENTITY, "role_id: Unknown role");
        }
        if st.keys.iter().any(|k| k.name == name) {
            return err(StatusCode::CONFLICT, "An API key with this name already exists");
        }
        let k = ApiKey {
            id: st.ids.hex(12),
            api_key: st.ids.hex(16),
            api_password: st.ids.alnum(24),
            name,
            role_id: role_id.to_owned(),
            created: now,
        };
        let v = st.key_json(&k, true);
        st.keys.push(k);
        json(StatusCode::CREATED, json!({"data": [v], "errors": []}))
    }

    /// The role the UI's dropdown shows by `name`, as its id.
    fn role_named(&self, name: &str) -> Option<String> {
        lock(&self.state)
            .roles
            .iter()
            .find(|r| r.name == name)
            .map(|r| r.id.clone())
    }

    fn reveal_password(&self, id: &str) -> Response {
        let st = lock(&self.state);
        match st.keys.iter().find(|k| k.id == id) {
            Some(k) => json(
                StatusCode::OK,
                json!({"data": [{"api_password": k.api_password}], "errors": []}),
            ),
            None => err(StatusCode::NOT_FOUND, "API key not found"),
        }
    }
}

impl Simulator for Plytix {
    fn operator(&self) -> Value {
        operator_view(self)
    }

    fn state(&self) -> Value {
        let st = lock(&self.state);
        let now = self.ctx.clock.now();
        json!({
            "account": {"id": st.account_id, "name": st.account_name},
            "roles": st.roles.iter().map(Role::full).collect::<Vec<_>>(),
            "users": st.users.iter().map(|u| json!({"id": u.id, "email": u.email, "name": u.name,
                "role": st.role(&u.role_id).map(Role::brief), "passwordFingerprint": fingerprint(&u.password)})).collect::<Vec<_>>(),
            "apiKeys": st.keys.iter().map(|k| {
                let mut v = st.key_json(k, false);
                if let Some(o) = v.as_object_mut() {
                    o.insert("apiPasswordFingerprint".into(), json!(fingerprint(&k.api_password)));
                }
                v
            }).collect::<Vec<_>>(),
            "activeTokens": st.tokens.values().filter(|t| t.expires > now).count(),
            "products": st.products,
        })
    }

    fn reset(&self) {
        *lock(&self.state) = PlytixState::fixtures(self.ctx.seed(), self.ctx.clock.now());
    }
}

type S = State<Arc<Plytix>>;

fn token_headers(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert("ratelimit-limit", HeaderValue::from_static("15"));
    h.insert("x-ratelimit-limit-second", HeaderValue::from_static("15"));
    r
}

fn bad_credentials() -> Response {
    token_headers(json(
        StatusCode::UNAUTHORIZED,
        json!({"error": {"msg": "Bad api_key or api_password: Credentials not valid",
                         "errors": [{"field": "http_status_code", "msg": 401}]}}),
    ))
}

async fn get_token(State(p): S, body: Bytes) -> Response {
    #[derive(Deserialize)]
    struct B {
        api_key: String,
        api_password: String,
    }
    let Ok(b) = parse_json::<B>(&body) else {
        return bad_credentials();
    };
    let now = p.ctx.clock.now();
    let mut st = lock(&p.state);
    let Some(k) = st
        .keys
        .iter()
        .find(|k| k.api_key == b.api_key && k.api_password == b.api_password)
    else {
        return bad_credentials();
    };
    let (id, role, name) = (k.id.clone(), k.role_id.clone(), k.name.clone());
    let body = st.issue(Principal::Key(id), role, &name, now);
    token_headers(json(StatusCode::OK, body))
}

async fn user_token(State(p): S, body: Bytes) -> Response {
    #[derive(Deserialize)]
    struct B {
        email: String,
        password: String,
    }
    let Ok(b) = parse_json::<B>(&body) else {
        return bad_credentials();
    };
    let now = p.ctx.clock.now();
    let mut st = lock(&p.state);
    let Some(u) = st
        .users
        .iter()
        .find(|u| u.email == b.email && u.password == b.password)
    else {
        return bad_credentials();
    };
    let (id, role, email) = (u.id.clone(), u.role_id.clone(), u.email.clone());
    let body = st.issue(Principal::User(id), role, &email, now);
    token_headers(json(StatusCode::OK, body))
}

async fn list_keys(State(p): S, headers: HeaderMap) -> Response {
    if let Err(r) = p.manager(&headers) {
        return r;
    }
    let st = lock(&p.state);
    let data: Vec<Value> = st.keys.iter().map(|k| st.key_json(k, false)).collect();
    json(StatusCode::OK, json!({"data": data, "errors": []}))
}

async fn create_key(State(p): S, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(r) = p.manager(&headers) {
        return r;
    }
    p.create_key(&body)
}

async fn key_password(State(p): S, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if let Err(r) = p.manager(&headers) {
        return r;
    }
    p.reveal_password(&id)
}

async fn update_key(State(p): S, headers: HeaderMap, Path(id): Path<String>, body: Bytes) -> Response {
    #[derive(Deserialize)]
    struct B {
        name: Option<String>,
        role_id: Option<String>,
    }
    if let Err(r) = p.manager(&headers) {
        return r;
    }
    let b = match parse_json::<B>(&body) {
        Ok(b) => b,
        Err(e) => return err(StatusCode::UNPROCESSABLE_ENTITY, &e),
    };
    let mut st = lock(&p.state);
    if let Some(r) = &b.role_id
        && st.role(r).is_none()
    {
        return err(StatusCode::UNPROCESSABLE_ENTITY, "role_id: Unknown role");
    }
    let Some(i) = st.keys.iter().position(|k| k.id == id) else {
        return err(StatusCode::NOT_FOUND, "API key not found");
    };
    if let Some(k) = st.keys.get_mut(i) {
        if let Some(n) = b.name.filter(|n| !n.trim().is_empty()) {
            k.name = n;
        }
        if let Some(r) = b.role_id {
            k.role_id = r;
        }
    }
    let v = st.keys.get(i).map(|k| st.key_json(k, false));
    json(StatusCode::OK, json!({"data": [v], "errors": []}))
}

async fn delete_key(State(p): S, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if let Err(r) = p.manager(&headers) {
        return r;
    }
    let mut st = lock(&p.state);
    let before = st.keys.len();
    st.keys.retain(|k| k.id != id);
    if st.keys.len() == before {
        return err(StatusCode::NOT_FOUND, "API key not found");
    }
    Response::builder()
        .status(StatusCode::NO_CONTENT)
        .body(axum::body::Body::empty())
        .unwrap_or_default()
}

async fn roles(State(p): S, headers: HeaderMap) -> Response {
    if let Err(r) = p.manager(&headers) {
        return r;
    }
    let st = lock(&p.state);
    json(
        StatusCode::OK,
        json!({"data": st.roles.iter().map(Role::full).collect::<Vec<_>>(), "errors": []}),
    )
}

async fn users(State(p): S, headers: HeaderMap) -> Response {
    if let Err(r) = p.manager(&headers) {
        return r;
    }
    let st = lock(&p.state);
    let data: Vec<Value> = st
        .users
        .iter()
        .map(|u| json!({"id": u.id, "email": u.email, "name": u.name, "role": st.role(&u.role_id).map(Role::brief)}))
        .collect();
    json(StatusCode::OK, json!({"data": data, "errors": []}))
}

fn need(p: &Plytix, headers: &HeaderMap, level: Perm) -> Result<(), Response> {
    let role = p.authorize(headers)?;
    if role.products >= level {
        Ok(())
    } else {
        let what = if level == Perm::Edit { "edit" } else { "view" };
        Err(err(
            StatusCode::FORBIDDEN,
            &format!("The role '{}' does not allow to {what} products", role.name),
        ))
    }
}

async fn search_products(State(p): S, headers: HeaderMap) -> Response {
    if let Err(r) = need(&p, &headers, Perm::View) {
        return r;
    }
    let st = lock(&p.state);
    let n = st.products.len();
    json(
        StatusCode::OK,
        json!({"data": st.products, "pagination": {"page": 1, "page_size": 25, "total_count": n}}),
    )
}

async fn get_product(State(p): S, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if let Err(r) = need(&p, &headers, Perm::View) {
        return r;
    }
    let st = lock(&p.state);
    match st
        .products
        .iter()
        .find(|v| v.get("id").and_then(Value::as_str) == Some(id.as_str()))
    {
        Some(v) => json(StatusCode::OK, json!({"data": [v]})),
        None => err(StatusCode::NOT_FOUND, "Product not found"),
    }
}

async fn create_product(State(p): S, headers: HeaderMap, body: Bytes) -> Response {
    #[derive(Deserialize)]
    struct B {
        sku: String,
        label: Option<String>,
    }
    if let Err(r) = need(&p, &headers, Perm::Edit) {
        return r;
    }
    let b = match parse_json::<B>(&body) {
        Ok(b) => b,
        Err(_) => return err(StatusCode::UNPROCESSABLE_ENTITY, "sku: Field required"),
    };
    let now = iso(p.ctx.clock.now());
    let mut st = lock(&p.state);
    if st
        .products
        .iter()
        .any(|v| v.get("sku").and_then(Value::as_str) == Some(b.sku.as_str()))
    {
        return err(StatusCode::CONFLICT, "A product with this SKU already exists");
    }
    let v = json!({"id": st.ids.hex(12), "sku": b.sku, "label": b.label, "status": "Draft", "created": now, "modified": now});
    st.products.push(v.clone());
    json(StatusCode::CREATED, json!({"data": [v]}))
}

/// The UI's *Create API Key* dialog: a name and a role picked from the
/// dropdown (by its name; `role_id` is taken too).
#[derive(Deserialize)]
struct UiKeyForm {
    name: Option<String>,
    role: Option<String>,
    role_id: Option<String>,
}

impl UiKeyForm {
    fn role_id(&self, p: &Plytix) -> Result<Option<String>, Response> {
        match (&self.role_id, &self.role) {
            (Some(id), _) => Ok(Some(id.clone())),
            (None, Some(name)) => p
                .role_named(name)
                .map(Some)
                .ok_or_else(|| err(StatusCode::UNPROCESSABLE_ENTITY, "role: Unknown role")),
            (None, None) => Ok(None),
        }
    }
}

async fn ui_create_key(State(p): S, body: Bytes) -> Response {
    let form = match parse_json::<UiKeyForm>(&body) {
        Ok(f) => f,
        Err(e) => return err(StatusCode::UNPROCESSABLE_ENTITY, &e),
    };
    match form.role_id(&p) {
        Ok(Some(role_id)) => p.insert_key(form.name.unwrap_or_default(), &role_id),
        Ok(None) => err(StatusCode::UNPROCESSABLE_ENTITY, "role: Field required"),
        Err(r) => r,
    }
}

/// The pencil icon, then *Save API Key*: a new name and/or role for the key
/// (addressed by id or by its API key, as the row shows it).
async fn ui_edit_key(State(p): S, Path(key): Path<String>, body: Bytes) -> Response {
    let form = match parse_json::<UiKeyForm>(&body) {
        Ok(f) => f,
        Err(e) => return err(StatusCode::UNPROCESSABLE_ENTITY, &e),
    };
    let role_id = match form.role_id(&p) {
        Ok(r) => r,
        Err(r) => return r,
    };
    let mut st = lock(&p.state);
    let Some(i) = st.keys.iter().position(|k| k.id == key || k.api_key == key) else {
        return err(StatusCode::NOT_FOUND, "API key not found");
    };
    if let Some(k) = st.keys.get_mut(i) {
        if let Some(n) = form.name.filter(|n| !n.trim().is_empty()) {
            k.name = n;
        }
        if let Some(r) = role_id {
            k.role_id = r;
        }
    }
    let v = st.keys.get(i).map(|k| st.key_json(k, false));
    json(StatusCode::OK, json!({"data": [v], "errors": []}))
}

/// The bin icon next to the key's role.
async fn ui_delete_key(State(p): S, Path(key): Path<String>) -> Response {
    let mut st = lock(&p.state);
    let before = st.keys.len();
    st.keys.retain(|k| k.id != key && k.api_key != key);
    if st.keys.len() == before {
        return err(StatusCode::NOT_FOUND, "API key not found");
    }
    json(StatusCode::OK, json!({"data": [], "errors": []}))
}

/// The eye icon (the row is addressed by id or by its API key).
async fn ui_password(State(p): S, Path(key): Path<String>) -> Response {
    let id = lock(&p.state)
        .keys
        .iter()
        .find(|k| k.api_key == key)
        .map_or(key, |k| k.id.clone());
    p.reveal_password(&id)
}

fn operator_view(p: &Plytix) -> Value {
    let st = lock(&p.state);
    let key = st.keys.iter().find(|k| k.name == OPERATOR_KEY);
    json!({
        "apiKey": key.map(|k| json!({"name": k.name, "api_key": k.api_key, "api_password": k.api_password})),
        "users": st.users.iter().map(|u| json!({"email": u.email, "password": u.password,
            "role": st.role(&u.role_id).map(|r| r.name.clone())})).collect::<Vec<_>>(),
    })
}

pub(crate) async fn start(
    ctx: Ctx,
    shutdown: &watch::Receiver<bool>,
    tasks: &mut Vec<JoinHandle<()>>,
) -> std::io::Result<(SimHandle, Arc<Plytix>)> {
    let state = PlytixState::fixtures(ctx.seed(), ctx.clock.now());
    let p = Arc::new(Plytix {
        ctx: ctx.clone(),
        state: Mutex::new(state),
    });
    let api = Router::new()
        .route("/auth/api/get-token", post(get_token))
        .route("/auth/user/get-token", post(user_token))
        .route("/accounts/v1/api-keys", get(list_keys).post(create_key))
        .route(
            "/accounts/v1/api-keys/{id}",
            axum::routing::patch(update_key).delete(delete_key),
        )
        .route("/accounts/v1/api-keys/{id}/password", get(key_password))
        .route("/accounts/v1/roles", get(roles))
        .route("/accounts/v1/users", get(users))
        .route(
            "/api/v1/products",
            post(create_product)
                .get(|| async { err(StatusCode::METHOD_NOT_ALLOWED, "Use POST /api/v1/products/search") }),
        )
        .route("/api/v1/products/search", post(search_products))
        .route("/api/v1/products/{id}", get(get_product))
        .fallback(|| async { err(StatusCode::NOT_FOUND, "Not found") })
        .with_state(p.clone());
    let admin = Router::new()
        .route("/admin/ui/api-keys", post(ui_create_key))
        .route(
            "/admin/ui/api-keys/{key}",
            axum::routing::patch(ui_edit_key).delete(ui_delete_key),
        )
        .route("/admin/ui/api-keys/{key}/password", get(ui_password))
        .with_state(p.clone());
    let h = launch(
        System::Plytix,
        &ctx,
        p.clone(),
        Arc::new(PlytixStyle),
        api,
        admin,
        shutdown,
        tasks,
    )
    .await?;
    Ok((h, p))
}
